/**
 * Settings of a run: command-line flags, each also settable as HAVEN_BENCH_<NAME> in the
 * environment (flags win), with the defaults of a full run; --quick changes the defaults to a
 * smoke run of a few minutes.
 */
import { VARIANT_IDS, type VariantId } from "./variants.ts";

export interface Settings {
  quick: boolean;
  only: VariantId[];
  baselineRef: string;
  baseline: boolean;
  /** Most emergencies a step may use. */
  max: number;
  /** First step of the knee search, and the most steps per server. */
  start: number;
  steps: number;
  /** Bisection stops when the bracket is within this fraction of the largest passing N. */
  precision: number;
  /** Wall-clock budget of one server's knee search, seconds (no new step starts after it). */
  budgetS: number;
  warmupS: number;
  measureS: number;
  lossTimeoutMs: number;
  p99LimitMs: number;
  generatorLimit: number;
  joinConcurrency: number;
  perProcess: number;
  perGenerator: number;
  measureAt: "all" | "silent";
  receiver: "hospital" | "ops";
  /** Figures after the knee search: a (idle CPU), b (stall), c (memory), d (join), e (uws÷ws), f (kernel send), g (alert → offer). */
  figures: string[];
  idleEmergencies: number;
  joinProbeSizes: number[];
  joinProbeJoins: number;
  alertRate: number;
  alertSeconds: number;
  soakS: number;
  /** Rewrite README.md's table (default: yes for a full run, no for --quick). */
  readme: boolean;
  /** The command line as typed, for the table's header. */
  command: string;
}

const HELP = `npm run bench [-- flags]

  --quick                 smoke run: a few hundred emergencies, one step per server, no baseline (about 3 min)
  --only LIST             servers, comma-separated: ${VARIANT_IDS.join(",")}
  --max N                 largest number of emergencies a step may use (default 7800: two server processes)
  --baseline-ref REF      the commit measured as "main" (default cb1a43d); --no-baseline skips it
  --start N               first step of the knee search (250)          --steps K    most steps per server (7)
  --precision F           stop bisecting within this fraction (0.1)     --budget S   seconds per server's search (420)
  --warmup S / --measure S  warm-up and measurement window per step (5 / 15)
  --loss-timeout MS       a send not delivered within this is lost (5000)
  --p99 MS                the knee's latency limit (100)               --generator-limit F  (0.85)
  --join-concurrency N    joins in flight (32)                          --receiver hospital|ops  (hospital)
  --measure-at all|silent latency at every other party or at the silent receiver only (all)
  --per-process N         emergencies one server process holds (3900)  --per-generator N  (2000)
  --figures LIST          extra figures to measure: a,b,c,d,e,f,g (all) or "none"
  --idle N                emergencies for the idle figures (2000)       --join-sizes A,B  (10,5000)
  --alert-rate R          alerts per second for the alert → offer figure (500)   --alert-seconds S  (2)
  --soak S                run the soak for S seconds (default: off)
  --readme / --no-readme  rewrite README.md's table (default: yes, except with --quick)

Every flag can also be set as HAVEN_BENCH_<FLAG> (e.g. HAVEN_BENCH_MEASURE=30).`;

export function parseArgs(argv: string[], env: Record<string, string | undefined> = process.env): Settings {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") {
      console.log(HELP);
      process.exit(0);
    }
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a} (see --help)`);
    const [name, inline] = a.slice(2).split("=", 2);
    const boolean = ["quick", "no-baseline", "readme", "no-readme"].includes(name);
    if (boolean) flags.set(name, "true");
    else {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
      flags.set(name, value);
    }
  }
  const get = (name: string): string | undefined => flags.get(name) ?? env[`HAVEN_BENCH_${name.toUpperCase().replaceAll("-", "_")}`];
  const num = (name: string, fallback: number): number => {
    const raw = get(name);
    if (raw === undefined || raw === "") return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v)) throw new Error(`--${name}: expected a number, got ${raw}`);
    return v;
  };
  const quick = get("quick") === "true" || get("quick") === "1";
  const only = (get("only") ?? (quick ? "haven-uws,haven-ws,socketio" : VARIANT_IDS.join(","))).split(",").map((s) => s.trim()).filter(Boolean);
  for (const v of only) if (!(VARIANT_IDS as readonly string[]).includes(v)) throw new Error(`--only: unknown server ${v} (${VARIANT_IDS.join(", ")})`);
  // --quick measures no baseline unless --only names one
  const baseline = get("no-baseline") !== "true" && (!quick || (get("only") !== undefined && only.some((v) => v.startsWith("main-"))));
  const figuresRaw = get("figures") ?? "a,b,c,d,e,f,g";
  const measureAt = get("measure-at") ?? "all";
  if (measureAt !== "all" && measureAt !== "silent") throw new Error("--measure-at: all or silent");
  const receiver = get("receiver") ?? "hospital";
  if (receiver !== "hospital" && receiver !== "ops") throw new Error("--receiver: hospital or ops");
  const readmeFlag = flags.has("readme") ? true : flags.has("no-readme") ? false : undefined;
  return {
    quick,
    only: (baseline ? only : only.filter((v) => !v.startsWith("main-"))) as VariantId[],
    baselineRef: get("baseline-ref") ?? "cb1a43d",
    baseline,
    max: num("max", quick ? 300 : 7800),
    start: num("start", quick ? 200 : 250),
    steps: num("steps", quick ? 1 : 7),
    precision: num("precision", 0.1),
    budgetS: num("budget", quick ? 120 : 420),
    warmupS: num("warmup", quick ? 3 : 5),
    measureS: num("measure", quick ? 6 : 15),
    lossTimeoutMs: num("loss-timeout", quick ? 3000 : 5000),
    p99LimitMs: num("p99", 100),
    generatorLimit: num("generator-limit", 0.85),
    joinConcurrency: num("join-concurrency", 32),
    perProcess: num("per-process", 3900),
    perGenerator: num("per-generator", 2000),
    measureAt,
    receiver,
    figures: figuresRaw === "none" ? [] : figuresRaw.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean),
    idleEmergencies: num("idle", quick ? 200 : 2000),
    joinProbeSizes: (get("join-sizes") ?? (quick ? "10,300" : "10,5000")).split(",").map(Number),
    joinProbeJoins: num("join-joins", quick ? 60 : 300),
    alertRate: num("alert-rate", quick ? 50 : 500),
    alertSeconds: num("alert-seconds", quick ? 1 : 2),
    soakS: num("soak", 0),
    readme: readmeFlag ?? !quick,
    command: ["npm run bench", ...(argv.length ? ["--", ...argv] : [])].join(" "),
  };
}
