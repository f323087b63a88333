/**
 * Processes for the benchmark: CPU time and memory read from /proc, processes pinned to a core
 * with taskset, the process listening on a port, and stopping what the benchmark started (by pid).
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux). */
export const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime and stime of a process in seconds (its threads included), or NaN when it is gone. */
export function cpuTimes(pid: number): { user: number; sys: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state): utime is field 14, stime field 15
    return { user: Number(fields[11]) / CLOCK_TICKS, sys: Number(fields[12]) / CLOCK_TICKS };
  } catch {
    return { user: Number.NaN, sys: Number.NaN };
  }
}

/** utime + stime of a process in seconds, or NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

/** Resident set size in bytes (VmRSS), or NaN. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Open file descriptors of a process. */
export function openFiles(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

/** Busy and total jiffies of each CPU from /proc/stat. */
export function coreTimes(): { busy: number; total: number }[] {
  const lines = readFileSync("/proc/stat", "utf8").split("\n").filter((l) => /^cpu\d+ /.test(l));
  return lines.map((l) => {
    const v = l.trim().split(/\s+/).slice(1).map(Number);
    const idle = v[3] + (v[4] ?? 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  });
}

/** A CPU-time meter over a set of processes and the cores: start, then read the share of a core used since. */
export class CpuWindow {
  private readonly pids: number[];
  private readonly t0: number;
  private readonly cpu0: { user: number; sys: number }[];
  private readonly cores0: { busy: number; total: number }[];

  constructor(pids: number[]) {
    this.pids = pids;
    this.t0 = performance.now();
    this.cpu0 = pids.map(cpuTimes);
    this.cores0 = coreTimes();
  }

  /** Seconds of CPU per process, the wall time, and each core's busy fraction, since the start. */
  read(): { wallS: number; cpuS: number[]; sysS: number[]; coreBusy: number[] } {
    const wallS = (performance.now() - this.t0) / 1000;
    const now = this.pids.map(cpuTimes);
    const cpuS = now.map((t, i) => t.user + t.sys - this.cpu0[i].user - this.cpu0[i].sys);
    const sysS = now.map((t, i) => t.sys - this.cpu0[i].sys);
    const cores = coreTimes();
    const coreBusy = cores.map((c, i) => {
      const d = c.total - (this.cores0[i]?.total ?? 0);
      return d > 0 ? (c.busy - (this.cores0[i]?.busy ?? 0)) / d : 0;
    });
    return { wallS, cpuS, sysS, coreBusy };
  }
}

/** The pid of the process listening on 127.0.0.1:`port` (through `ss`), or undefined. */
export function listenerPid(port: number): number | undefined {
  try {
    const out = execFileSync("ss", ["-Hltnp", `sport = :${port}`]).toString();
    const m = /pid=(\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Spawns a command pinned to the given cores (taskset), so that every thread it starts inherits them. */
export function spawnPinned(cores: string, command: string, args: string[], options: SpawnOptions): ChildProcess {
  return spawn("taskset", ["-c", cores, command, ...args], options);
}

/** Pins an existing process (all its threads) to the given cores. */
export function pin(pid: number, cores: string): void {
  execFileSync("taskset", ["-a", "-c", "-p", cores, String(pid)], { stdio: "ignore" });
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after `graceMs` if it is still there. Only ever called with pids this benchmark started. */
export async function stopPid(pid: number | undefined, graceMs = 8000): Promise<void> {
  if (!pid || !alive(pid)) return;
  try { process.kill(pid, "SIGTERM"); } catch { return; }
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) {
    await sleep(50);
    if (isZombie(pid)) return;
  }
  if (alive(pid) && !isZombie(pid)) {
    try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}

/** Waits for a child process to exit, at most `ms`. */
export function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => { clearTimeout(timer); resolve(true); });
  });
}

/**
 * Waits until core 0 (the servers' core) is nearly idle over 2 s — another process on the
 * machine may be using it — for at most `maxWaitS`. Resolves with whether it was.
 */
export async function waitQuiet(log: (line: string) => void, maxWaitS = 60, threshold = 0.1): Promise<boolean> {
  const deadline = performance.now() + maxWaitS * 1000;
  let warned = false;
  for (;;) {
    const w = new CpuWindow([]);
    await sleep(2000);
    const busy = w.read().coreBusy[0] ?? 0;
    if (busy < threshold) {
      if (warned) log("  core 0 is quiet again");
      return true;
    }
    if (!warned) {
      log(`  core 0 is ${Math.round(busy * 100)} % busy with other work: waiting up to ${maxWaitS} s for it to be quiet`);
      warned = true;
    }
    if (performance.now() > deadline) {
      log(`  core 0 is still ${Math.round(busy * 100)} % busy: going on (the step will say if it was disturbed)`);
      return false;
    }
  }
}
