/**
 * What a run leaves behind: load-tests/results/<date>.json (everything measured) and .md (the
 * tables), and the table in README.md between `<!-- bench:start -->` and `<!-- bench:end -->`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KneeResult } from "./knee.ts";
import type { StepResult } from "./tracking.ts";
import { fmt } from "./tracking.ts";
import type { AlertFigures, IdleFigures, JoinProbe, KernelSend, SoakFigures } from "./figures.ts";
import type { Settings } from "./args.ts";
import { CHECKOUT } from "./trees.ts";

export interface Machine {
  cores: number;
  cpuModel: string;
  kernel: string;
  glibcHost: string;
  glibcRoot?: string;
  node: string;
  nodeRoot?: string;
  postgres: string;
}

export interface VariantReport {
  id: string;
  title: string;
  knee?: KneeResult;
  /** Why it was not measured. */
  notMeasured?: string;
}

export interface Goal {
  figure: string;
  goal: string;
  measured: string;
  /** true met, false missed, null not measured or not comparable. */
  met: boolean | null;
  how: string;
}

export interface Results {
  date: string;
  file: string;
  quick: boolean;
  command: string;
  machine: Machine;
  settings: Settings;
  trees: Record<string, { commit: string; dirty: boolean; template?: { status: string; events: number; snapshotBytes: number } }>;
  variants: VariantReport[];
  figures: {
    idle?: IdleFigures | { notMeasured: string };
    joins?: (JoinProbe | { emergencies: number; notMeasured: string })[];
    alert?: AlertFigures | { notMeasured: string };
    kernel?: KernelSend | { notMeasured: string };
    soak?: SoakFigures | { notMeasured: string };
    uwsVsWs?: { emergencies: number; uwsUs: number; wsUs: number; ratio: number } | { notMeasured: string };
  };
  goals: Goal[];
  durationS: number;
  notes: string[];
}

const MARK_START = "<!-- bench:start -->";
const MARK_END = "<!-- bench:end -->";

const n0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "—");
const ms = (x: number | null | undefined) => (x === null || x === undefined || Number.isNaN(x) ? "n/a" : fmt(x));

function stepCell(s: StepResult): string {
  const p99 = Number.isFinite(s.latencyMs.p99) ? `${fmt(s.latencyMs.p99)} ms` : "lost updates";
  const mark = !s.valid ? "INVALID" : s.pass ? "✓" : "✗";
  return `${n0(s.emergencies)}: ${p99} ${mark}`;
}

function kneeRow(v: VariantReport): string {
  if (v.notMeasured || !v.knee) return `| ${v.title} | not measured: ${v.notMeasured ?? "no result"} | | | | | | | |`;
  const k = v.knee;
  const at = k.atKnee;
  const knee = k.knee ? `**${n0(k.knee)}**${k.generatorBound ? " (≥; the generator was the limit above)" : ""}${k.failedAt ? `, fails at ${n0(k.failedAt)}` : " (largest tried)"}` : "none passed";
  const unusual = /busy|budget|at most/.test(k.stopped) ? ` (search stopped: ${k.stopped})` : "";
  const search = k.steps.map(stepCell).join(" · ") + unusual;
  if (!at) return `| ${v.title} | ${knee} | | | | | | | ${search} |`;
  return `| ${v.title} | ${knee} | ${at.serverProcesses} | ${ms(at.latencyMs.p50)} / ${ms(at.latencyMs.p99)} / ${ms(at.latencyMs.p999)} | ${at.serverCpuPct} % | ${at.generatorCpuPct} % | ${n0(at.deliveredPerS)} (${n0(at.lostPairs)} lost) | ${at.bytesPerUpdate.toFixed(1)} | ${search} |`;
}

export function markdown(r: Results, forReadme = false): string {
  const m = r.machine;
  const lines: string[] = [];
  const dirty = Object.entries(r.trees).map(([k, t]) => `${k === "current" ? "this tree" : "main"} ${t.commit}${t.dirty ? " with uncommitted changes" : ""}`).join(", ");
  lines.push(`${r.quick ? "**Quick smoke run, not a measurement.** " : ""}Measured ${r.date.slice(0, 16).replace("T", " ")} UTC on ${m.cores} cores (${m.cpuModel}), Linux ${m.kernel}, glibc ${m.glibcHost} (host, ws) / ${m.glibcRoot ?? "?"} (Debian 13 root, uWebSockets.js), Node ${m.node}, PostgreSQL ${m.postgres}; ${dirty}. Command: \`${r.command}\`. Each server pinned to core 0, the load generator (raw \`ws\` clients) to core 1; a fresh server and database per step; ${r.settings.warmupS} s warm-up, ${r.settings.measureS} s measured; a run whose generator passes ${Math.round(r.settings.generatorLimit * 100)} % of a core is INVALID.`);
  lines.push("");
  lines.push(`Tracking: N emergencies × 5 sockets (patient, two first-aiders and the crew each send a position at 1 Hz, the receiving hospital's staff listens); latency from a send to the patch carrying it at every other party; knee = largest N with p99 ≤ ${r.settings.p99LimitMs} ms.`);
  lines.push("");
  lines.push("| server | emergencies at p99 ≤ 100 ms | server processes | p50 / p99 / p99.9 ms at the knee | server CPU | generator CPU | updates/s delivered (lost) | B per update | steps (N: p99) |");
  lines.push("|---|---|---|---|---|---|---|---|---|");
  for (const v of r.variants) lines.push(kneeRow(v));
  lines.push("");
  lines.push("| figure | goal | measured | |");
  lines.push("|---|---|---|---|");
  for (const g of r.goals) lines.push(`| ${g.figure} | ${g.goal} | ${g.measured} | ${g.met === null ? "—" : g.met ? "met" : "**missed**"} |`);
  if (r.notes.length) {
    lines.push("");
    for (const n of r.notes) lines.push(`- ${n}`);
  }
  lines.push("");
  lines.push(forReadme ? `Everything measured, step by step: [${r.file}.json](load-tests/results/${r.file}.json). Method: [load-tests/bench/README.md](load-tests/bench/README.md).` : `Raw figures: [${r.file}.json](${r.file}.json). Method: [../bench/README.md](../bench/README.md).`);
  return lines.join("\n");
}

export function writeResults(r: Results): { json: string; md: string } {
  const dir = join(CHECKOUT, "load-tests/results");
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${r.file}.json`);
  const md = join(dir, `${r.file}.md`);
  writeFileSync(json, JSON.stringify(r, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? (Number.isNaN(v) ? null : v > 0 ? "Infinity" : "-Infinity") : v), 1) + "\n");
  writeFileSync(md, `# Benchmark ${r.date.slice(0, 16).replace("T", " ")} UTC\n\n${markdown(r)}\n`);
  return { json, md };
}

/** Rewrites the table between the markers; adds the markers under a short heading at the end when absent. */
export function updateReadme(r: Results, file = join(CHECKOUT, "README.md")): void {
  if (!existsSync(file)) return;
  const text = readFileSync(file, "utf8");
  const block = `${MARK_START}\n${markdown(r, true)}\n${MARK_END}`;
  const a = text.indexOf(MARK_START);
  const b = text.indexOf(MARK_END);
  let next: string;
  if (a >= 0 && b > a) next = text.slice(0, a) + block + text.slice(b + MARK_END.length);
  else next = `${text.replace(/\s*$/, "")}\n\n## Measured by \`npm run bench\`\n\n${block}\n`;
  writeFileSync(file, next);
}
