/**
 * Load generator processes (generator.ts), each pinned to core 1, driven over IPC.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { CHECKOUT } from "./trees.ts";
import { GENERATOR_CORE } from "./servers.ts";
import { spawnPinned, stopPid, exited } from "./proc.ts";

const GENERATOR = join(CHECKOUT, "load-tests/bench/generator.ts");

export interface Generator {
  pid: number;
  child: ChildProcess;
  /** Sends a command and resolves with the first message of type `expect` (progress goes to `onProgress`). */
  request<T = any>(command: object, expect?: string, timeoutMs?: number): Promise<T>;
  post(command: object): void;
  stop(): Promise<void>;
}

export async function startGenerator(onProgress?: (m: any) => void): Promise<Generator> {
  const prof = process.env.HAVEN_BENCH_GENERATOR_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.HAVEN_BENCH_GENERATOR_PROFILE}`] : [];
  const child = spawnPinned(GENERATOR_CORE, process.execPath, [...prof, GENERATOR], {
    cwd: CHECKOUT, stdio: ["ignore", "inherit", "inherit", "ipc"], serialization: "advanced",
  });
  const waiting = new Map<string, { resolve: (m: any) => void; reject: (e: Error) => void }>();
  let fatal: Error | undefined;
  child.on("message", (m: any) => {
    if (m?.type === "progress") { onProgress?.(m); return; }
    if (m?.type === "fatal") {
      fatal = new Error(`generator failed: ${m.error}`);
      for (const w of waiting.values()) w.reject(fatal);
      waiting.clear();
      return;
    }
    const w = waiting.get(m?.type);
    if (w) { waiting.delete(m.type); w.resolve(m); }
  });
  child.on("exit", (code, signal) => {
    const e = new Error(`generator exited (${code ?? signal})`);
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  });
  const ready = new Promise<any>((resolve, reject) => waiting.set("ready", { resolve, reject }));
  const hello = await ready;
  const g: Generator = {
    pid: hello.pid as number,
    child,
    post(command) { child.send(command); },
    request(command, expect = "", timeoutMs = 30 * 60_000) {
      if (fatal) return Promise.reject(fatal);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiting.delete(expect); reject(new Error(`generator: no ${expect} within ${timeoutMs / 1000} s`)); }, timeoutMs);
        waiting.set(expect, {
          resolve: (m) => { clearTimeout(timer); resolve(m); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
        child.send(command);
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try { child.send({ type: "stop" }); } catch { /* gone */ }
      if (!(await exited(child, 5000))) await stopPid(g.pid, 2000);
      await exited(child, 2000);
    },
  };
  return g;
}
