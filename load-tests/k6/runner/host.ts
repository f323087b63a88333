import { MessageChannel, Worker } from "node:worker_threads";
import { WebSocket } from "ws";
import type { MetricStore } from "./metrics.ts";
import type { FromVU, HttpAnswer, HttpCall, Tags, ToVU, VUInit } from "./protocol.ts";

/**
 * The main-thread side of the stand-in's VUs: each VU is a worker thread; its HTTP calls and
 * WebSockets are carried out here, on the main thread's event loop, as k6 carries them out in
 * Go: an HTTP call answers a VU that is blocked waiting for it, and a WebSocket frame is stamped
 * with the time it was read and queued for the VU, which handles it when its own loop is free.
 * The http_*, ws_* and data_* metrics are recorded here.
 */

export type Logger = (level: string, text: string, vu?: number) => void;

export interface RunResult {
  error?: string;
  interrupted?: boolean;
  result?: string;
}

const now = () => performance.timeOrigin + performance.now();

interface Socket {
  ws: WebSocket;
  tags: Tags;
  startedAt: number;
  opened: boolean;
  terminated: boolean;
}

export class VU {
  readonly id: number;
  exports: string[] = [];
  options: unknown;
  busy = false;
  private readonly worker: Worker;
  private readonly flags = new SharedArrayBuffer(8);
  private readonly sockets = new Map<number, Socket>();
  private readonly runs = new Map<number, (r: RunResult) => void>();
  private nextRun = 1;
  private currentRun = 0;
  private exited = false;
  private readonly store: MetricStore;
  private readonly log: Logger;

  private constructor(id: number, script: string, env: Record<string, string>, store: MetricStore, log: Logger, startedAt: number) {
    this.id = id;
    this.store = store;
    this.log = log;
    const { port1, port2 } = new MessageChannel();
    const data: VUInit = { vu: id, script, env, flags: this.flags, http: port2, startedAt };
    this.worker = new Worker(new URL("./vu.ts", import.meta.url), { workerData: data, transferList: [port2] });
    port1.on("message", (call: HttpCall) => {
      void this.http(call).then((answer) => {
        port1.postMessage(answer);
        const f = new Int32Array(this.flags);
        Atomics.store(f, 0, 1);
        Atomics.notify(f, 0);
      });
    });
    port1.unref();
  }

  /** Starts a VU and runs its init context (the script's top level). */
  static spawn(id: number, script: string, env: Record<string, string>, store: MetricStore, log: Logger, startedAt: number): Promise<VU> {
    const vu = new VU(id, script, env, store, log, startedAt);
    return new Promise((resolve, reject) => {
      let ready = false;
      vu.worker.on("message", (m: FromVU) => {
        if (m.t === "ready") {
          ready = true;
          vu.exports = m.exports;
          vu.options = m.options;
          resolve(vu);
        } else if (m.t === "init-error") {
          reject(new Error(m.error));
        } else {
          vu.onMessage(m);
        }
      });
      vu.worker.on("error", (e) => {
        if (!ready) reject(e);
        else log("error", `VU ${id} crashed: ${e.stack ?? e.message}`, id);
        vu.failRuns(`the VU's thread crashed: ${e.message}`);
      });
      vu.worker.on("exit", () => {
        vu.exited = true;
        if (!ready) reject(new Error(`VU ${id} exited during init`));
        vu.failRuns("the VU's thread exited");
        for (const s of vu.sockets.values()) { s.terminated = true; s.ws.terminate(); }
      });
    });
  }

  /** Calls an exported function; resolves when the call and everything it left pending are over. */
  run(fn: string, opts: { data?: string; env: Record<string, string>; tags: Tags; iteration: boolean }): Promise<RunResult> {
    if (this.exited) return Promise.resolve({ error: "the VU's thread is gone" });
    const id = this.nextRun++;
    this.currentRun = id;
    this.busy = true;
    return new Promise((resolve) => {
      this.runs.set(id, (r) => { this.busy = false; resolve(r); });
      this.post({ t: "run", id, fn, data: opts.data, env: opts.env, tags: opts.tags, iteration: opts.iteration });
    });
  }

  /** Ends the current call at once (the VU handles it when its loop is free). */
  interrupt(): void {
    if (this.busy) this.post({ t: "interrupt", id: this.currentRun });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets.values()) { s.terminated = true; s.ws.terminate(); }
    this.sockets.clear();
    await this.worker.terminate();
  }

  private failRuns(error: string): void {
    for (const done of this.runs.values()) done({ error });
    this.runs.clear();
  }

  private post(m: ToVU, transfer: ArrayBuffer[] = []): void {
    if (!this.exited) this.worker.postMessage(m, transfer);
  }

  private onMessage(m: FromVU): void {
    switch (m.t) {
      case "metric": this.store.define(m.name, m.type, m.isTime); break;
      case "samples": for (const s of m.samples) this.store.add(s); break;
      case "log": this.log(m.level, m.text, this.id); break;
      case "done": {
        const done = this.runs.get(m.id);
        this.runs.delete(m.id);
        done?.({ error: m.error, interrupted: m.interrupted, result: m.result });
        break;
      }
      case "ws-open": this.wsOpen(m.sid, m.url, m.protocols, m.headers, m.tags); break;
      case "ws-send": this.wsSend(m.sid, m.data); break;
      case "ws-close": this.sockets.get(m.sid)?.ws.close(m.code, m.reason); break;
      case "ws-ping": this.sockets.get(m.sid)?.ws.ping(); break;
      case "ws-terminate": {
        const s = this.sockets.get(m.sid);
        if (s) { s.terminated = true; s.ws.terminate(); this.sockets.delete(m.sid); }
        break;
      }
    }
  }

  // ---------------------------------------------------------------- HTTP

  private async http(call: HttpCall): Promise<HttpAnswer> {
    const started = performance.now();
    const answer: HttpAnswer = {
      status: 0, statusText: "", body: "", headers: {}, error: "", errorCode: 0, url: call.url,
      timings: { duration: 0, waiting: 0, receiving: 0, sending: 0, blocked: 0, connecting: 0, tls_handshaking: 0 },
    };
    let sent = 0;
    try {
      if (typeof call.body === "string") sent = Buffer.byteLength(call.body);
      else if (call.body) sent = call.body.byteLength;
      const res = await fetch(call.url, {
        method: call.method, headers: call.headers, body: call.body ?? undefined, redirect: "follow",
        signal: AbortSignal.timeout(call.timeoutMs),
      });
      const headersAt = performance.now();
      answer.body = await res.text();
      const end = performance.now();
      answer.status = res.status;
      answer.statusText = `${res.status} ${res.statusText}`;
      answer.url = res.url || call.url;
      res.headers.forEach((v, k) => { answer.headers[k.replace(/(^|-)([a-z])/g, (_, a: string, b: string) => a + b.toUpperCase())] = v; });
      answer.timings.waiting = headersAt - started;
      answer.timings.receiving = end - headersAt;
      answer.timings.duration = end - started;
    } catch (error) {
      const e = error as Error & { cause?: { code?: string; message?: string } };
      answer.timings.duration = performance.now() - started;
      answer.error = e.name === "TimeoutError" ? "request timeout" : `${e.message}${e.cause?.message ? `: ${e.cause.message}` : ""}`;
      answer.errorCode = e.name === "TimeoutError" ? 1050 : e.cause?.code === "ECONNREFUSED" ? 1212 : 1000;
    }
    const expected = call.expected.length === 0 ? true : call.expected.includes(answer.status);
    const tags: Tags = { ...call.tags, method: call.method, status: String(answer.status), expected_response: String(expected) };
    const add = (metric: string, value: number) => this.store.add({ metric, value, tags });
    add("http_reqs", 1);
    add("http_req_duration", answer.timings.duration);
    add("http_req_waiting", answer.timings.waiting);
    add("http_req_receiving", answer.timings.receiving);
    add("http_req_failed", expected ? 0 : 1);
    add("data_sent", sent);
    add("data_received", Buffer.byteLength(answer.body));
    return answer;
  }

  // ---------------------------------------------------------------- WebSockets

  private event(sid: number, ev: "open" | "message" | "close" | "error", extra: { data?: ArrayBuffer | string; code?: number; reason?: string; error?: string } = {}): void {
    const transfer = extra.data instanceof ArrayBuffer ? [extra.data] : [];
    this.post({ t: "ws", sid, ev, at: now(), ...extra }, transfer);
  }

  private wsOpen(sid: number, url: string, protocols: string[], headers: Record<string, string>, tags: Tags): void {
    const startedAt = performance.now();
    const ws = new WebSocket(url, protocols, { headers, perMessageDeflate: false, handshakeTimeout: 60_000 });
    ws.binaryType = "arraybuffer";
    const s: Socket = { ws, tags, startedAt, opened: false, terminated: false };
    this.sockets.set(sid, s);
    const add = (metric: string, value: number) => this.store.add({ metric, value, tags });
    add("ws_sessions", 1);
    ws.on("open", () => {
      s.opened = true;
      add("ws_connecting", performance.now() - startedAt);
      if (!s.terminated) this.event(sid, "open");
    });
    ws.on("message", (data: ArrayBuffer | Buffer, isBinary: boolean) => {
      if (s.terminated) return;
      add("ws_msgs_received", 1);
      if (isBinary) {
        const ab = data instanceof ArrayBuffer ? data.slice(0) : new Uint8Array(data).slice().buffer;
        add("data_received", ab.byteLength);
        this.event(sid, "message", { data: ab });
      } else {
        const text = Buffer.from(data as ArrayBuffer).toString("utf8");
        add("data_received", Buffer.byteLength(text));
        this.event(sid, "message", { data: text });
      }
    });
    ws.on("error", (e) => {
      if (s.terminated) return;
      // a refused upgrade, a reset, a protocol error: k6 reports it as an error event, then the close
      this.event(sid, "error", { error: s.opened ? `websocket: ${e.message}` : `websocket: bad handshake (${e.message})` });
    });
    ws.on("close", (code: number, reason: Buffer) => {
      if (s.opened) add("ws_session_duration", performance.now() - startedAt);
      this.sockets.delete(sid);
      if (s.terminated) return;
      const text = reason.toString("utf8");
      if (code === 1006 || code === 1005) {
        this.event(sid, "close", { reason: text });
      } else {
        if (code !== 1000 && code !== 1001) this.event(sid, "error", { error: `websocket: close ${code} (${text})` });
        this.event(sid, "close", { code, reason: text });
      }
    });
  }

  private wsSend(sid: number, data: ArrayBuffer | string): void {
    const s = this.sockets.get(sid);
    if (!s || s.ws.readyState !== WebSocket.OPEN) return;
    s.ws.send(typeof data === "string" ? data : Buffer.from(data), { binary: typeof data !== "string" });
    this.store.add({ metric: "ws_msgs_sent", value: 1, tags: s.tags });
    this.store.add({ metric: "data_sent", value: typeof data === "string" ? Buffer.byteLength(data) : data.byteLength, tags: s.tags });
  }
}
