import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { freePort } from "./harness.ts";
import { verifyWebhook } from "../src/notify/webhook.ts";

/**
 * Real local HTTP servers standing in for what Haven notifies through: an SMS gateway with Africa's
 * Talking's messaging API, a webhook receiver that checks Haven's signature, and a Web Push
 * service. Each records every request it accepted (and refused), and can be told to fail.
 */
export const SMS_API_KEY = "test-sms-api-key-0123456789";
export const WEBHOOK_SECRET = "test-webhook-secret-0123456789abcdefghij";

export interface Received {
  kind: "sms" | "webhook" | "push";
  key: string;
  to: string;
  text: string;
  at: number;
  /** What the stand-in answered. */
  status: number;
  body?: any;
}

export class Gateway {
  port = 0;
  private server?: Server;
  /** Every request, accepted or not. */
  readonly requests: Received[] = [];
  /** Answers with this status instead of accepting (per kind; undefined: accept). */
  failWith: Partial<Record<Received["kind"], number>> = {};
  /** Fail the first `n` requests of a key, then accept. */
  failFirst = new Map<string, number>();
  /** Webhook paths that always answer with the given status. */
  failPaths = new Map<string, number>();
  /** Delay before answering (ms). */
  delayMs = 0;

  get url(): string { return `http://127.0.0.1:${this.port}`; }

  env(): Record<string, string> {
    return {
      HAVEN_SMS_BASE_URL: this.url, HAVEN_SMS_USERNAME: "sandbox", HAVEN_SMS_API_KEY: SMS_API_KEY,
      HAVEN_WEBHOOK_SECRET: WEBHOOK_SECRET,
    };
  }

  /** Requests this stand-in accepted (2xx), by key. */
  accepted(kind?: Received["kind"]): Received[] {
    return this.requests.filter((r) => r.status >= 200 && r.status < 300 && (!kind || r.kind === kind));
  }

  attemptsOf(key: string): Received[] {
    return this.requests.filter((r) => r.key === key);
  }

  async start(): Promise<this> {
    this.port = await freePort();
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    const key = String(req.headers["idempotency-key"] ?? "");
    const kind: Received["kind"] = req.url === "/version1/messaging" ? "sms" : req.url!.startsWith("/push/") ? "push" : "webhook";
    let to = "";
    let text = "";
    let status = 201;
    let body: any;
    if (kind === "sms") {
      const form = new URLSearchParams(raw.toString());
      to = form.get("to") ?? "";
      text = form.get("message") ?? "";
      if (req.headers.apikey !== SMS_API_KEY || form.get("username") !== "sandbox") status = 401;
    } else if (kind === "webhook") {
      to = req.url!;
      body = JSON.parse(raw.toString());
      text = body.text;
      status = verifyWebhook(WEBHOOK_SECRET, req.headers as Record<string, string>, raw.toString()) ? 200 : 401;
    } else {
      to = req.url!;
      // a push service takes an encrypted body with a VAPID authorization
      status = String(req.headers.authorization ?? "").startsWith("vapid t=") && req.headers["content-encoding"] === "aes128gcm" && raw.length > 0 ? 201 : 400;
      text = `${raw.length} encrypted bytes`;
    }
    const failing = this.failFirst.get(key) ?? 0;
    if (status < 300 && kind === "webhook" && this.failPaths.has(to)) {
      status = this.failPaths.get(to)!;
    } else if (status < 300 && failing > 0) {
      this.failFirst.set(key, failing - 1);
      status = 503;
    } else if (status < 300 && this.failWith[kind]) {
      status = this.failWith[kind]!;
    }
    this.requests.push({ kind, key, to, text, at: Date.now(), status, body });
    res.statusCode = status;
    res.setHeader("content-type", "application/json");
    if (kind === "sms" && status === 201) {
      res.end(JSON.stringify({ SMSMessageData: { Message: "Sent to 1/1 Total Cost: KES 0.8000", Recipients: [{ statusCode: 101, number: to, status: "Success", cost: "KES 0.8000", messageId: `ATXid_${this.requests.length}` }] } }));
    } else {
      res.end(JSON.stringify({ status }));
    }
  }
}

/**
 * A TCP proxy in front of Postgres that can hold every byte both ways (a frozen database host):
 * a change committed meanwhile passes its deadline and is undone.
 */
export class HangingProxy {
  private readonly pairs = new Set<{ client: Socket; upstream: Socket; held: { to: Socket; data: Buffer }[] }>();
  private server?: TcpServer;
  private hanging = false;
  port = 0;

  async start(upstreamPort: number): Promise<void> {
    this.port = await freePort();
    this.server = createTcpServer((client) => {
      const upstream = connect(upstreamPort, "127.0.0.1");
      const pair = { client, upstream, held: [] as { to: Socket; data: Buffer }[] };
      this.pairs.add(pair);
      const forward = (to: Socket) => (data: Buffer) => {
        if (this.hanging) pair.held.push({ to, data });
        else to.write(data);
      };
      client.on("data", forward(upstream));
      upstream.on("data", forward(client));
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        a.on("error", () => b.destroy());
        a.on("close", () => { b.destroy(); this.pairs.delete(pair); });
      }
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
  }

  hang(): void { this.hanging = true; }

  release(): void {
    this.hanging = false;
    for (const pair of this.pairs) for (const { to, data } of pair.held.splice(0)) if (!to.destroyed) to.write(data);
  }

  async stop(): Promise<void> {
    for (const pair of this.pairs) { pair.client.destroy(); pair.upstream.destroy(); }
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}
