import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import type { FromVU, HttpAnswer, HttpCall, MetricType, Sample, Tags, ToVU, VUInit } from "./protocol.ts";

/**
 * One VU's runtime, inside its worker thread: the part of k6's VU that the module shims
 * (modules/*.ts) share. It keeps k6's event-loop rule for when a call of an exported function
 * is over: the function has returned (and its promise settled, or nothing is left that could
 * settle it) and no timer is pending and no socket is open. An exception thrown by a callback
 * ends the iteration with that error, as in k6. Network I/O is done by the main thread: HTTP
 * synchronously through a blocking call (`http`), WebSockets as messages both ways.
 */

const init = workerData as VUInit;
const flags = new Int32Array(init.flags);

export type Phase = "init" | "setup" | "teardown" | "default" | "idle";

/** What a WebSocket shim receives from the main thread. */
export interface SocketSink {
  deliver(ev: Extract<ToVU, { t: "ws" }>): void;
}

interface Activation {
  id: number;
  iteration: boolean;
  startedAt: number;
  returned: boolean;
  settled: boolean;
  value: unknown;
  error: unknown;
  interrupted: boolean;
  finished: boolean;
}

const VALID_METRIC_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,127}$/;

class Runtime {
  readonly vu = init.vu;
  phase: Phase = "init";
  tags: Tags = {};
  private samples: Sample[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private pending = 0;
  private current: Activation | undefined;
  private checkQueued = false;
  private readonly sockets = new Map<number, SocketSink>();
  private readonly timers = new Map<number, { handle: ReturnType<typeof setTimeout>; repeat: boolean }>();
  private nextSid = 1;
  private nextTimer = 1;
  private iterations = -1;
  private dataSource: string | undefined;
  private data: unknown;
  readonly metrics = new Map<string, { type: MetricType; isTime: boolean }>();

  post(message: FromVU, transfer?: ArrayBuffer[]): void {
    parentPort!.postMessage(message, transfer ?? []);
  }

  // ---------------------------------------------------------------- metrics

  defineMetric(name: string, type: MetricType, isTime: boolean): void {
    if (this.phase !== "init") throw new Error("metrics must be declared in the init context");
    if (!VALID_METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
    const known = this.metrics.get(name);
    if (known && known.type !== type) throw new Error(`metric "${name}" is already a ${known.type}`);
    this.metrics.set(name, { type, isTime });
    this.post({ t: "metric", name, type, isTime });
  }

  emit(metric: string, value: number, tags?: Record<string, unknown>): void {
    if (this.phase === "init") throw new Error("adding to metrics in the init context is not supported");
    const all: Tags = { ...this.tags };
    if (tags) for (const [k, v] of Object.entries(tags)) all[k] = String(v);
    this.samples.push({ metric, value, tags: all });
    if (this.samples.length >= 500) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), 200);
  }

  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.samples.length === 0) return;
    this.post({ t: "samples", samples: this.samples });
    this.samples = [];
  }

  // ---------------------------------------------------------------- blocking calls

  /** k6's HTTP calls are synchronous: the request goes to the main thread and this thread waits. */
  http(call: HttpCall): HttpAnswer {
    if (this.phase === "init") throw new Error("making HTTP requests in the init context is not supported");
    Atomics.store(flags, 0, 0);
    init.http.postMessage(call);
    for (;;) {
      Atomics.wait(flags, 0, 0, 60_000);
      const answer = receiveMessageOnPort(init.http);
      if (answer) return answer.message as HttpAnswer;
    }
  }

  /** k6's sleep() blocks the VU, its sockets' events included. */
  sleep(seconds: number): void {
    if (seconds > 0) Atomics.wait(flags, 1, 0, seconds * 1000);
  }

  // ---------------------------------------------------------------- the event loop

  /** Runs a callback from the event loop; an exception ends the current call, as in k6. */
  invoke(fn: (...args: any[]) => unknown, thisArg: unknown, args: unknown[]): void {
    try {
      const r = fn.apply(thisArg, args) as { then?: unknown; catch?: (f: (e: unknown) => void) => unknown } | undefined;
      if (r && typeof r.then === "function" && typeof r.catch === "function") r.catch((e) => this.fail(e));
    } catch (error) {
      this.fail(error);
      return;
    }
    this.check();
  }

  setTimer(cb: (...args: any[]) => unknown, ms: number, args: unknown[], repeat: boolean): number {
    if (typeof cb !== "function") throw new TypeError("the timer callback must be a function");
    const id = this.nextTimer++;
    const delay = Math.max(0, Number(ms) || 0);
    const fire = () => {
      if (!repeat) {
        this.timers.delete(id);
        this.pending--;
      }
      this.invoke(cb, undefined, args);
    };
    const handle = repeat ? setInterval(fire, delay) : setTimeout(fire, delay);
    this.timers.set(id, { handle, repeat });
    this.pending++;
    return id;
  }

  clearTimer(id: unknown): void {
    const timer = this.timers.get(Number(id));
    if (!timer) return;
    if (timer.repeat) clearInterval(timer.handle); else clearTimeout(timer.handle);
    this.timers.delete(Number(id));
    this.pending--;
    this.check();
  }

  openSocket(sink: SocketSink, url: string, protocols: string[], headers: Record<string, string>): number {
    if (this.phase === "init") throw new Error("using websockets in the init context is not supported");
    const sid = this.nextSid++;
    this.sockets.set(sid, sink);
    this.pending++;
    this.post({ t: "ws-open", sid, url, protocols, headers, tags: { ...this.tags } });
    return sid;
  }

  /** A socket's close event has been dispatched: it no longer keeps the call alive. */
  socketDone(sid: number): void {
    if (this.sockets.delete(sid)) this.pending--;
    this.check();
  }

  hasSocket(sid: number): boolean {
    return this.sockets.has(sid);
  }

  deliver(ev: Extract<ToVU, { t: "ws" }>): void {
    this.sockets.get(ev.sid)?.deliver(ev);
  }

  // ---------------------------------------------------------------- calls of exported functions

  start(msg: Extract<ToVU, { t: "run" }>, fn: (data: unknown) => unknown): void {
    (globalThis as Record<string, unknown>).__ENV = msg.env;
    if (msg.iteration) (globalThis as Record<string, unknown>).__ITER = ++this.iterations;
    this.tags = { ...msg.tags };
    this.phase = msg.iteration ? "default" : (msg.fn as Phase);
    const act: Activation = {
      id: msg.id, iteration: msg.iteration, startedAt: performance.now(), returned: false, settled: false,
      value: undefined, error: undefined, interrupted: false, finished: false,
    };
    this.current = act;
    // as k6: the setup data is decoded once per VU, so what an iteration changes in it stays
    if (msg.data !== this.dataSource) {
      this.dataSource = msg.data;
      this.data = msg.data === undefined ? undefined : JSON.parse(msg.data);
    }
    let ret: unknown;
    try {
      ret = fn(msg.iteration ? this.data : msg.data === undefined ? undefined : JSON.parse(msg.data));
    } catch (error) {
      this.fail(error);
      return;
    }
    const thenable = ret as { then?: (ok: (v: unknown) => void, ko: (e: unknown) => void) => unknown } | undefined;
    if (thenable && typeof thenable.then === "function") {
      thenable.then((v) => { act.value = v; act.settled = true; this.check(); }, (e) => { if (this.current === act) this.fail(e); });
    } else {
      act.value = ret;
      act.settled = true;
    }
    act.returned = true;
    this.check();
  }

  interrupt(id: number): void {
    const act = this.current;
    if (!act || act.id !== id || act.finished) return;
    act.interrupted = true;
    this.finish(act);
  }

  /** An uncaught error: ends the current call (or, outside one, is only logged). */
  fail(error: unknown): void {
    const act = this.current;
    if (!act || act.finished) {
      this.post({ t: "log", level: "error", text: `Uncaught ${describe(error)}` });
      return;
    }
    act.error = error ?? new Error("undefined error");
    this.finish(act);
  }

  /** Once the function returned and nothing is pending, the call is over (checked after microtasks). */
  private check(): void {
    const act = this.current;
    if (!act || act.finished || !act.returned || this.pending > 0 || this.checkQueued) return;
    this.checkQueued = true;
    setImmediate(() => {
      this.checkQueued = false;
      if (this.current === act && !act.finished && act.returned && this.pending === 0) this.finish(act);
    });
  }

  private finish(act: Activation): void {
    act.finished = true;
    for (const t of this.timers.values()) {
      if (t.repeat) clearInterval(t.handle); else clearTimeout(t.handle);
    }
    this.timers.clear();
    for (const sid of this.sockets.keys()) this.post({ t: "ws-terminate", sid });
    this.sockets.clear();
    this.pending = 0;
    if (act.iteration && !act.interrupted) {
      this.emit("iterations", 1);
      this.emit("iteration_duration", performance.now() - act.startedAt);
    }
    this.flush();
    let result: string | undefined;
    if (!act.error && !act.interrupted && act.value !== undefined) {
      try {
        result = JSON.stringify(act.value);
      } catch (error) {
        act.error = new Error(`the value returned by ${this.phase}() cannot be serialized to JSON: ${describe(error)}`);
      }
    }
    this.current = undefined;
    this.phase = "idle";
    this.post({
      t: "done", id: act.id, interrupted: act.interrupted,
      error: act.interrupted ? undefined : act.error === undefined ? undefined : describe(act.error),
      result,
    });
  }
}

export function describe(error: unknown): string {
  if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
  try {
    return typeof error === "string" ? error : JSON.stringify(error);
  } catch {
    return String(error);
  }
}

export const rt = new Runtime();
