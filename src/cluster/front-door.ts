import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

/**
 * The front door of a local cluster when HAProxy is not installed (`npm run cluster` prefers
 * HAProxy, src/cluster/haproxy.ts): one HTTP port for the REST API and matchmaking, spread
 * round-robin over the Haven nodes. It carries plain HTTP only. A seat reservation names the node
 * that holds the room (`publicAddress`), and the client opens its WebSocket to that node
 * directly, so the front door answers an upgrade request with 400.
 *
 * A node that refuses or drops a connection before answering is marked down for a moment and the
 * same request goes to the next node, so killing a node costs no request that had not reached
 * it. A request that a node accepted but never answered is not sent again: it may have been
 * applied. A health check every second brings a node back as soon as it answers again.
 *
 * Nodes see every request coming from the front door's own address: no X-Forwarded-For is added,
 * so the request limits per address (registrations, logins, bypass tokens, alerts; shared by the
 * nodes through Redis) count all clients together, as they would on one local node.
 */

export interface FrontDoorNode {
  /** Shown in the log, e.g. "node-2". */
  name: string;
  host: string;
  port: number;
}

export interface FrontDoorOptions {
  nodes: readonly FrontDoorNode[];
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Defaults to 127.0.0.1: the nodes' public addresses are local too. */
  host?: string;
  /** Request bodies are buffered to be sent again on a retry; larger ones get 413. Default 64 KiB. */
  maxBodyBytes?: number;
  /** How long a node that failed stays out of the rotation. Default 2000 ms. */
  downMs?: number;
  /** How often every node's /health is asked. Default 1000 ms. */
  healthIntervalMs?: number;
  /** A node that sends nothing for this long gets the request answered 503. Default 30 s. */
  upstreamTimeoutMs?: number;
  /** One line per event worth knowing (a node down or back). */
  log?: (line: string) => void;
}

export interface FrontDoor {
  /** The port actually bound. */
  port: number;
  close(): Promise<void>;
}

interface NodeState extends FrontDoorNode {
  /** Out of the rotation until this time (0: in it). */
  downUntil: number;
  checking: boolean;
}

/** Connection failures that happen before a node has answered: the request is sent to the next node. */
const RETRYABLE = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH"]);

/** Headers that describe one connection, not the request; never passed on. */
const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade",
]);

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set((String(headers.connection ?? "")).split(",").map((s) => s.trim().toLowerCase()).filter(Boolean));
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k) && !named.has(k)) out[k] = v;
  }
  return out;
}

function sendJson(res: ServerResponse, status: number, code: string, message: string, extra: OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = Buffer.from(JSON.stringify({ code, message }));
  res.writeHead(status, { "content-type": "application/json", "content-length": payload.length, ...extra });
  res.end(payload);
}

/** Starts the front door; resolves once it listens. */
export async function startFrontDoor(o: FrontDoorOptions): Promise<FrontDoor> {
  if (o.nodes.length === 0) throw new Error("the front door needs at least one node");
  const maxBodyBytes = o.maxBodyBytes ?? 64 * 1024;
  const downMs = o.downMs ?? 2000;
  const upstreamTimeoutMs = o.upstreamTimeoutMs ?? 30_000;
  const log = o.log ?? (() => undefined);
  const nodes: NodeState[] = o.nodes.map((n) => ({ ...n, downUntil: 0, checking: false }));
  const agent = new http.Agent({ keepAlive: true });
  let next = 0;

  const isUp = (n: NodeState) => Date.now() >= n.downUntil;
  const markDown = (n: NodeState, reason: string) => {
    if (isUp(n)) log(`${n.name} is down (${reason}): out of the rotation`);
    n.downUntil = Date.now() + downMs;
  };
  const markUp = (n: NodeState) => {
    if (!isUp(n)) log(`${n.name} is back in the rotation`);
    n.downUntil = 0;
  };

  /** The nodes in the rotation, starting with the next one in turn. */
  const rotation = (): NodeState[] => {
    const start = next;
    next = (next + 1) % nodes.length;
    return nodes.map((_, i) => nodes[(start + i) % nodes.length]).filter(isUp);
  };

  /** Sends the request to `candidates[0]`, moving on to the next one while nodes cannot be reached. */
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, candidates: NodeState[]): void => {
    const node = candidates[0];
    if (node === undefined) {
      sendJson(res, 503, "UNAVAILABLE", "no Haven node is reachable; try again in a moment");
      return;
    }
    const headers = withoutHopByHop(req.headers);
    if (body.length > 0 || req.headers["content-length"] !== undefined) headers["content-length"] = body.length;
    let answered = false;
    let abandoned = false;
    const upstream = http.request({ host: node.host, port: node.port, method: req.method, path: req.url, headers, agent });
    upstream.setTimeout(upstreamTimeoutMs, () => upstream.destroy(Object.assign(new Error("no answer in time"), { code: "HAVEN_UPSTREAM_TIMEOUT" })));
    upstream.on("response", (answer) => {
      answered = true;
      res.writeHead(answer.statusCode ?? 502, withoutHopByHop(answer.headers));
      answer.pipe(res);
      answer.on("error", () => res.destroy());
    });
    upstream.on("error", (error: NodeJS.ErrnoException) => {
      if (abandoned) return;
      if (answered) {
        res.destroy();
        return;
      }
      const code = error.code ?? "ERROR";
      if (RETRYABLE.has(code)) {
        markDown(node, code);
        forward(req, res, body, candidates.slice(1));
        return;
      }
      log(`${node.name} failed ${req.method} ${req.url?.split("?")[0]}: ${error.message}`);
      sendJson(res, 503, "UNAVAILABLE", `${node.name} did not answer; the request may or may not have been applied`);
    });
    // the client gave up: so does the request to the node
    res.once("close", () => {
      if (res.writableFinished) return;
      abandoned = true;
      upstream.destroy();
    });
    upstream.end(body);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const tooLarge = () => {
      sendJson(res, 413, "BODY_TOO_LARGE", `the body may be at most ${maxBodyBytes} bytes`, { connection: "close" });
      req.destroy();
    };
    if (Number(req.headers["content-length"] ?? 0) > maxBodyBytes) {
      tooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > maxBodyBytes) {
        refused = true;
        tooLarge();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => { if (!refused) forward(req, res, Buffer.concat(chunks), rotation()); });
    req.on("error", () => res.destroy());
  };

  /** WebSockets do not go through the front door: the seat reservation says where they go. */
  const onUpgrade = (_req: IncomingMessage, socket: Duplex): void => {
    const payload = JSON.stringify({
      code: "INVALID_PAYLOAD",
      message: "the front door carries HTTP only: open the WebSocket to the node named in the seat reservation (publicAddress)",
    });
    socket.on("error", () => undefined);
    socket.end(
      "HTTP/1.1 400 Bad Request\r\n" +
      "content-type: application/json\r\n" +
      `content-length: ${Buffer.byteLength(payload)}\r\n` +
      "connection: close\r\n\r\n" +
      payload,
    );
  };

  /** Asks one node's /health; a 200 puts it back in the rotation, anything else takes it out. */
  const check = (n: NodeState): void => {
    if (n.checking) return;
    n.checking = true;
    const probe = http.get({ host: n.host, port: n.port, path: "/health", agent: false, timeout: Math.max(250, (o.healthIntervalMs ?? 1000) - 100) }, (answer) => {
      answer.resume();
      n.checking = false;
      if (answer.statusCode === 200) markUp(n);
      else markDown(n, `health ${answer.statusCode}`);
    });
    probe.on("timeout", () => probe.destroy(Object.assign(new Error("health check timed out"), { code: "ETIMEDOUT" })));
    probe.on("error", (error: NodeJS.ErrnoException) => {
      n.checking = false;
      markDown(n, error.code ?? error.message);
    });
  };

  const server = http.createServer(onRequest);
  server.on("upgrade", onUpgrade);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const timer = setInterval(() => nodes.forEach(check), o.healthIntervalMs ?? 1000);
  nodes.forEach(check);

  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      clearInterval(timer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      agent.destroy();
      await closed;
    },
  };
}
