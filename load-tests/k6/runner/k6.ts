/**
 * A stand-in for k6 on Node, for machines where the k6 binary cannot be installed (Haven's CI).
 * It is NOT k6: it implements only the part of k6's API that Haven's scripts in load-tests/k6/
 * use, with k6's semantics where they matter, and refuses anything else:
 *
 * - modules `k6` (check, group, sleep, fail), `k6/http` (synchronous requests, k6's response
 *   object, expectedStatuses), `k6/websockets` (the WebSocket class, text and binary frames,
 *   binaryType "arraybuffer" or "blob"), `k6/timers` and `k6/metrics` (Counter, Gauge, Rate,
 *   Trend); globals `__ENV`, `__VU`, `__ITER`;
 * - one JavaScript runtime per VU (a worker thread), each running the script's init context;
 *   setup() once, its JSON-serialised result passed to every VU, teardown(data) at the end;
 * - an iteration ends when the exported function has returned and no timer or socket of the VU
 *   is left; an exception in a callback ends the iteration with that error;
 * - executors shared-iterations, per-vu-iterations, constant-vus and constant-arrival-rate, with
 *   startTime, gracefulStop, maxDuration, exec, env and tags; the `vus`/`iterations`/`duration`
 *   shortcuts;
 * - thresholds (p(N), avg, min, max, med, rate, count, value; submetrics `name{tag:value}`;
 *   abortOnFail), a k6-style summary, `--summary-export FILE` in k6's JSON format;
 * - exit codes as k6's: 99 thresholds failed, 104 invalid options, 107 script error (init,
 *   setup or teardown), 100 setup timeout; 0 otherwise.
 *
 * Usage: node load-tests/k6/runner/k6.ts [run] [-e KEY=VALUE]… [--summary-export FILE]
 *        [--summary-trend-stats avg,p(95),count,…] [-q] script.js
 * (`npm run k6 -- …`). Environment variables are in __ENV, as in k6; `-e` overrides them.
 */

import { writeFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { MetricStore, evaluate, parseThresholds, summaryExport, textSummary, type Threshold } from "./metrics.ts";
import { VU, type RunResult } from "./host.ts";
import type { Tags } from "./protocol.ts";

const EXIT = { thresholds: 99, setupTimeout: 100, teardownTimeout: 101, invalidConfig: 104, script: 107 } as const;

class ExitError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

// ------------------------------------------------------------------ command line

interface Args { script: string; env: Record<string, string>; summaryExport?: string; trendStats?: string[] }

function parseArgs(argv: string[]): Args {
  const env: Record<string, string> = {};
  let script: string | undefined;
  let summary: string | undefined;
  let trendStats: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (flag: string) => {
      const eq = a.indexOf("=");
      if (a.startsWith(`${flag}=`)) return a.slice(eq + 1);
      if (i + 1 >= argv.length) throw new ExitError(EXIT.invalidConfig, `${flag} needs a value`);
      return argv[++i];
    };
    if (a === "run" && script === undefined && i === 0) continue;
    if (a === "-e" || a === "--env" || a.startsWith("--env=")) {
      const kv = value(a.startsWith("--env") ? "--env" : "-e");
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new ExitError(EXIT.invalidConfig, `-e takes KEY=VALUE, got "${kv}"`);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === "--summary-export" || a.startsWith("--summary-export=")) {
      summary = value("--summary-export");
    } else if (a === "--summary-trend-stats" || a.startsWith("--summary-trend-stats=")) {
      trendStats = value("--summary-trend-stats").split(",").map((x) => x.trim()).filter(Boolean);
    } else if (a === "-q" || a === "--quiet") {
      // k6 hides its progress bar; the stand-in has none
    } else if (a.startsWith("-")) {
      throw new ExitError(EXIT.invalidConfig, `the k6 stand-in does not implement the flag ${a} (it takes -e, --summary-export, --summary-trend-stats, -q)`);
    } else if (script === undefined) {
      script = a;
    } else {
      throw new ExitError(EXIT.invalidConfig, `unexpected argument ${a}`);
    }
  }
  if (!script) throw new ExitError(EXIT.invalidConfig, "usage: k6.ts [run] [-e KEY=VALUE]... [--summary-export FILE] [--summary-trend-stats LIST] [-q] script.js");
  return { script: resolvePath(script), env, summaryExport: summary, trendStats };
}

// ------------------------------------------------------------------ durations and logs

export function parseDuration(d: unknown, what = "duration"): number {
  if (typeof d === "number") return d;
  if (typeof d !== "string") throw new ExitError(EXIT.invalidConfig, `invalid ${what}: ${JSON.stringify(d)}`);
  let total = 0;
  let rest = d.trim();
  if (/^\d+(\.\d+)?$/.test(rest)) return Number(rest) * 1000;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new ExitError(EXIT.invalidConfig, `invalid ${what}: "${d}"`);
    total += Number(m[1]) * unit[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

const started = Date.now();
function log(level: string, text: string, vu?: number): void {
  const secs = String(Math.floor((Date.now() - started) / 1000)).padStart(4, "0");
  const tag = ({ info: "INFO", warn: "WARN", error: "ERRO", debug: "DEBU" } as Record<string, string>)[level] ?? level.toUpperCase();
  const source = vu === undefined ? "" : ` source=console vu=${vu}`;
  const stream = level === "error" || level === "warn" ? process.stderr : process.stdout;
  stream.write(`${tag}[${secs}] ${text}${source}\n`);
}

/** A wait that never keeps the process alive by itself (the VU threads do, while there are any). */
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)).unref());

// ------------------------------------------------------------------ scenarios

interface Scenario {
  name: string;
  executor: string;
  exec: string;
  startTime: number;
  gracefulStop: number;
  env: Record<string, string>;
  tags: Tags;
  vus: number;
  iterations: number;
  duration: number;
  maxDuration: number;
  rate: number;
  timeUnit: number;
  preAllocatedVUs: number;
  maxVUs: number;
}

const EXECUTORS = ["shared-iterations", "per-vu-iterations", "constant-vus", "constant-arrival-rate"];

function scenariosOf(options: Record<string, any>): Scenario[] {
  let raw: Record<string, any> = options.scenarios;
  if (!raw) {
    if (options.duration !== undefined && parseDuration(options.duration) > 0 && options.iterations === undefined) {
      raw = { default: { executor: "constant-vus", vus: options.vus ?? 1, duration: options.duration } };
    } else {
      const vus = options.vus ?? 1;
      raw = { default: { executor: "shared-iterations", vus, iterations: options.iterations ?? vus, maxDuration: options.duration ?? "10m" } };
    }
  }
  return Object.entries(raw).map(([name, s]) => {
    if (!EXECUTORS.includes(s.executor)) throw new ExitError(EXIT.invalidConfig, `scenario ${name}: the k6 stand-in implements the executors ${EXECUTORS.join(", ")}, not "${s.executor}"`);
    const sc: Scenario = {
      name, executor: s.executor, exec: s.exec ?? "default",
      startTime: parseDuration(s.startTime ?? "0s"), gracefulStop: parseDuration(s.gracefulStop ?? "30s"),
      env: s.env ?? {}, tags: s.tags ?? {},
      vus: s.vus ?? 1, iterations: s.iterations ?? 1,
      duration: s.duration === undefined ? 0 : parseDuration(s.duration), maxDuration: parseDuration(s.maxDuration ?? "10m"),
      rate: s.rate ?? 0, timeUnit: parseDuration(s.timeUnit ?? "1s"),
      preAllocatedVUs: s.preAllocatedVUs ?? 0, maxVUs: s.maxVUs ?? s.preAllocatedVUs ?? 0,
    };
    if ((sc.executor === "constant-vus" || sc.executor === "constant-arrival-rate") && !(sc.duration > 0)) {
      throw new ExitError(EXIT.invalidConfig, `scenario ${name}: ${sc.executor} needs a duration`);
    }
    if (sc.executor === "constant-arrival-rate" && !(sc.rate > 0 && sc.preAllocatedVUs > 0)) {
      throw new ExitError(EXIT.invalidConfig, `scenario ${name}: constant-arrival-rate needs rate and preAllocatedVUs`);
    }
    if (sc.executor === "shared-iterations" && sc.iterations < sc.vus) {
      throw new ExitError(EXIT.invalidConfig, `scenario ${name}: the number of iterations (${sc.iterations}) can't be less than the number of VUs (${sc.vus})`);
    }
    return sc;
  });
}

interface Run {
  script: string;
  env: Record<string, string>;
  store: MetricStore;
  data?: string;
  aborted: boolean;
  nextVU: number;
  iterationErrors: number;
}

async function spawnVUs(run: Run, n: number): Promise<VU[]> {
  const out: VU[] = [];
  for (let i = 0; i < n; i += 4) {
    const batch = Array.from({ length: Math.min(4, n - i) }, () => VU.spawn(run.nextVU++, run.script, run.env, run.store, log, started));
    out.push(...await Promise.all(batch));
  }
  return out;
}

/** Runs one scenario with its own VUs; resolves when it is over (graceful stop included). */
async function runScenario(run: Run, sc: Scenario, vus: VU[], allVUs: VU[]): Promise<void> {
  await sleep(sc.startTime);
  const begin = Date.now();
  const inflight = new Set<Promise<void>>();
  const env = { ...run.env, ...sc.env };
  const tags: Tags = { ...sc.tags, scenario: sc.name, group: "" };
  let stopping = false;

  const iterate = (vu: VU): Promise<void> => {
    const p = vu.run(sc.exec, { data: run.data, env, tags, iteration: true }).then((r: RunResult) => {
      if (r.error) {
        run.iterationErrors++;
        log("error", `${r.error.split("\n").join("\n\t")}\n\tat iteration of ${sc.name} (VU ${vu.id})`);
      }
    });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    return p;
  };

  /** Stops starting iterations at `end`; lets running ones finish within gracefulStop, then interrupts them. */
  const stopAt = async (end: number, loops: Promise<unknown>) => {
    await Promise.race([loops, sleep(end - Date.now())]);
    stopping = true;
    const all = Promise.all([loops, ...inflight]);
    const graceful = await Promise.race([all.then(() => true), sleep(sc.gracefulStop).then(() => false)]);
    if (!graceful) {
      for (const vu of vus) vu.interrupt();
      await Promise.race([all, sleep(5000)]);
    }
  };

  const running = () => !stopping && !run.aborted;

  switch (sc.executor) {
    case "per-vu-iterations": {
      const loops = Promise.all(vus.map(async (vu) => {
        for (let i = 0; i < sc.iterations && running(); i++) await iterate(vu);
      }));
      await stopAt(begin + sc.maxDuration, loops);
      break;
    }
    case "shared-iterations": {
      let left = sc.iterations;
      const loops = Promise.all(vus.map(async (vu) => {
        while (left > 0 && running()) {
          left--;
          await iterate(vu);
        }
      }));
      await stopAt(begin + sc.maxDuration, loops);
      break;
    }
    case "constant-vus": {
      const end = begin + sc.duration;
      const loops = Promise.all(vus.map(async (vu) => {
        while (Date.now() < end && running()) await iterate(vu);
      }));
      await stopAt(end, loops);
      break;
    }
    case "constant-arrival-rate": {
      const end = begin + sc.duration;
      const every = sc.timeUnit / sc.rate;
      const pool = [...vus];
      let growing = 0;
      const loops = (async () => {
        for (let k = 0; ; k++) {
          const at = begin + k * every;
          if (at >= end || !running()) break;
          await sleep(at - Date.now());
          const idle = pool.find((v) => !v.busy);
          if (idle) {
            void iterate(idle);
          } else {
            run.store.add({ metric: "dropped_iterations", value: 1, tags: { scenario: sc.name } });
            if (pool.length + growing < sc.maxVUs) {
              growing++;
              void spawnVUs(run, 1).then(([v]) => { pool.push(v); allVUs.push(v); growing--; }, () => { growing--; });
            }
          }
        }
      })();
      await stopAt(end, loops);
      break;
    }
  }
}

// ------------------------------------------------------------------ the run

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  process.stdout.write([
    "",
    "  k6 stand-in for Haven — a Node runner that implements only the parts of k6's API",
    "  that Haven's load-tests/k6 scripts use. It is not k6; run the same scripts with k6",
    "  (`k6 run load-tests/k6/<script>.js`) for real load tests.",
    "",
    `  script: ${args.script}`,
    "",
  ].join("\n") + "\n");

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, args.env);
  const store = new MetricStore();
  const run: Run = { script: args.script, env, store, aborted: false, nextVU: 1, iterationErrors: 0 };

  // VU 0: reads options, runs setup() and teardown() (k6 gives them a VU of their own, too)
  let vu0: VU;
  try {
    vu0 = await VU.spawn(0, args.script, env, store, log, started);
  } catch (error) {
    throw new ExitError(EXIT.script, `the script's init context failed:\n${(error as Error).message}`);
  }
  const options = (vu0.options ?? {}) as Record<string, any>;
  const scenarios = scenariosOf(options);
  for (const sc of scenarios) {
    if (!vu0.exports.includes(sc.exec)) throw new ExitError(EXIT.invalidConfig, `scenario ${sc.name}: the script exports no function "${sc.exec}"`);
  }
  let thresholds: Threshold[];
  try {
    thresholds = parseThresholds(options.thresholds, store, (d) => parseDuration(d, "delayAbortEval"));
  } catch (error) {
    throw new ExitError(EXIT.invalidConfig, (error as Error).message);
  }
  const trendStats: string[] = args.trendStats ?? options.summaryTrendStats ?? ["avg", "min", "med", "max", "p(90)", "p(95)"];
  for (const s of trendStats) {
    if (!/^(avg|min|med|max|count|p\(\d+(\.\d+)?\))$/.test(s)) throw new ExitError(EXIT.invalidConfig, `invalid summaryTrendStats entry "${s}"`);
  }

  const vuCounts = scenarios.map((s) => s.executor === "constant-arrival-rate" ? s.preAllocatedVUs : s.vus);
  process.stdout.write(`  scenarios: ${scenarios.map((s, i) => `${s.name} (${s.executor}, ${vuCounts[i]} VUs${s.executor.includes("iterations") ? `, ${s.iterations} iterations${s.executor === "per-vu-iterations" ? " each" : ""}` : `, ${s.duration / 1000}s`})`).join("; ")}\n\n`);

  const allVUs: VU[] = [];
  const stopAll = async () => { await Promise.all([vu0, ...allVUs].map((v) => v.stop().catch(() => undefined))); };
  let exitCode = 0;
  try {
    const pools: VU[][] = [];
    try {
      for (const n of vuCounts) {
        const pool = await spawnVUs(run, n);
        pools.push(pool);
        allVUs.push(...pool);
      }
    } catch (error) {
      throw new ExitError(EXIT.script, `a VU's init context failed:\n${(error as Error).message}`);
    }
    store.add({ metric: "vus_max", value: allVUs.length, tags: {} });

    if (vu0.exports.includes("setup")) {
      const timeout = parseDuration(options.setupTimeout ?? "60s");
      const r = await Promise.race([
        vu0.run("setup", { env, tags: { group: "::setup" }, iteration: false }),
        sleep(timeout).then(() => "timeout" as const),
      ]);
      if (r === "timeout") throw new ExitError(EXIT.setupTimeout, `setup() execution timed out after ${timeout / 1000} seconds`);
      if (r.error) throw new ExitError(EXIT.script, `setup() failed:\n${r.error}`);
      run.data = r.result;
    }

    const testStart = Date.now();
    const abortWatch = thresholds.some((t) => t.abortOnFail) ? setInterval(() => {
      const secs = (Date.now() - testStart) / 1000;
      const watched = thresholds.filter((t) => t.abortOnFail && Date.now() - testStart >= t.delayAbortEvalMs);
      evaluate(watched, store, secs);
      const failed = watched.find((t) => !t.ok);
      if (failed && !run.aborted) {
        run.aborted = true;
        log("error", `thresholds on metrics '${failed.key}' were crossed; at least one has abortOnFail enabled, stopping test prematurely`);
        for (const v of allVUs) v.interrupt();
      }
    }, 1000) : undefined;
    const activeGauge = setInterval(() => store.add({ metric: "vus", value: allVUs.filter((v) => v.busy).length, tags: {} }), 1000);
    await Promise.all(scenarios.map((sc, i) => runScenario(run, sc, pools[i], allVUs)));
    clearInterval(activeGauge);
    if (abortWatch) clearInterval(abortWatch);
    const seconds = (Date.now() - testStart) / 1000;

    if (vu0.exports.includes("teardown")) {
      const timeout = parseDuration(options.teardownTimeout ?? "60s");
      const r = await Promise.race([
        vu0.run("teardown", { data: run.data, env, tags: { group: "::teardown" }, iteration: false }),
        sleep(timeout).then(() => "timeout" as const),
      ]);
      if (r === "timeout") exitCode = EXIT.teardownTimeout;
      else if (r.error) {
        log("error", `teardown() failed:\n${r.error}`);
        exitCode = EXIT.script;
      }
    }

    evaluate(thresholds, store, seconds);
    process.stdout.write(`\n${textSummary(store, thresholds, seconds, trendStats)}\n\n`);
    process.stdout.write(`     running (${seconds.toFixed(1)}s), ${allVUs.length} VUs, ${store.values("iterations", undefined, seconds, []).count} complete iterations` +
      `${run.iterationErrors ? `, ${run.iterationErrors} ended by an error` : ""}\n`);
    if (args.summaryExport) writeFileSync(args.summaryExport, JSON.stringify(summaryExport(store, thresholds, seconds, trendStats), null, 4));
    const failed = thresholds.filter((t) => !t.ok);
    if (failed.length && exitCode === 0) {
      log("error", `thresholds on metrics '${[...new Set(failed.map((t) => t.key))].join("', '")}' have been crossed`);
      exitCode = EXIT.thresholds;
    }
    if (run.aborted && exitCode === 0) exitCode = EXIT.thresholds;
  } finally {
    await stopAll();
  }
  return exitCode;
}

main().then(
  (code) => {
    // nothing is left to wait for: leave once the output is written
    process.stdout.write("", () => process.exit(code));
  },
  (error) => {
    const code = error instanceof ExitError ? error.code : EXIT.script;
    log("error", error instanceof ExitError ? error.message : (error as Error).stack ?? String(error));
    process.exitCode = code;
    // workers and sockets may still be running: leave now
    setTimeout(() => process.exit(code), 200).unref();
  },
);
