/**
 * One step of the "tracking" workload: N emergencies × 5 sockets, four senders at 1 Hz and one
 * silent receiver each, on a fresh server and a fresh database. Warm-up, then a measurement window
 * over which the server's and the generators' CPU are read from /proc, then the latency of every
 * (send, recipient) pair of the window, with a send not delivered within the loss timeout counted
 * as lost (and as slower than any delivered one in the percentiles).
 */
import { Histogram } from "./histogram.ts";
import { deploy, type Deployment } from "./deploy.ts";
import { startGenerator, type Generator } from "./generators.ts";
import { CpuWindow, openFiles, rssBytes, sleep, waitQuiet } from "./proc.ts";
import { scrapeMetrics } from "./servers.ts";
import type { Variant } from "./variants.ts";
import type { GenEmergency, JoinCommand } from "../generator.ts";
import type { Log } from "./trees.ts";
import { SCENE } from "./template.ts";

export interface TrackingOptions {
  warmupS: number;
  measureS: number;
  lossTimeoutMs: number;
  joinConcurrency: number;
  perProcess: number;
  perGenerator: number;
  measureAt: "all" | "silent";
  /** The fifth party: the receiving hospital's staff, or an ops_admin. */
  receiver: "hospital" | "ops";
  generatorLimit: number;
  p99LimitMs: number;
  maxJoinFailureShare: number;
  logDir: string;
  /** Join the sockets but never send (idle figures); the window is then only CPU and memory. */
  silentOnly?: boolean;
  /** Runs once the server is up, before any socket joins (idle figures read the memory there). */
  afterDeploy?: (serverPids: number[], urls: string[]) => Promise<void>;
  /** Runs after the window, before anything stops. */
  beforeStop?: (urls: string[]) => Promise<void>;
}

export interface StepResult {
  variant: string;
  emergencies: number;
  sockets: number;
  serverProcesses: number;
  generatorProcesses: number;
  held: number[];
  seedS: number;
  serverStartS: number[];
  join: { s: number; ok: number; failed: number; retried: number; abnormalBeforeJoin: number; errors: Record<string, number>; p50Ms: number; p99Ms: number };
  windowS: number;
  serverCpuPct: number;
  serverCpuS: number;
  /** Share of the server's CPU spent in the kernel (stime). */
  serverSysShare: number;
  generatorSysShare: number;
  generatorCpuPct: number;
  orchestratorCpuPct: number;
  coreBusyPct: number[];
  sends: number;
  deliveredPairs: number;
  lostPairs: number;
  deliveredPerS: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number; mean: number };
  sendLagP99Ms: number;
  generatorLoopDelayMaxMs: number;
  /** Bytes a silent receiver got per update delivered to it: on the wire (WebSocket header included), and the payload alone. */
  bytesPerUpdate: number;
  payloadBytesPerUpdate: number;
  silentUpdates: number;
  serverErrors: number;
  serverErrorTypes: Record<string, number>;
  closesAfterJoin: Record<string, number>;
  unmatchedPatches: number;
  /** Sends delivered in more than 50 ms: [ms after the window start (100 ms bins), slowest ms]. */
  slowAt: [number, number][];
  serverRssMb: number[];
  /** Open files of each server process at the end of the window (the limit here is 20,000). */
  serverOpenFiles: number[];
  stallMaxMs: number | null;
  loopDelayP99Ms: number | null;
  cpuUsPerDelivered: number;
  valid: boolean;
  invalidReasons: string[];
  pass: boolean;
  failReasons: string[];
}

/** The parties of a seeded emergency in generator order: patient, two first-aiders, crew (senders), receiver. */
async function havenParties(v: Variant, d: Deployment, receiver: "hospital" | "ops"): Promise<GenEmergency[]> {
  const m = v.setup!.minter;
  const ops = v.setup!.template.ids.ops;
  const out: GenEmergency[] = [];
  for (const e of d.emergencies) {
    const [patient, fa1, fa2, crew, rcv] = await Promise.all([
      m.mint({ sub: e.patient, role: "patient" }),
      m.mint({ sub: e.firstAiders[0], role: "first_aider" }),
      m.mint({ sub: e.firstAiders[1], role: "first_aider" }),
      m.mint({ sub: e.crew, role: "ambulance_crew" }),
      receiver === "hospital" ? m.mint({ sub: e.staff, role: "hospital_staff", hospitalId: e.hospitalId }) : m.mint({ sub: ops, role: "ops_admin" }),
    ]);
    out.push({
      roomId: e.id,
      parties: [
        { token: patient, role: "patient" }, { token: fa1, role: "first_aider" }, { token: fa2, role: "first_aider" },
        { token: crew, role: "ambulance_crew" }, { token: rcv, role: receiver === "hospital" ? "hospital_staff" : "ops_admin" },
      ],
    });
  }
  return out;
}

const pct = (x: number) => Math.round(x * 1000) / 10;

export async function trackingStep(v: Variant, n: number, o: TrackingOptions, log: Log, label: string): Promise<StepResult> {
  await waitQuiet(log);
  const t0 = performance.now();
  const d = await deploy({ variant: v, emergencies: n, perProcess: o.perProcess, logDir: o.logDir, label, log });
  const gens: Generator[] = [];
  try {
    await o.afterDeploy?.(d.servers.map((x) => x.pid), d.urls);
    const emergencies: GenEmergency[] = v.kind === "haven"
      ? await havenParties(v, d, o.receiver)
      : d.rooms.map((roomId) => ({ roomId, parties: Array.from({ length: 5 }, (_, i) => ({ role: i < 4 ? "sender" : "receiver" })) }));
    const genCount = Math.max(1, Math.ceil(n / o.perGenerator));
    const per = Math.ceil(n / genCount);
    const progress = new Map<number, number>();
    let lastProgress = 0;
    for (let i = 0; i < genCount; i++) {
      const g = await startGenerator((m) => {
        progress.set(i, m.joined);
        if (performance.now() - lastProgress > 5000) {
          lastProgress = performance.now();
          log(`  joining: ${[...progress.values()].reduce((a, b) => a + b, 0)} of ${n * 5} sockets`);
        }
      });
      gens.push(g);
    }
    const joinT0 = performance.now();
    // a join phase that stops moving (sockets the server never answers) fails the step rather than waiting forever
    const joinDeadlineS = 120 + n / 50;
    let joinTimer: NodeJS.Timeout | undefined;
    const joinDeadline = new Promise<never>((_, reject) => {
      joinTimer = setTimeout(() => reject(new Error(`the sockets had not all joined after ${Math.round(joinDeadlineS)} s (${[...progress.values()].reduce((a, b) => a + b, 0)} of ${n * 5})`)), joinDeadlineS * 1000);
    });
    const joined = await Promise.race([joinDeadline, Promise.all(gens.map((g, i) => {
      const mine = emergencies.slice(i * per, (i + 1) * per);
      const c: JoinCommand = {
        type: "join", protocol: v.kind === "haven" ? "colyseus" : "socketio", nodes: d.urls, emergencies: mine,
        concurrency: Math.max(1, Math.round(o.joinConcurrency / genCount)), senderBase: i * per * 4, senderTotal: n * 4, senders: [0, 1, 2, 3],
        measureAt: o.measureAt, lossTimeoutMs: o.lossTimeoutMs, origin: SCENE,
      };
      return g.request(c, "joined");
    }))]).finally(() => clearTimeout(joinTimer));
    const joinS = (performance.now() - joinT0) / 1000;
    const joinMs = new Histogram();
    for (const j of joined) joinMs.merge(j.joinMs);
    const join = {
      s: joinS,
      ok: joined.reduce((a, j) => a + j.ok, 0),
      failed: joined.reduce((a, j) => a + j.failed, 0),
      retried: joined.reduce((a, j) => a + j.retried, 0),
      abnormalBeforeJoin: joined.reduce((a, j) => a + j.abnormalBeforeJoin, 0),
      errors: joined.reduce((acc, j) => { for (const [k, c] of Object.entries(j.errors as Record<string, number>)) acc[k] = (acc[k] ?? 0) + c; return acc; }, {} as Record<string, number>),
      p50Ms: joinMs.percentile(0.5), p99Ms: joinMs.percentile(0.99),
    };
    log(`  joined ${join.ok} of ${n * 5} sockets in ${joinS.toFixed(1)} s (join p50 ${join.p50Ms.toFixed(1)} ms, p99 ${join.p99Ms.toFixed(1)} ms; ${join.failed} failed, ${join.retried} retried, ${join.abnormalBeforeJoin} closed 1006 before joining)`);
    for (const [k, c] of Object.entries(join.errors).slice(0, 5)) log(`    join error ×${c}: ${k}`);

    if (!o.silentOnly) {
      const startAt = Date.now() + 300;
      for (const g of gens) g.post({ type: "send", t0: startAt });
    }
    await sleep(o.warmupS * 1000);
    const serverPids = d.servers.map((s) => s.pid);
    const scrape = () => Promise.all(d.urls.map((u) => v.kind === "haven" ? scrapeMetrics(u) : Promise.resolve({} as Record<string, number>)));
    await scrape(); // each scrape resets the stall gauge: the next one covers the window
    const window = new CpuWindow([...serverPids, ...gens.map((g) => g.pid), process.pid]);
    for (const g of gens) g.post({ type: "mark", name: "window-start" });
    await sleep(o.measureS * 1000);
    for (const g of gens) g.post({ type: "mark", name: "window-end" });
    const cpu = window.read();
    const metrics1 = await scrape();
    const rss = serverPids.map((pid) => rssBytes(pid) / 2 ** 20);
    const files = serverPids.map(openFiles);
    await o.beforeStop?.(d.urls);
    await sleep(o.silentOnly ? 100 : o.lossTimeoutMs + 300);
    const results = await Promise.all(gens.map((g) => g.request({ type: "result" }, "result", 60_000)));

    const latency = new Histogram();
    const lag = new Histogram();
    for (const r of results) { latency.merge(r.latency); lag.merge(r.sendLag); }
    const lostPairs = results.reduce((a, r) => a + r.lostPairs, 0);
    // a lost update counts as slower than any delivered one
    latency.addBeyond(lostPairs);
    const sum = (f: (r: any) => number) => results.reduce((a, r) => a + f(r), 0);
    const serverCpuS = cpu.cpuS.slice(0, serverPids.length).reduce((a, b) => a + b, 0);
    const genCpuS = cpu.cpuS.slice(serverPids.length, serverPids.length + gens.length).reduce((a, b) => a + b, 0);
    const orchestratorCpuS = cpu.cpuS.at(-1)!;
    const deliveredPairs = sum((r) => r.deliveredPairs);
    const silentUpdates = sum((r) => r.silent.updates);
    const stall = metrics1.map((m) => m.haven_event_loop_stall_max_seconds).filter((x) => x !== undefined && Number.isFinite(x));
    const delayP99 = metrics1.map((m) => m.haven_event_loop_delay_p99_seconds).filter((x) => x !== undefined && Number.isFinite(x));
    const lat = latency.summary();
    const r: StepResult = {
      variant: v.id, emergencies: n, sockets: n * 5, serverProcesses: d.servers.length, generatorProcesses: gens.length, held: d.held,
      seedS: d.seedMs / 1000, serverStartS: d.startMs.map((x) => x / 1000), join,
      windowS: cpu.wallS,
      serverCpuPct: pct(serverCpuS / cpu.wallS), serverCpuS,
      serverSysShare: cpu.sysS.slice(0, serverPids.length).reduce((a, b) => a + b, 0) / serverCpuS,
      generatorSysShare: cpu.sysS.slice(serverPids.length, serverPids.length + gens.length).reduce((a, b) => a + b, 0) / genCpuS,
      generatorCpuPct: pct(genCpuS / cpu.wallS), orchestratorCpuPct: pct(orchestratorCpuS / cpu.wallS),
      coreBusyPct: cpu.coreBusy.map(pct),
      sends: sum((r) => r.sends), deliveredPairs, lostPairs, deliveredPerS: deliveredPairs / cpu.wallS,
      latencyMs: { p50: lat.p50, p99: lat.p99, p999: lat.p999, max: latency.max, mean: lat.mean },
      sendLagP99Ms: lag.percentile(0.99),
      generatorLoopDelayMaxMs: Math.max(...results.map((x) => x.loopDelayMaxMs)),
      bytesPerUpdate: silentUpdates ? sum((r) => r.silent.bytes) / silentUpdates : Number.NaN,
      payloadBytesPerUpdate: silentUpdates ? sum((r) => r.silent.payload) / silentUpdates : Number.NaN,
      silentUpdates,
      serverErrors: sum((r) => r.serverErrors),
      serverErrorTypes: results.reduce((acc, x) => { for (const [k, c] of Object.entries(x.serverErrorTypes as Record<string, number>)) acc[k] = (acc[k] ?? 0) + c; return acc; }, {} as Record<string, number>),
      closesAfterJoin: results.reduce((acc, x) => { for (const [k, c] of Object.entries(x.closesAfterJoin as Record<string, number>)) acc[k] = (acc[k] ?? 0) + c; return acc; }, {} as Record<string, number>),
      unmatchedPatches: sum((r) => r.unmatchedPatches),
      slowAt: mergeSlow(results.map((x) => x.slowAt as [number, number][])),
      serverRssMb: rss,
      serverOpenFiles: files,
      stallMaxMs: stall.length ? Math.max(...stall) * 1000 : null,
      loopDelayP99Ms: delayP99.length ? Math.max(...delayP99) * 1000 : null,
      cpuUsPerDelivered: deliveredPairs ? (serverCpuS / deliveredPairs) * 1e6 : Number.NaN,
      valid: true, invalidReasons: [], pass: false, failReasons: [],
    };
    if (r.generatorCpuPct > o.generatorLimit * 100) r.invalidReasons.push(`generator at ${r.generatorCpuPct} % of a core (limit ${o.generatorLimit * 100} %)`);
    if (!o.silentOnly && r.sendLagP99Ms > 50) r.invalidReasons.push(`generator sent late (p99 ${r.sendLagP99Ms.toFixed(0)} ms behind schedule)`);
    const otherOnServerCore = r.coreBusyPct[0] - r.serverCpuPct;
    if (otherOnServerCore > 15) r.invalidReasons.push(`core 0 was ${otherOnServerCore.toFixed(0)} % busy with other work`);
    r.valid = r.invalidReasons.length === 0;
    if (!r.valid) r.failReasons.push("INVALID");
    if (!o.silentOnly) {
      if (!(lat.p99 <= o.p99LimitMs)) r.failReasons.push(`p99 ${Number.isFinite(lat.p99) ? lat.p99.toFixed(1) + " ms" : "lost updates"} > ${o.p99LimitMs} ms`);
      if (join.failed > o.maxJoinFailureShare * n * 5) r.failReasons.push(`${join.failed} joins failed`);
      if (r.deliveredPairs === 0) r.failReasons.push("nothing delivered");
    }
    r.pass = r.failReasons.length === 0;
    log(`  ${n} emergencies: server ${r.serverCpuPct} % of core 0 (${r.serverProcesses} process${r.serverProcesses > 1 ? "es" : ""}), generator ${r.generatorCpuPct} % of core 1 (${gens.length} process${gens.length > 1 ? "es" : ""})`
      + (o.silentOnly ? "" : `; fan-out p50 ${fmt(lat.p50)} p99 ${fmt(lat.p99)} p99.9 ${fmt(lat.p999)} ms; ${Math.round(r.deliveredPerS)} updates/s delivered, ${lostPairs} lost; ${r.bytesPerUpdate.toFixed(1)} B per update`)
      + ` → ${r.pass ? "PASS" : r.failReasons.join("; ")}${r.valid ? "" : ` (${r.invalidReasons.join("; ")})`} [${((performance.now() - t0) / 1000).toFixed(0)} s]`);
    if (r.serverErrors) log(`  server answered ${r.serverErrors} sends with an error: ${JSON.stringify(r.serverErrorTypes).slice(0, 300)}`);
    if (Object.keys(r.closesAfterJoin).length) log(`  sockets closed by the server after joining: ${JSON.stringify(r.closesAfterJoin)}`);
    return r;
  } finally {
    await Promise.all(gens.map((g) => g.stop()));
    await d.stop();
  }
}

function mergeSlow(lists: [number, number][][]): [number, number][] {
  const m = new Map<number, number>();
  for (const l of lists) for (const [at, ms] of l) m.set(at, Math.max(m.get(at) ?? 0, ms));
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return "∞";
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0);
}
