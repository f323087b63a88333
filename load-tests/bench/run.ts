/**
 * `npm run bench`: Haven (this tree, on uWebSockets.js and on ws), a Socket.IO 4.8 baseline and
 * main (the baseline commit, both transports) measured side by side with the same harness.
 * See load-tests/bench/README.md for the method, `npm run bench -- --help` for the flags.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { cpus, release } from "node:os";
import { parseArgs } from "./lib/args.ts";
import { kneeSearch, type KneeResult } from "./lib/knee.ts";
import { alertFigures, idleFigures, joinProbe, kernelSend, soakFigures, type AlertFigures, type IdleFigures, type JoinProbe, type KernelSend } from "./lib/figures.ts";
import { dropDb, dropLeftovers, pgVersion } from "./lib/pg.ts";
import { pin } from "./lib/proc.ts";
import { updateReadme, writeResults, type Goal, type Machine, type Results, type VariantReport } from "./lib/report.ts";
import { captureTemplate, makeBaseDb } from "./lib/template.ts";
import { minter, newKeys } from "./lib/tokens.ts";
import type { TrackingOptions } from "./lib/tracking.ts";
import { fmt } from "./lib/tracking.ts";
import { baselineTree, currentTree, glibcVersions, treeInRoot, TRIXIE_SCRIPT, type Tree } from "./lib/trees.ts";
import { describe, type HavenSetup, type Variant } from "./lib/variants.ts";
import { GENERATOR_CORE } from "./lib/servers.ts";

const settings = parseArgs(process.argv.slice(2));
const t0 = performance.now();
const date = new Date().toISOString();
const file = `${date.slice(0, 10)}-${date.slice(11, 16).replace(":", "")}${settings.quick ? "-quick" : ""}`;
const logDir = `/tmp/haven-bench-${file}`;
mkdirSync(logDir, { recursive: true });

const clock = () => {
  const s = Math.round((performance.now() - t0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
};
const log = (line: string) => console.log(`[bench ${clock()}] ${line}`);

// the orchestrator runs beside the load generators, on core 1
try { pin(process.pid, GENERATOR_CORE); } catch { log("could not pin this process to core 1 (taskset)"); }

const baseDbs: string[] = [];
let interrupted = false;
process.on("SIGINT", () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  log("interrupted: stopping (servers and generators this run started are stopped by their own cleanup; Ctrl-C again to leave at once)");
  void Promise.all(baseDbs.map(dropDb)).finally(() => process.exit(130));
});

// ------------------------------------------------------------------ machine

function machine(pg: string, glibc: { host: string; root?: string }, nodeRoot?: string): Machine {
  return {
    cores: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? "?", kernel: release(),
    glibcHost: glibc.host, glibcRoot: glibc.root, node: process.version, nodeRoot, postgres: pg,
  };
}

function rootNodeVersion(): string | undefined {
  try {
    return execFileSync("bash", [TRIXIE_SCRIPT, "exec", "--", "node", "--version"], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------ preparation

log(`${settings.quick ? "QUICK smoke run" : "full run"}: ${settings.only.join(", ")}; logs of every server in ${logDir}`);
const left = await dropLeftovers("haven_bench_");
if (left.length) log(`dropped ${left.length} databases left by an interrupted earlier run`);
const pg = await pgVersion();
const wantsUws = settings.only.some((v) => v.endsWith("-uws"));
const glibc = wantsUws ? glibcVersions() : { host: execFileSync("ldd", ["--version"]).toString().split("\n")[0].split(" ").at(-1) ?? "?" };
const m = machine(pg, glibc, wantsUws ? rootNodeVersion() : undefined);
log(`machine: ${m.cores} cores (${m.cpuModel}), Linux ${m.kernel}, glibc ${m.glibcHost} host / ${m.glibcRoot ?? "-"} root, Node ${m.node}, PostgreSQL ${m.postgres}`);

const current = currentTree();
const keys = await newKeys(current);
const trees: Results["trees"] = {};
const setups = new Map<string, HavenSetup>();

async function havenSetup(tree: Tree): Promise<HavenSetup> {
  const known = setups.get(tree.label);
  if (known) return known;
  const baseDb = await makeBaseDb(tree, keys, `${logDir}/${tree.label}-base.log`, log);
  baseDbs.push(baseDb);
  const template = await captureTemplate(tree, baseDb, keys, `${logDir}/${tree.label}-template.log`, log);
  const s: HavenSetup = { tree, baseDb, template, keys, minter: await minter(tree, keys) };
  setups.set(tree.label, s);
  trees[tree.label === "current" ? "current" : "main"] = {
    commit: tree.commit, dirty: tree.dirty,
    template: { status: template.status, events: template.events.length, snapshotBytes: (template.snapshot.state as Buffer).length },
  };
  return s;
}

const variants: { v: Variant; notMeasured?: string }[] = [];
let baseline: Tree | undefined;
for (const id of settings.only) {
  const d = describe(id, settings.baselineRef);
  try {
    if (d.kind === "socketio") { variants.push({ v: { id, ...d } }); continue; }
    let tree = current;
    if (id.startsWith("main-")) {
      baseline ??= baselineTree(settings.baselineRef, log);
      tree = baseline;
      d.title = `main (${baseline.commit}), ${d.transport === "uws" ? "uWebSockets.js" : "ws"}`;
    }
    const setup = await havenSetup(tree);
    if (d.transport === "uws") {
      const inRoot = treeInRoot(tree, tree === current ? "haven-bench" : "haven-baseline", log);
      variants.push({ v: { id, ...d, setup: { ...setup, tree: inRoot } } });
    } else {
      variants.push({ v: { id, ...d, setup } });
    }
  } catch (error) {
    const why = String((error as Error).message ?? error).split("\n")[0];
    log(`${id}: cannot be measured: ${why}`);
    variants.push({ v: { id, ...d }, notMeasured: why });
  }
}
trees.current ??= { commit: current.commit, dirty: current.dirty };

const tracking: TrackingOptions = {
  warmupS: settings.warmupS, measureS: settings.measureS, lossTimeoutMs: settings.lossTimeoutMs, joinConcurrency: settings.joinConcurrency,
  perProcess: settings.perProcess, perGenerator: settings.perGenerator, measureAt: settings.measureAt, receiver: settings.receiver,
  generatorLimit: settings.generatorLimit, p99LimitMs: settings.p99LimitMs, maxJoinFailureShare: 0.005, logDir,
};

// ------------------------------------------------------------------ knee search

const reports: VariantReport[] = [];
for (const { v, notMeasured } of variants) {
  if (notMeasured) { reports.push({ id: v.id, title: v.title, notMeasured }); continue; }
  log(`── ${v.title}: knee search`);
  const knee = await kneeSearch(v, {
    ...tracking, start: settings.start, steps: settings.steps, precision: settings.precision, budgetS: settings.budgetS, max: settings.max,
    maxServer: v.kind === "socketio" ? settings.perProcess : settings.perProcess * 2,
  }, log);
  reports.push({ id: v.id, title: v.title, knee });
}
const kneeOf = (id: string): KneeResult | undefined => reports.find((r) => r.id === id)?.knee;

// ------------------------------------------------------------------ figures

const figures: Results["figures"] = {};
const notes: string[] = [];
const primary = variants.find((x) => x.v.id === "haven-uws" && !x.notMeasured)?.v ?? variants.find((x) => x.v.id === "haven-ws" && !x.notMeasured)?.v;
const want = (f: string) => settings.figures.includes(f);
const notMeasured = (why: string) => ({ notMeasured: why });
const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | { notMeasured: string }> => {
  try {
    return await fn();
  } catch (error) {
    const why = String((error as Error).message ?? error).split("\n").slice(0, 3).join(" | ");
    log(`${what}: failed: ${why}`);
    return notMeasured(`failed: ${why}`);
  }
};
if (primary && primary.id !== "haven-uws") notes.push(`Haven on uWebSockets.js was not measured; the single-server figures are from ${primary.title}.`);

if (want("a") || want("c")) {
  figures.idle = primary ? await attempt("idle", () => idleFigures(primary, settings.idleEmergencies, tracking, log)) : notMeasured("no Haven server measured");
}
if (want("d")) {
  figures.joins = [];
  for (const n of settings.joinProbeSizes) {
    figures.joins.push(primary ? await attempt(`join at ${n}`, () => joinProbe(primary, n, settings.joinProbeJoins, tracking, log)) as JoinProbe : { emergencies: n, notMeasured: "no Haven server measured" });
  }
}
if (want("e")) {
  const uws = kneeOf("haven-uws");
  const ws = kneeOf("haven-ws");
  const common = uws && ws ? uws.steps.filter((a) => a.valid && ws.steps.some((b) => b.valid && b.emergencies === a.emergencies)).map((a) => a.emergencies) : [];
  if (common.length) {
    const n = Math.max(...common);
    const a = uws!.steps.filter((s) => s.valid && s.emergencies === n).at(-1)!;
    const b = ws!.steps.filter((s) => s.valid && s.emergencies === n).at(-1)!;
    figures.uwsVsWs = { emergencies: n, uwsUs: a.cpuUsPerDelivered, wsUs: b.cpuUsPerDelivered, ratio: a.cpuUsPerDelivered / b.cpuUsPerDelivered };
    log(`server CPU per delivered update at ${n} emergencies: uws ${a.cpuUsPerDelivered.toFixed(1)} µs, ws ${b.cpuUsPerDelivered.toFixed(1)} µs (${(a.cpuUsPerDelivered / b.cpuUsPerDelivered).toFixed(2)}×)`);
  } else {
    figures.uwsVsWs = notMeasured(uws && ws ? "no N with a valid run on both transports" : "needs both haven-uws and haven-ws");
  }
}
if (want("f")) {
  figures.kernel = await attempt("kernel send", async () => kernelSend(log));
}
if (want("g")) {
  figures.alert = primary ? await attempt("alert → offer", () => alertFigures(primary, settings.alertRate, settings.alertSeconds, tracking, log)) : notMeasured("no Haven server measured");
}
if (settings.soakS > 0) {
  figures.soak = primary ? await attempt("soak", () => soakFigures(primary, settings.soakS, tracking, log)) : notMeasured("no Haven server measured");
} else {
  figures.soak = notMeasured("off (run with --soak SECONDS)");
}

// ------------------------------------------------------------------ goals

const goals: Goal[] = [];
const has = <T extends object>(x: T | { notMeasured: string } | undefined): x is T => x !== undefined && !("notMeasured" in x);
const why = (x: { notMeasured: string } | undefined | object, fallback = "not measured") => (x && "notMeasured" in x ? `not measured: ${x.notMeasured}` : fallback);
const hk = kneeOf(primary?.id ?? "haven-uws");
const hTitle = primary?.id === "haven-ws" ? "Haven (ws)" : "Haven (uWS)";
const atKnee = hk?.atKnee;
{
  const procs = atKnee ? (atKnee.serverProcesses > 1 ? ` (${atKnee.serverProcesses} processes on core 0)` : "") : "";
  goals.push({
    figure: `emergencies per core with p99 ≤ ${settings.p99LimitMs} ms, ${hTitle}`, goal: "≥ 5,000",
    measured: hk ? `${hk.knee ? `${hk.failedAt ? "" : "≥ "}${hk.knee.toLocaleString("en-US")}` : "none passed"}${procs}${hk.failedAt ? "" : " (the largest N tried)"}${hk.generatorBound ? " (the generator was the limit above it)" : ""}` : "not measured",
    met: hk ? hk.knee >= 5000 : null, how: "tracking knee search",
  });
  const sio = kneeOf("socketio");
  const ratio = hk && sio && sio.knee > 0 ? hk.knee / sio.knee : Number.NaN;
  goals.push({
    figure: "Haven ÷ Socket.IO, same run", goal: "≥ 4×",
    measured: Number.isFinite(ratio) ? `${ratio.toFixed(2)}× (${hk!.knee} ÷ ${sio!.knee})` : "not measured",
    met: Number.isFinite(ratio) ? ratio >= 4 : null, how: "knees of the tracking search",
  });
  goals.push({
    figure: "fan-out p50 / p99 / p99.9 at that load", goal: "≤ 5 / 50 / 100 ms",
    measured: atKnee ? `${fmt(atKnee.latencyMs.p50)} / ${fmt(atKnee.latencyMs.p99)} / ${fmt(atKnee.latencyMs.p999)} ms at ${atKnee.emergencies.toLocaleString("en-US")}` : "not measured",
    met: atKnee ? atKnee.latencyMs.p50 <= 5 && atKnee.latencyMs.p99 <= 50 && atKnee.latencyMs.p999 <= 100 : null, how: "the knee's step",
  });
  const idle = figures.idle;
  goals.push({
    figure: `idle CPU, ${settings.idleEmergencies.toLocaleString("en-US")} emergencies connected and silent`, goal: "≤ 2 %",
    measured: has(idle) ? `${idle.idleCpuPct} % of a core (${idle.sockets.toLocaleString("en-US")} sockets, ${idle.windowS.toFixed(0)} s)${idle.disturbed ? `; disturbed: ${idle.disturbed}` : ""}` : why(idle),
    met: has(idle) ? idle.idleCpuPct <= 2 : null, how: "/proc, no messages sent",
  });
  const stalls = reports.filter((r) => r.knee?.atKnee).map((r) => `${r.id} ${r.knee!.atKnee!.stallMaxMs === null ? "n/a" : `${fmt(r.knee!.atKnee!.stallMaxMs)} ms`}`);
  goals.push({
    figure: "worst event-loop stall at the knee", goal: "≤ 20 ms",
    measured: atKnee ? (atKnee.stallMaxMs === null ? "n/a (no haven_event_loop_stall_max_seconds)" : `${fmt(atKnee.stallMaxMs)} ms`) + (stalls.length > 1 ? ` (${stalls.join(", ")})` : "") : "not measured",
    met: atKnee && atKnee.stallMaxMs !== null ? atKnee.stallMaxMs <= 20 : null, how: "GET /metrics over the window",
  });
  const bytesStep = atKnee ?? hk?.steps.find((s) => s.valid && Number.isFinite(s.bytesPerUpdate));
  const sioStep = kneeOf("socketio")?.atKnee ?? kneeOf("socketio")?.steps.find((s) => Number.isFinite(s.bytesPerUpdate));
  goals.push({
    figure: "bytes per position update to one recipient", goal: "≤ 30 B",
    measured: bytesStep ? `${bytesStep.payloadBytesPerUpdate.toFixed(1)} B payload, ${bytesStep.bytesPerUpdate.toFixed(1)} B with the WebSocket header${sioStep ? ` (Socket.IO ${sioStep.bytesPerUpdate.toFixed(0)} B)` : ""}` : "not measured",
    met: bytesStep ? bytesStep.payloadBytesPerUpdate <= 30 : null, how: "every frame at the silent receivers ÷ updates delivered to them",
  });
  goals.push({
    figure: "memory per socket / per emergency", goal: "≤ 2 KB / ≤ 40 KB",
    measured: has(idle) ? `${idle.perSocketKb.toFixed(2)} KB / ${idle.perEmergencyKb.toFixed(1)} KB (RSS ${idle.rssEmptyMb.toFixed(0)} → ${idle.rssRoomsMb.toFixed(0)} → ${idle.rssSocketsMb.toFixed(0)} MB; V8 heap in use ${idle.heapRoomsMb?.toFixed(0)} → ${idle.heapSocketsMb?.toFixed(0)} MB)` : why(idle),
    met: has(idle) ? idle.perSocketKb <= 2 && idle.perEmergencyKb <= 40 : null, how: "RSS deltas: restored rooms without sockets, then every socket joined",
  });
  const uw = figures.uwsVsWs;
  goals.push({
    figure: "server CPU per delivered update, uWS ÷ ws", goal: "≤ 0.75×",
    measured: has(uw) ? `${uw.ratio.toFixed(2)}× (${uw.uwsUs.toFixed(1)} ÷ ${uw.wsUs.toFixed(1)} µs at ${uw.emergencies.toLocaleString("en-US")} emergencies)` : why(uw),
    met: has(uw) ? uw.ratio <= 0.75 : null, how: "tracking steps at the same N",
  });
  const k = figures.kernel;
  const perUpdate = atKnee?.cpuUsPerDelivered ?? (has(uw) ? uw.uwsUs : Number.NaN);
  goals.push({
    figure: "server CPU per delivered update ÷ the kernel's cost of one 30-byte send", goal: "≤ 2×",
    measured: has(k) && Number.isFinite(perUpdate) ? `${((perUpdate * 1000) / k.nsPerSend).toFixed(1)}× (${perUpdate.toFixed(1)} µs ÷ ${k.nsPerSend.toFixed(0)} ns)` : why(k, "not measured"),
    met: has(k) && Number.isFinite(perUpdate) ? (perUpdate * 1000) / k.nsPerSend <= 2 : null, how: "C program on loopback TCP, writer on core 0",
  });
  const joins = (figures.joins ?? []).filter(has) as JoinProbe[];
  const [j1, j2] = [joins[0], joins[1]];
  goals.push({
    figure: `join by emergency id, p99 at ${settings.joinProbeSizes.map((x) => x.toLocaleString("en-US")).join(" and ")} live emergencies`, goal: "≤ 15 ms, flat (≤ 1.2×)",
    measured: j1 && j2 ? `${fmt(j1.p99Ms)} ms and ${fmt(j2.p99Ms)} ms (${(j2.p99Ms / j1.p99Ms).toFixed(2)}×)` : (figures.joins?.length ? figures.joins.map((j) => ("notMeasured" in j ? `${j.emergencies}: ${j.notMeasured}` : `${j.emergencies}: ${fmt(j.p99Ms)} ms`)).join(", ") : "not measured"),
    met: j1 && j2 ? j1.p99Ms <= 15 && j2.p99Ms <= 15 && j2.p99Ms / j1.p99Ms <= 1.2 : null, how: "seat reservation + socket + JOIN_ROOM answered, one at a time",
  });
  const al = figures.alert;
  goals.push({
    figure: `alert → first offer p99 at ${settings.alertRate} alerts/s`, goal: "≤ 100 ms",
    measured: has(al) ? `${fmt(al.offerP99Ms)} ms (p50 ${fmt(al.offerP50Ms)} ms; ${al.withOffer} of ${al.alertsSent} alerts offered, ${al.onDuty} responders on duty)` : why(al),
    met: has(al) ? al.offerP99Ms <= 100 && al.withoutOffer === 0 : null, how: "REST alerts at a fixed rate, offers seen on duty sockets",
  });
  const so = figures.soak;
  goals.push({
    figure: "soak: RSS growth; live rooms vs active emergencies", goal: "≤ 1 MB/h; equal",
    measured: has(so) ? `${so.rssGrowthMbPerHour.toFixed(1)} MB/h over ${so.seconds} s; at the end ${so.finalEmergencyRooms} rooms, ${so.finalActive} active` : why(so),
    met: has(so) ? so.rssGrowthMbPerHour <= 1 && so.finalEmergencyRooms === so.finalActive : null, how: "emergencies raised, streamed and cancelled in a loop",
  });
}
for (const r of reports) {
  for (const s of r.knee?.steps ?? []) {
    if (s.join.abnormalBeforeJoin > 0) { notes.push(`${r.id}: sockets closed with 1006 before their join completed (each retried once): ${r.knee!.steps.map((x) => x.join.abnormalBeforeJoin).join(", ")} per step.`); break; }
  }
  const restore = r.knee?.steps.filter((s) => s.serverProcesses === 1 && s.emergencies >= 1000).map((s) => `${s.emergencies}: ${s.serverStartS[0].toFixed(1)} s`);
  if (restore?.length) notes.push(`${r.id}: server start with N emergencies to restore (to /ready): ${restore.join(", ")}.`);
}

for (const j of figures.joins ?? []) {
  if ("restoreS" in j && j.emergencies >= 1000) notes.push(`Start-up with ${j.emergencies.toLocaleString("en-US")} active emergencies to restore: /ready after ${j.restoreS.toFixed(1)} s (${((j.restoreS * 1000) / j.emergencies).toFixed(2)} ms per emergency).`);
}

// ------------------------------------------------------------------ results

const results: Results = {
  date, file, quick: settings.quick, command: settings.command, machine: m, settings, trees, variants: reports, figures, goals,
  durationS: (performance.now() - t0) / 1000, notes,
};
const written = writeResults(results);
log(`results: ${written.json} and ${written.md}`);
if (settings.readme) {
  updateReadme(results);
  log("README.md: the table between <!-- bench:start --> and <!-- bench:end --> is rewritten");
} else {
  log(settings.quick ? "README.md left as it is (a quick run does not replace measured figures; --readme to force)" : "README.md left as it is (--no-readme)");
}
for (const db of baseDbs) await dropDb(db);
console.log("");
console.log((await import("./lib/report.ts")).markdown(results));
log(`done in ${clock()}`);
process.exit(0);
