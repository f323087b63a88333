import { createHash } from "node:crypto";
import type { MetricType, Sample, Tags } from "./protocol.ts";

/**
 * The stand-in runner's metrics: every sample kept (these runs are small), aggregated at the end
 * the way k6 aggregates them, thresholds evaluated with k6's expression syntax and the same
 * aggregation methods per metric type, a k6-style text summary, and the JSON that k6's
 * `--summary-export` writes (metrics with their values and `thresholds: { expr: failed }`, and
 * root_group with the checks).
 */

export interface MetricDef { type: MetricType; isTime: boolean }

const BUILTIN: Record<string, MetricDef> = {
  checks: { type: "rate", isTime: false },
  data_received: { type: "counter", isTime: false },
  data_sent: { type: "counter", isTime: false },
  dropped_iterations: { type: "counter", isTime: false },
  group_duration: { type: "trend", isTime: true },
  http_req_duration: { type: "trend", isTime: true },
  http_req_failed: { type: "rate", isTime: false },
  http_req_waiting: { type: "trend", isTime: true },
  http_req_receiving: { type: "trend", isTime: true },
  http_reqs: { type: "counter", isTime: false },
  iteration_duration: { type: "trend", isTime: true },
  iterations: { type: "counter", isTime: false },
  vus: { type: "gauge", isTime: false },
  vus_max: { type: "gauge", isTime: false },
  ws_connecting: { type: "trend", isTime: true },
  ws_msgs_received: { type: "counter", isTime: false },
  ws_msgs_sent: { type: "counter", isTime: false },
  ws_ping: { type: "trend", isTime: true },
  ws_session_duration: { type: "trend", isTime: true },
  ws_sessions: { type: "counter", isTime: false },
};

export class MetricStore {
  readonly defs = new Map<string, MetricDef>(Object.entries(BUILTIN));
  private readonly samples = new Map<string, { value: number; tags: Tags }[]>();

  define(name: string, type: MetricType, isTime: boolean): void {
    const known = this.defs.get(name);
    if (known && known.type !== type) throw new Error(`metric "${name}" is declared as a ${type} and as a ${known.type}`);
    if (!known) this.defs.set(name, { type, isTime });
  }

  add(s: Sample): void {
    let list = this.samples.get(s.metric);
    if (!list) this.samples.set(s.metric, (list = []));
    list.push({ value: s.value, tags: s.tags });
  }

  samplesOf(name: string): readonly { value: number; tags: Tags }[] {
    return this.samples.get(name) ?? [];
  }

  count(name: string): number {
    return this.samples.get(name)?.length ?? 0;
  }

  names(): string[] {
    return [...this.defs.keys()];
  }

  /** The aggregate values of a metric (or of its samples carrying every tag in `filter`). */
  values(name: string, filter: Tags | undefined, seconds: number, trendStats: string[]): Record<string, number> {
    const def = this.defs.get(name);
    if (!def) throw new Error(`no metric ${name}`);
    const all = this.samples.get(name) ?? [];
    const list = filter ? all.filter((s) => Object.entries(filter).every(([k, v]) => s.tags[k] === v)) : all;
    const nums = list.map((s) => s.value);
    switch (def.type) {
      case "counter": {
        const count = nums.reduce((a, b) => a + b, 0);
        return { count, rate: seconds > 0 ? count / seconds : 0 };
      }
      case "rate": {
        const passes = nums.filter((v) => v !== 0).length;
        return { passes, fails: nums.length - passes, rate: nums.length ? passes / nums.length : 0 };
      }
      case "gauge": {
        return { value: nums.at(-1) ?? 0, min: nums.length ? Math.min(...nums) : 0, max: nums.length ? Math.max(...nums) : 0 };
      }
      case "trend": {
        const sorted = [...nums].sort((a, b) => a - b);
        const out: Record<string, number> = {};
        const stats = new Set([...trendStats, "avg", "min", "med", "max", "count"]);
        for (const stat of stats) out[stat] = trendStat(sorted, stat);
        return out;
      }
    }
  }
}

/** One statistic of sorted values, as k6 computes it (percentiles interpolate linearly). */
export function trendStat(sorted: number[], stat: string): number {
  const n = sorted.length;
  if (stat === "count") return n;
  if (n === 0) return 0;
  switch (stat) {
    case "avg": return sorted.reduce((a, b) => a + b, 0) / n;
    case "min": return sorted[0];
    case "max": return sorted[n - 1];
    case "med": return percentile(sorted, 50);
  }
  const m = /^p\((\d+(?:\.\d+)?)\)$/.exec(stat);
  if (!m) throw new Error(`unknown trend statistic "${stat}"`);
  return percentile(sorted, Number(m[1]));
}

function percentile(sorted: number[], pct: number): number {
  if (sorted.length === 1) return sorted[0];
  const i = (pct / 100) * (sorted.length - 1);
  const lo = Math.floor(i);
  if (lo >= sorted.length - 1) return sorted[sorted.length - 1];
  return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * (i - lo);
}

// ------------------------------------------------------------------ thresholds

export interface Threshold {
  /** The key as written in options.thresholds: `name` or `name{tag:value,…}`. */
  key: string;
  metric: string;
  filter?: Tags;
  source: string;
  stat: string;
  op: string;
  limit: number;
  abortOnFail: boolean;
  delayAbortEvalMs: number;
  ok?: boolean;
  actual?: number;
}

const EXPR = /^\s*(avg|min|max|med|count|rate|value|p\(\s*\d+(?:\.\d+)?\s*\))\s*(<=|>=|===|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$/;
/** The aggregation methods k6 allows in thresholds, per metric type. */
const ALLOWED: Record<MetricType, (stat: string) => boolean> = {
  counter: (s) => s === "count" || s === "rate",
  gauge: (s) => s === "value",
  rate: (s) => s === "rate",
  trend: (s) => ["avg", "min", "max", "med"].includes(s) || s.startsWith("p("),
};

export function parseThresholds(raw: unknown, store: MetricStore, parseMs: (d: unknown) => number): Threshold[] {
  const out: Threshold[] = [];
  if (raw === undefined || raw === null) return out;
  if (typeof raw !== "object") throw new Error("options.thresholds must be an object");
  for (const [key, list] of Object.entries(raw as Record<string, unknown>)) {
    const m = /^([^{\s]+)\s*(?:\{(.*)\})?\s*$/.exec(key);
    if (!m) throw new Error(`invalid threshold key "${key}"`);
    const metric = m[1];
    const def = store.defs.get(metric);
    if (!def) throw new Error(`invalid threshold defined on ${key}; reason: no metric name "${metric}" found`);
    let filter: Tags | undefined;
    if (m[2] !== undefined) {
      filter = {};
      for (const part of m[2].split(",")) {
        const kv = /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/.exec(part);
        if (!kv) throw new Error(`invalid threshold key "${key}": bad tag "${part}"`);
        filter[kv[1]] = kv[2].replace(/^["'](.*)["']$/, "$1");
      }
    }
    for (const item of Array.isArray(list) ? list : [list]) {
      const spec = typeof item === "string" ? { threshold: item } : (item as { threshold: string; abortOnFail?: boolean; delayAbortEval?: unknown });
      const e = EXPR.exec(String(spec.threshold));
      if (!e) throw new Error(`invalid threshold "${spec.threshold}" on ${key}`);
      const stat = e[1].replace(/\s+/g, "");
      if (!ALLOWED[def.type](stat)) throw new Error(`invalid threshold "${spec.threshold}" on ${key}: ${def.type} metrics support no "${stat}"`);
      out.push({
        key, metric, filter, source: String(spec.threshold), stat, op: e[2], limit: Number(e[3]),
        abortOnFail: spec.abortOnFail === true, delayAbortEvalMs: spec.delayAbortEval === undefined ? 0 : parseMs(spec.delayAbortEval),
      });
    }
  }
  return out;
}

export function evaluate(thresholds: Threshold[], store: MetricStore, seconds: number): void {
  for (const t of thresholds) {
    const v = store.values(t.metric, t.filter, seconds, [t.stat]);
    const actual = t.stat === "value" ? v.value : v[t.stat];
    t.actual = actual;
    switch (t.op) {
      case "<": t.ok = actual < t.limit; break;
      case "<=": t.ok = actual <= t.limit; break;
      case ">": t.ok = actual > t.limit; break;
      case ">=": t.ok = actual >= t.limit; break;
      case "==": case "===": t.ok = actual === t.limit; break;
      case "!=": t.ok = actual !== t.limit; break;
    }
  }
}

// ------------------------------------------------------------------ summary

function fmtNum(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : 4).replace(/\.?0+$/, "") || "0";
}

function fmtTime(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1) return `${(ms * 1000).toFixed(2)}µs`;
  if (ms < 1000) return `${ms.toFixed(2)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${((ms % 60_000) / 1000).toFixed(1)}s`;
}

function fmtBytes(b: number): string {
  if (b < 1000) return `${fmtNum(b)} B`;
  if (b < 1e6) return `${(b / 1000).toFixed(1)} kB`;
  return `${(b / 1e6).toFixed(1)} MB`;
}

function line(name: string, def: MetricDef, v: Record<string, number>, seconds: number, trendStats: string[]): string {
  if (def.type === "trend") {
    return trendStats.map((s) => `${s}=${def.isTime && s !== "count" ? fmtTime(v[s]) : fmtNum(v[s])}`).join(" ");
  }
  if (def.type === "rate") return `${(v.rate * 100).toFixed(2)}% ✓ ${v.passes} ✗ ${v.fails}`;
  if (def.type === "gauge") return `${fmtNum(v.value)} min=${fmtNum(v.min)} max=${fmtNum(v.max)}`;
  const count = name.startsWith("data_") ? fmtBytes(v.count) : def.isTime ? fmtTime(v.count) : fmtNum(v.count);
  return `${count} ${(seconds > 0 ? v.count / seconds : 0).toFixed(2)}/s`;
}

export function textSummary(store: MetricStore, thresholds: Threshold[], seconds: number, trendStats: string[]): string {
  const out: string[] = [];
  const checkLines = checkTotals(store);
  for (const c of checkLines) out.push(`     ${c.fails === 0 ? "✓" : "✗"} ${c.name}${c.fails ? `\n      ↳  ${Math.round((c.passes / (c.passes + c.fails)) * 100)}% — ✓ ${c.passes} / ✗ ${c.fails}` : ""}`);
  if (checkLines.length) out.push("");
  const names = store.names().filter((n) => store.count(n) > 0 || thresholds.some((t) => t.metric === n)).sort();
  const width = Math.max(30, ...names.map((n) => n.length + 3));
  for (const name of names) {
    const def = store.defs.get(name)!;
    const own = thresholds.filter((t) => t.key === name);
    const mark = own.length === 0 ? "  " : own.every((t) => t.ok) ? "✓ " : "✗ ";
    const v = store.values(name, undefined, seconds, trendStats);
    out.push(`   ${mark}${(name + " ").padEnd(width, ".")}: ${line(name, def, v, seconds, trendStats)}`);
    const subKeys = [...new Set(thresholds.filter((t) => t.metric === name && t.filter).map((t) => t.key))];
    for (const key of subKeys) {
      const subs = thresholds.filter((t) => t.key === key);
      const sv = store.values(name, subs[0].filter, seconds, trendStats);
      const label = `{ ${Object.entries(subs[0].filter!).map(([k, val]) => `${k}:${val}`).join(", ")} }`;
      out.push(`     ${subs.every((t) => t.ok) ? "✓" : "✗"} ${(label + " ").padEnd(width - 2, ".")}: ${line(name, def, sv, seconds, trendStats)}`);
    }
  }
  if (thresholds.length) {
    out.push("", "   thresholds:");
    for (const t of thresholds) {
      const def = store.defs.get(t.metric)!;
      const shown = def.isTime && t.stat !== "count" && t.stat !== "rate" ? fmtTime(t.actual ?? 0) : fmtNum(t.actual ?? 0);
      out.push(`     ${t.ok ? "✓" : "✗"} ${t.key} ${t.source}  (${t.stat}=${shown})`);
    }
  }
  return out.join("\n");
}

interface CheckTotal { name: string; group: string; passes: number; fails: number }

function checkTotals(store: MetricStore): CheckTotal[] {
  const totals = new Map<string, CheckTotal>();
  for (const s of store.samplesOf("checks")) {
    const group = s.tags.group ?? "";
    const name = s.tags.check ?? "";
    const key = `${group}::${name}`;
    let c = totals.get(key);
    if (!c) totals.set(key, (c = { name, group, passes: 0, fails: 0 }));
    if (s.value) c.passes++; else c.fails++;
  }
  return [...totals.values()];
}

const md5 = (s: string) => createHash("md5").update(s).digest("hex");

interface Group { name: string; path: string; id: string; groups: Record<string, Group>; checks: Record<string, { name: string; path: string; id: string; passes: number; fails: number }> }

/** The JSON of k6's `--summary-export` (its legacy summary format). */
export function summaryExport(store: MetricStore, thresholds: Threshold[], seconds: number, trendStats: string[]): unknown {
  const metrics: Record<string, unknown> = {};
  const names = store.names().filter((n) => store.count(n) > 0 || thresholds.some((t) => t.metric === n));
  const keys = new Set([...names, ...thresholds.map((t) => t.key)]);
  for (const key of keys) {
    const t0 = thresholds.find((t) => t.key === key);
    const name = t0 ? t0.metric : key;
    const def = store.defs.get(name)!;
    const v = store.values(name, t0?.filter, seconds, trendStats);
    let out: Record<string, unknown>;
    if (def.type === "trend") out = Object.fromEntries(trendStats.map((s) => [s, v[s]]));
    else if (def.type === "rate") out = { passes: v.passes, fails: v.fails, value: v.rate };
    else if (def.type === "gauge") out = { value: v.value, min: v.min, max: v.max };
    else out = { count: v.count, rate: v.rate };
    const own = thresholds.filter((t) => t.key === key);
    if (own.length) out.thresholds = Object.fromEntries(own.map((t) => [t.source, !t.ok]));
    metrics[key] = out;
  }
  const root: Group = { name: "", path: "", id: md5(""), groups: {}, checks: {} };
  for (const c of checkTotals(store)) {
    let g = root;
    for (const part of c.group.split("::").slice(1)) {
      const path = `${g.path}::${part}`;
      g = g.groups[part] ??= { name: part, path, id: md5(path), groups: {}, checks: {} };
    }
    const path = `${g.path}::${c.name}`;
    g.checks[c.name] = { name: c.name, path, id: md5(path), passes: c.passes, fails: c.fails };
  }
  return { root_group: root, metrics };
}
