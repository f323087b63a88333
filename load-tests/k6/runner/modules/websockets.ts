import { rt, type SocketSink } from "../runtime.ts";
import type { ToVU } from "../protocol.ts";

/**
 * The stand-in's `k6/websockets`: k6's WebSocket class (the WHATWG API as k6 implements it).
 * The socket itself lives in the main thread; its events come back stamped with the time the
 * main thread received them (`event.timestamp`, epoch milliseconds), as k6 stamps them when
 * its reader goroutine reads them, so a VU that was blocked still sees when a frame arrived.
 * As in k6: a close with a code other than 1000 or 1001 fires "error" before "close", an
 * abnormal close fires "close" without a code, and an open socket keeps the iteration going.
 */

type Listener = (event: Record<string, unknown>) => unknown;
type EventType = "open" | "message" | "error" | "close" | "ping" | "pong";
const TYPES: EventType[] = ["open", "message", "error", "close", "ping", "pong"];

export class WebSocket implements SocketSink {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;

  readonly url: string;
  readyState = 0;
  bufferedAmount = 0;
  protocol = "";
  extensions: string[] = [];
  private type: "blob" | "arraybuffer" = "blob";
  private readonly listeners: Record<string, Listener[]> = {};
  private readonly handlers: Record<string, Listener | null> = {};
  private readonly sid: number;
  private closeCode = 0;

  constructor(url: string, protocols?: string | string[] | null, params?: { headers?: Record<string, string> } | null) {
    if (url === undefined || url === null) throw new Error("WebSocket requires a url");
    const u = new URL(String(url));
    if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new Error(`WebSocket requires url with scheme ws or wss, but got "${u.protocol.slice(0, -1)}"`);
    if (u.hash) throw new Error(`WebSocket requires no url fragment, but got "${u.hash.slice(1)}"`);
    this.url = String(url);
    for (const t of TYPES) {
      this.listeners[t] = [];
      this.handlers[t] = null;
    }
    const protos = protocols === undefined || protocols === null ? [] : Array.isArray(protocols) ? protocols.map(String) : [String(protocols)];
    this.sid = rt.openSocket(this, this.url, protos, { ...(params?.headers ?? {}) });
  }

  get binaryType(): string {
    return this.type;
  }

  set binaryType(t: string) {
    if (t !== "blob" && t !== "arraybuffer") throw new Error(`unknown binaryType ${t}, the supported ones are "blob" and "arraybuffer"`);
    this.type = t;
  }

  get onopen() { return this.handlers.open; }
  set onopen(f: Listener | null) { this.setHandler("open", f); }
  get onmessage() { return this.handlers.message; }
  set onmessage(f: Listener | null) { this.setHandler("message", f); }
  get onerror() { return this.handlers.error; }
  set onerror(f: Listener | null) { this.setHandler("error", f); }
  get onclose() { return this.handlers.close; }
  set onclose(f: Listener | null) { this.setHandler("close", f); }
  get onping() { return this.handlers.ping; }
  set onping(f: Listener | null) { this.setHandler("ping", f); }
  get onpong() { return this.handlers.pong; }
  set onpong(f: Listener | null) { this.setHandler("pong", f); }

  private setHandler(type: EventType, f: Listener | null): void {
    if (f !== null && f !== undefined && typeof f !== "function") throw new Error(`a value for 'on${type}' should be callable`);
    this.handlers[type] = f ?? null;
  }

  addEventListener(type: string, handler: Listener): void {
    if (typeof handler !== "function") throw new Error(`handler for event type "${type}" isn't a callable function`);
    if (!this.listeners[type]) {
      rt.post({ t: "log", level: "warn", text: `can't add event handler: unknown event type "${type}"` });
      return;
    }
    this.listeners[type].push(handler);
  }

  send(data: unknown): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError");
    if (typeof data === "string") {
      rt.post({ t: "ws-send", sid: this.sid, data });
    } else if (data instanceof ArrayBuffer) {
      const copy = data.slice(0);
      rt.post({ t: "ws-send", sid: this.sid, data: copy }, [copy]);
    } else if (ArrayBuffer.isView(data)) {
      const copy = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice().buffer;
      rt.post({ t: "ws-send", sid: this.sid, data: copy }, [copy]);
    } else {
      throw new Error(`unsupported send type ${typeof data}`);
    }
  }

  ping(): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError");
    rt.post({ t: "ws-ping", sid: this.sid });
  }

  close(code?: number, reason?: string): void {
    if (this.readyState === 2 || this.readyState === 3) return;
    if (code !== undefined && code !== 0 && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new Error(`InvalidAccessError: Failed to execute 'close' on 'WebSocket': The close code must be either 1000, or between 3000 and 4999. ${code} is neither`);
    }
    if (reason !== undefined && Buffer.byteLength(reason) > 123) throw new Error("SyntaxError: Failed to execute 'close' on 'WebSocket': The message must not be greater than 123 bytes");
    this.readyState = 2;
    this.closeCode = code || 1000;
    rt.post({ t: "ws-close", sid: this.sid, code: this.closeCode, reason: reason ?? "" });
  }

  deliver(ev: Extract<ToVU, { t: "ws" }>): void {
    switch (ev.ev) {
      case "open":
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.dispatch("open", ev.at, {});
        return;
      case "message": {
        if (this.readyState !== 1) return;
        let data: unknown = ev.data;
        if (typeof data !== "string" && this.type === "blob") data = new Blob([data as ArrayBuffer]);
        this.dispatch("message", ev.at, { data, origin: this.url });
        return;
      }
      case "error":
        if (this.readyState === 3) return;
        this.dispatch("error", ev.at, { error: ev.error ?? "" });
        return;
      case "close": {
        if (this.readyState === 3) return;
        this.readyState = 3;
        const code = ev.code || this.closeCode;
        this.dispatch("close", ev.at, code ? { code, reason: ev.reason ?? "" } : { reason: ev.reason ?? "" });
        rt.socketDone(this.sid);
        return;
      }
    }
  }

  private dispatch(type: EventType, at: number, extra: Record<string, unknown>): void {
    const event = { type, target: this, timestamp: at, ...extra };
    const all = [this.handlers[type], ...this.listeners[type]].filter((f): f is Listener => typeof f === "function");
    for (const f of all) {
      if (!rt.hasSocket(this.sid)) return; // the call ended (an earlier handler threw): no more events
      rt.invoke(f, this, [event]);
    }
  }
}

export default { WebSocket };
