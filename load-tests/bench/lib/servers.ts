/**
 * Starting the servers under test, pinned to core 0: Haven (on the host with ws, or inside the
 * Debian 13 root with uWebSockets.js), one process or a cluster of two, and the Socket.IO
 * baseline. The pid measured is the process listening on the port (found with `ss`), so that the
 * wrappers in between (taskset, the root's chroot) are never what is measured.
 */
import { randomBytes } from "node:crypto";
import { type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cpus } from "node:os";
import { CHECKOUT, TRIXIE_SCRIPT, type Tree } from "./trees.ts";
import { alive, exited, listenerPid, sleep, spawnPinned, stopPid } from "./proc.ts";
import { freePort } from "../../../test/harness.ts";
import { GENEROUS_LIMITS } from "../../../test/generous-limits.ts";

export const SERVER_CORE = "0";
export const GENERATOR_CORE = "1";

/**
 * The Node flags a tree starts its server with: those of its own `npm start` script
 * (`node <flags> src/main.ts`), so that each tree is measured as it ships, plus
 * HAVEN_BENCH_SERVER_FLAGS.
 */
export function startFlags(tree: Tree): string[] {
  const script = (JSON.parse(readFileSync(join(tree.hostDir, "package.json"), "utf8")) as { scripts?: { start?: string } }).scripts?.start ?? "";
  const m = /^node\s+(.*?)\s*src\/main\.ts$/.exec(script.trim());
  const own = m && m[1] ? m[1].split(/\s+/).filter((a) => a.startsWith("--")) : [];
  // extra flags for profiling a run (e.g. --trace-gc, --cpu-prof): HAVEN_BENCH_SERVER_FLAGS
  return [...own, ...(process.env.HAVEN_BENCH_SERVER_FLAGS?.split(/\s+/).filter(Boolean) ?? [])];
}

export interface Running {
  url: string;
  port: number;
  /** The process listening on the port: the one whose CPU and memory are measured. */
  pid: number;
  logFile: string;
  stop(): Promise<void>;
  /** The last lines of its log. */
  tail(lines?: number): string;
}

export interface HavenKeys {
  tokenSecretKey: string;
  medicalMasterKey: string;
}

export interface HavenLaunch {
  tree: Tree;
  /** uws runs in the Debian 13 root (glibc 2.38+), ws on the host. */
  transport: "uws" | "ws";
  databaseUrl: string;
  keys: HavenKeys;
  logFile: string;
  redisUrl?: string;
  nodeName?: string;
  /** Settings for this start only (e.g. the bootstrap ops account). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** Not pinned (for preparation runs outside measurement). */
  unpinned?: boolean;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

async function waitReady(url: string, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the server exited (${child.exitCode ?? child.signalCode}):\n${tail(logFile)}`);
    try {
      const r = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) return;
    } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error(`the server was not ready within ${timeoutMs / 1000} s:\n${tail(logFile)}`);
}

async function pidOn(port: number, child: ChildProcess): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const pid = listenerPid(port);
    if (pid) return pid;
    await sleep(100);
  }
  if (child.pid) return child.pid;
  throw new Error(`no process listens on port ${port}`);
}

function wrap(url: string, port: number, pid: number, child: ChildProcess, logFile: string, fd: number): Running {
  return {
    url, port, pid, logFile,
    tail: (lines?: number) => tail(logFile, lines),
    async stop() {
      await stopPid(pid, 10_000);
      if (!(await exited(child, 5000)) && child.pid && alive(child.pid)) {
        try { child.kill("SIGKILL"); } catch { /* gone */ }
      }
      try { closeSync(fd); } catch { /* closed */ }
    },
  };
}

/** Starts one Haven process; resolves once /ready answers (every emergency it had to restore is back). */
export async function startHaven(o: HavenLaunch): Promise<Running & { startMs: number }> {
  const port = await freePort();
  const env: Record<string, string> = {
    HAVEN_ENV: "production",
    HAVEN_TRANSPORT: o.transport,
    HAVEN_TOKEN_SECRET_KEY: o.keys.tokenSecretKey,
    HAVEN_MEDICAL_MASTER_KEY: o.keys.medicalMasterKey,
    DATABASE_URL: o.databaseUrl,
    HAVEN_DATA_DIR: "/tmp/haven-bench-data",
    ...(o.redisUrl ? { REDIS_URL: o.redisUrl, HAVEN_PUBLIC_ADDRESS: `127.0.0.1:${port}` } : {}),
    ...(o.nodeName ? { HAVEN_NODE_NAME: o.nodeName } : {}),
    // the load comes from one address: request limits opened wide (older trees ignore the names)
    ...GENEROUS_LIMITS,
    // production serves /metrics only to a scraper with the token
    HAVEN_METRICS_TOKEN: METRICS_TOKEN,
    // diagnosis only (e.g. --trace-gc): never set for measured runs unless asked
    ...(process.env.HAVEN_BENCH_SERVER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.HAVEN_BENCH_SERVER_NODE_OPTIONS } : {}),
    ...o.env,
  };
  const fd = openSync(o.logFile, "a");
  const t0 = performance.now();
  let child: ChildProcess;
  const cores = o.unpinned ? `0-${cpus().length - 1}` : SERVER_CORE;
  if (o.transport === "uws") {
    if (!o.tree.rootDir) throw new Error("the uws server runs from the tree's copy in the Debian 13 root");
    // the root's exec passes only HAVEN_*, DATABASE_URL, REDIS_URL and a few more: the rest goes through env
    const assignments = [`PORT=${port}`, "HOST=127.0.0.1", `LOG_LEVEL=${o.env?.LOG_LEVEL ?? "info"}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    child = spawnPinned(cores, "bash", [TRIXIE_SCRIPT, "exec", "-C", o.tree.rootDir, "--", "env", ...assignments, "node", ...startFlags(o.tree), "src/main.ts"], {
      cwd: CHECKOUT, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, stdio: ["ignore", fd, fd],
    });
  } else {
    const node = existsSync(join(o.tree.hostDir, "node_modules/.bin/node")) ? join(o.tree.hostDir, "node_modules/.bin/node") : process.execPath;
    child = spawnPinned(cores, node, [...startFlags(o.tree), "src/main.ts"], {
      cwd: o.tree.hostDir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "info", ...env },
      stdio: ["ignore", fd, fd],
    });
  }
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(url, child, o.logFile, o.readyTimeoutMs ?? 600_000);
  } catch (error) {
    const pid = listenerPid(port);
    if (pid) await stopPid(pid, 3000);
    if (child.pid && alive(child.pid)) child.kill("SIGKILL");
    closeSync(fd);
    throw error;
  }
  const startMs = performance.now() - t0;
  const pid = await pidOn(port, child);
  return { ...wrap(url, port, pid, child, o.logFile, fd), startMs };
}

/** The Socket.IO baseline server (load-tests/baselines/socketio-server.ts), pinned to core 0. */
export async function startSocketIo(logFile: string): Promise<Running & { startMs: number }> {
  const port = await freePort();
  const fd = openSync(logFile, "a");
  const t0 = performance.now();
  const child = spawnPinned(SERVER_CORE, process.execPath, ["load-tests/baselines/socketio-server.ts"], {
    cwd: CHECKOUT, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: String(port), HOST: "127.0.0.1" }, stdio: ["ignore", fd, fd],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the Socket.IO server exited:\n${tail(logFile)}`);
    if (listenerPid(port)) break;
    if (Date.now() > deadline) throw new Error(`the Socket.IO server did not listen:\n${tail(logFile)}`);
    await sleep(100);
  }
  const startMs = performance.now() - t0;
  const pid = await pidOn(port, child);
  return { ...wrap(url, port, pid, child, logFile, fd), startMs };
}

/** One gauge or counter of a Haven process's /metrics (NaN when absent). */
/** The metrics token of the servers this run starts (one per run). */
const METRICS_TOKEN = randomBytes(24).toString("base64url");

export async function scrapeMetrics(url: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const response = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` }, signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
    const text = await response.text();
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (m && !m[2]) out[m[1]] = Number(m[3]);
    }
  } catch { /* unreachable */ }
  return out;
}

export async function health(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    return await (await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) })).json() as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
