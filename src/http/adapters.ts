import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { TemplatedApp } from "uWebSockets.js";
import { HavenError } from "../protocol/errors.ts";
import { serialize, type HttpRequest, type HttpResponse, type Router } from "./router.ts";
import type { Logger } from "../log.ts";
import ipaddr from "ipaddr.js";
import { canonicalAddress } from "../limits/address.ts";

const BODYLESS = new Set(["GET", "HEAD", "OPTIONS", "DELETE"]);

function tooLarge(max: number): HttpResponse {
  return { status: 413, body: new HavenError("BODY_TOO_LARGE", `the body may be at most ${max} bytes`).toJSON(), headers: { connection: "close" } };
}

/**
 * The client's address: the socket's own, or, only when HAVEN_TRUST_PROXY is set, the last
 * X-Forwarded-For hop (the one the proxy in front of Haven appended), else X-Real-IP. A header
 * value that is not an IP address is ignored. IPv4-mapped IPv6 comes out as IPv4.
 */
export function clientIp(headers: Record<string, string>, remote: string, trustProxy: boolean): string {
  if (trustProxy) {
    const hop = (headers["x-forwarded-for"] ?? "").split(",").map((s) => s.trim()).filter(Boolean).at(-1) ?? headers["x-real-ip"]?.trim();
    if (hop !== undefined && ipaddr.isValid(canonicalAddress(hop))) return canonicalAddress(hop);
  }
  return canonicalAddress(remote);
}

function splitUrl(url: string): { path: string; query: URLSearchParams } {
  const q = url.indexOf("?");
  return q < 0 ? { path: url, query: new URLSearchParams() } : { path: url.slice(0, q), query: new URLSearchParams(url.slice(q + 1)) };
}

/** node:http request listener (the ws transport's HTTP server). */
export function nodeHttpHandler(router: Router, maxBodyBytes: number, trustProxy: boolean, log: Logger) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
    const { path, query } = splitUrl(req.url ?? "/");
    const method = (req.method ?? "GET").toUpperCase();
    let done = false;
    const reply = (r: HttpResponse) => {
      if (done) return;
      done = true;
      const { status, headers: h, payload } = serialize(r);
      res.writeHead(status, STATUS_CODES[status], { ...h, "content-length": String(payload.length) });
      res.end(method === "HEAD" ? undefined : payload);
    };
    const run = (body?: Buffer) => {
      const request: HttpRequest = { method, path, query, headers, body, ip: clientIp(headers, req.socket.remoteAddress ?? "", trustProxy) };
      router.handle(request).then(reply, (error) => {
        log.error({ err: error, path }, "http handler failed");
        reply({ status: 500, body: { code: "INTERNAL", message: "internal error" } });
      });
    };
    if (Number(headers["content-length"] ?? 0) > maxBodyBytes) {
      reply(tooLarge(maxBodyBytes));
      req.destroy();
      return;
    }
    if (BODYLESS.has(method)) {
      req.resume();
      run();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) {
        reply(tooLarge(maxBodyBytes));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => { if (!done) run(Buffer.concat(chunks)); });
    req.on("error", () => { done = true; });
  };
}

/** uWebSockets.js HTTP routes: every path not taken by the WebSocket upgrade lands here. */
export function mountUwsHttp(app: TemplatedApp, router: Router, maxBodyBytes: number, trustProxy: boolean, log: Logger): void {
  app.any("/*", (res, req) => {
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const headers: Record<string, string> = {};
    req.forEach((k, v) => { headers[k] = v; });
    const method = req.getMethod().toUpperCase();
    const query = req.getQuery() ?? "";
    const path = req.getUrl();
    const remote = Buffer.from(res.getRemoteAddressAsText()).toString();
    if (headers.upgrade) log.warn({ path, method, key: headers["sec-websocket-key"] !== undefined, version: headers["sec-websocket-version"] }, "a WebSocket upgrade reached the HTTP router");

    const reply = (r: HttpResponse, close = false) => {
      if (aborted) return;
      aborted = true; // one answer only
      const { status, headers: h, payload } = serialize(r);
      res.cork(() => {
        res.writeStatus(`${status} ${STATUS_CODES[status] ?? ""}`);
        for (const [k, v] of Object.entries(h)) if (k !== "content-length" && k !== "connection") res.writeHeader(k, v);
        if (method === "HEAD") res.endWithoutBody(payload.length, close);
        else res.end(payload, close);
      });
    };
    const run = (body?: Buffer) => {
      const request: HttpRequest = { method, path, query: new URLSearchParams(query), headers, body, ip: clientIp(headers, remote, trustProxy) };
      router.handle(request).then((r) => reply(r), (error) => {
        log.error({ err: error, path }, "http handler failed");
        reply({ status: 500, body: { code: "INTERNAL", message: "internal error" } });
      });
    };

    if (Number(headers["content-length"] ?? 0) > maxBodyBytes) {
      reply(tooLarge(maxBodyBytes), true);
      return;
    }
    if (BODYLESS.has(method)) {
      run();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.onData((chunk, isLast) => {
      if (over) return;
      size += chunk.byteLength;
      if (size > maxBodyBytes) {
        over = true;
        reply(tooLarge(maxBodyBytes), true);
        return;
      }
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) run(Buffer.concat(chunks));
    });
  });
}
