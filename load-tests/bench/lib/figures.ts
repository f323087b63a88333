/**
 * The figures measured after the knee search, each on a fresh server and database:
 * idle CPU and memory, join latency at a few and at thousands of live emergencies, alert → first
 * offer, the kernel's cost of one small send, and the soak.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Histogram } from "./histogram.ts";
import { deploy } from "./deploy.ts";
import { startGenerator } from "./generators.ts";
import { createDb, dropDb, newDbName, withDb } from "./pg.ts";
import { rssBytes, sleep, CpuWindow, waitQuiet } from "./proc.ts";
import { seedPeople } from "./seed.ts";
import { GENERATOR_CORE, SERVER_CORE, scrapeMetrics, startHaven } from "./servers.ts";
import { trackingStep, type StepResult, type TrackingOptions } from "./tracking.ts";
import type { Variant } from "./variants.ts";
import type { Log } from "./trees.ts";

const MB = 2 ** 20;

// ------------------------------------------------------------------ a) idle CPU, c) memory

export interface IdleFigures {
  emergencies: number;
  sockets: number;
  /** Server RSS with no emergency, with the emergencies restored, and with their sockets joined (MB). */
  rssEmptyMb: number;
  rssRoomsMb: number;
  rssSocketsMb: number;
  perEmergencyKb: number;
  perSocketKb: number;
  /** % of a core over the window, every socket joined and silent. */
  idleCpuPct: number;
  /** Why the idle window may be disturbed (something else busy on core 0), if so. */
  disturbed?: string;
  /** V8 heap in use (haven_process_heap_used_bytes) before and after the sockets joined, MB. */
  heapRoomsMb?: number;
  heapSocketsMb?: number;
  windowS: number;
  restoreS: number;
  joinFailed: number;
  step: StepResult;
}

async function rssOf(v: Variant, n: number, o: TrackingOptions, log: Log, label: string, settleS = 5): Promise<{ rssMb: number; startS: number }> {
  const d = await deploy({ variant: v, emergencies: n, perProcess: Number.POSITIVE_INFINITY, logDir: o.logDir, label, log });
  try {
    await sleep(settleS * 1000);
    return { rssMb: rssBytes(d.servers[0].pid) / MB, startS: d.startMs[0] / 1000 };
  } finally {
    await d.stop();
  }
}

export async function idleFigures(v: Variant, n: number, o: TrackingOptions, log: Log): Promise<IdleFigures> {
  log(`${v.id}: memory with no emergency`);
  const empty = await rssOf(v, 0, o, log, `${v.id}-idle-empty`);
  log(`  RSS ${empty.rssMb.toFixed(1)} MB; now ${n} emergencies restored, then ${n * 5} silent sockets`);
  let rssRooms = Number.NaN;
  let heapRooms = Number.NaN;
  let heapSockets = Number.NaN;
  const step = await trackingStep(v, n, {
    ...o, silentOnly: true, warmupS: 5, measureS: 10, perProcess: Number.POSITIVE_INFINITY,
    afterDeploy: async (pids, urls) => {
      await sleep(5000);
      rssRooms = pids.map((pid) => rssBytes(pid)).reduce((a, b) => a + b, 0) / MB;
      heapRooms = (await scrapeMetrics(urls[0])).haven_process_heap_used_bytes / MB;
    },
    beforeStop: async (urls) => { heapSockets = (await scrapeMetrics(urls[0])).haven_process_heap_used_bytes / MB; },
  }, log, `${v.id}-idle-${n}`);
  const rssSockets = step.serverRssMb.reduce((a, b) => a + b, 0);
  const f: IdleFigures = {
    emergencies: n, sockets: step.join.ok, rssEmptyMb: empty.rssMb, rssRoomsMb: rssRooms, rssSocketsMb: rssSockets,
    perEmergencyKb: ((rssRooms - empty.rssMb) * 1024) / n,
    perSocketKb: step.join.ok ? ((rssSockets - rssRooms) * 1024) / step.join.ok : Number.NaN,
    idleCpuPct: step.serverCpuPct, disturbed: step.valid ? undefined : step.invalidReasons.join("; "),
    heapRoomsMb: heapRooms, heapSocketsMb: heapSockets, windowS: step.windowS, restoreS: step.serverStartS[0], joinFailed: step.join.failed, step,
  };
  log(`  idle: ${f.idleCpuPct} % of a core with ${f.sockets} silent sockets over ${f.windowS.toFixed(0)} s; RSS ${f.rssEmptyMb.toFixed(0)} → ${f.rssRoomsMb.toFixed(0)} → ${f.rssSocketsMb.toFixed(0)} MB (V8 heap in use ${f.heapRoomsMb?.toFixed(0)} → ${f.heapSocketsMb?.toFixed(0)} MB): ${f.perEmergencyKb.toFixed(1)} KB per emergency, ${f.perSocketKb.toFixed(2)} KB per socket${f.disturbed ? `; disturbed: ${f.disturbed}` : ""}`);
  return f;
}

// ------------------------------------------------------------------ d) join latency

export interface JoinProbe {
  emergencies: number;
  joins: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  restoreS: number;
}

/** Joins one at a time (seat reservation, socket, JOIN_ROOM answered), each left right after, to random parties of N live emergencies. */
export async function joinProbe(v: Variant, n: number, joins: number, o: TrackingOptions, log: Log): Promise<JoinProbe> {
  log(`${v.id}: join latency at ${n} live emergencies (${joins} joins, one at a time)`);
  await waitQuiet(log);
  const d = await deploy({ variant: v, emergencies: n, perProcess: Number.POSITIVE_INFINITY, logDir: o.logDir, label: `${v.id}-join-${n}`, log });
  const g = await startGenerator();
  try {
    const m = v.setup!.minter;
    const parties: { roomId: string; token: string }[] = [];
    const warm = Math.min(30, joins);
    for (let i = 0; i < joins + warm; i++) {
      const e = d.emergencies[Math.floor(Math.random() * d.emergencies.length)];
      const pick = Math.floor(Math.random() * 4);
      const token = pick === 0 ? await m.mint({ sub: e.patient, role: "patient" })
        : pick === 1 ? await m.mint({ sub: e.firstAiders[0], role: "first_aider" })
          : pick === 2 ? await m.mint({ sub: e.crew, role: "ambulance_crew" })
            : await m.mint({ sub: e.staff, role: "hospital_staff", hospitalId: e.hospitalId });
      parties.push({ roomId: e.id, token });
    }
    await sleep(2000);
    // a few joins first, not counted: a server fresh from its start has not compiled its join path yet
    await g.request({ type: "probe", protocol: "colyseus", nodes: d.urls, parties: parties.slice(0, warm), gapMs: 20 }, "probed", 10 * 60_000);
    const r = await g.request({ type: "probe", protocol: "colyseus", nodes: d.urls, parties: parties.slice(warm), gapMs: 20 }, "probed", 10 * 60_000);
    const h = new Histogram().merge(r.joinMs);
    const out: JoinProbe = { emergencies: n, joins, ok: r.ok, failed: r.failed, errors: r.errors, p50Ms: h.percentile(0.5), p99Ms: h.percentile(0.99), maxMs: h.max, restoreS: d.startMs[0] / 1000 };
    log(`  join at ${n}: p50 ${out.p50Ms.toFixed(2)} ms, p99 ${out.p99Ms.toFixed(2)} ms, max ${out.maxMs.toFixed(1)} ms; ${out.failed} failed; the server restored ${n} emergencies in ${out.restoreS.toFixed(1)} s`);
    return out;
  } finally {
    await g.stop();
    await d.stop();
  }
}

// ------------------------------------------------------------------ g) alert → first offer

export interface AlertFigures {
  rate: number;
  seconds: number;
  responders: number;
  onDuty: number;
  alertsSent: number;
  statuses: Record<string, number>;
  answerP50Ms: number;
  answerP99Ms: number;
  withOffer: number;
  withoutOffer: number;
  offerP50Ms: number;
  offerP99Ms: number;
  offerMaxMs: number;
  /** Server CPU from the first alert until the last answer (% of a core). */
  serverCpuPct: number;
  errors: Record<string, number>;
}

const NAIROBI = { lat: -1.2864, lng: 36.8172 };

export async function alertFigures(v: Variant, rate: number, seconds: number, o: TrackingOptions, log: Log): Promise<AlertFigures> {
  const s = v.setup!;
  const alerts = Math.round(rate * seconds);
  const firstAiders = Math.max(60, Math.round(alerts * 1.5));
  const crews = Math.max(20, Math.round(alerts * 0.3));
  log(`${v.id}: alert → first offer: ${firstAiders} first-aiders and ${crews} crews on duty around Nairobi, then ${alerts} alerts at ${rate}/s`);
  await waitQuiet(log);
  const dbName = newDbName("haven_bench_step");
  const url = await createDb(dbName, s.baseDb);
  const people = await withDb(url, (sql) => seedPeople(sql, s.template, alerts, firstAiders, crews));
  const server = await startHaven({ tree: s.tree, transport: v.transport!, databaseUrl: url, keys: s.keys, logFile: join(o.logDir, `${v.id}-alert.log`) });
  let window: CpuWindow | undefined;
  let burst: { wallS: number; cpuS: number[] } | undefined;
  const g = await startGenerator((m) => {
    if (m.phase === "on duty") {
      log(`  on duty: ${m.joined} of ${m.of} (${m.failed} failed); alerts start`);
      window = new CpuWindow([server.pid]);
    } else if (m.phase === "answered") {
      burst = window?.read();
    }
  });
  try {
    const responders = [
      ...await Promise.all(people.firstAiders.map(async (id) => ({ token: await s.minter.mint({ sub: id, role: "first_aider" }) }))),
      ...await Promise.all(people.crews.map(async (id) => ({ token: await s.minter.mint({ sub: id, role: "ambulance_crew" }) }))),
    ];
    const patients = await Promise.all(people.patients.map((id) => s.minter.mint({ sub: id, role: "patient" })));
    const r = await g.request({ type: "alert", nodes: [server.url], responders, patients, ratePerS: rate, durationS: seconds, center: NAIROBI, radiusM: 8000, waitS: 10, concurrency: o.joinConcurrency }, "alerted", 20 * 60_000);
    const answer = new Histogram().merge(r.alerts.answerMs);
    const offer = new Histogram().merge(r.offers.ms);
    const f: AlertFigures = {
      rate, seconds, responders: responders.length, onDuty: r.duty.ok, alertsSent: r.alerts.sent, statuses: r.alerts.statuses,
      answerP50Ms: answer.percentile(0.5), answerP99Ms: answer.percentile(0.99),
      withOffer: r.offers.withOffer, withoutOffer: r.offers.without,
      offerP50Ms: offer.percentile(0.5), offerP99Ms: offer.percentile(0.99), offerMaxMs: offer.max,
      serverCpuPct: burst ? Math.round((burst.cpuS[0] / burst.wallS) * 1000) / 10 : Number.NaN,
      errors: r.duty.errors,
    };
    log(`  ${f.onDuty} on duty; ${f.alertsSent} alerts (${JSON.stringify(f.statuses)}), answered p50 ${f.answerP50Ms.toFixed(0)} ms p99 ${f.answerP99Ms.toFixed(0)} ms; first offer p50 ${f.offerP50Ms.toFixed(0)} ms, p99 ${f.offerP99Ms.toFixed(0)} ms, max ${f.offerMaxMs.toFixed(0)} ms; ${f.withoutOffer} without an offer; server ${f.serverCpuPct} % of a core during the burst`);
    return f;
  } finally {
    await g.stop();
    await server.stop();
    await dropDb(dbName);
  }
}

// ------------------------------------------------------------------ f) the kernel's cost of a small send

const KERNEL_SEND_C = String.raw`
/* CPU time per 30-byte send() on a loopback TCP connection, a reader draining it on another core. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }
static double secs(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  int wcpu = argc > 2 ? atoi(argv[2]) : 0, rcpu = argc > 3 ? atoi(argv[3]) : 1;
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t al = sizeof a;
  if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) { perror("listen"); return 1; }
  pid_t child = fork();
  if (child == 0) {
    pin(rcpu);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) { perror("connect"); _exit(1); }
    char buf[65536];
    while (read(c, buf, sizeof buf) > 0) {}
    _exit(0);
  }
  pin(wcpu);
  int s = accept(l, 0, 0);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char msg[30];
  memset(msg, 'x', sizeof msg);
  for (long i = 0; i < 20000; i++) send(s, msg, sizeof msg, 0); /* warm-up */
  struct rusage r0, r1;
  struct timespec w0, w1;
  getrusage(RUSAGE_SELF, &r0);
  clock_gettime(CLOCK_MONOTONIC, &w0);
  for (long i = 0; i < n; i++) {
    if (send(s, msg, sizeof msg, 0) != sizeof msg) { perror("send"); return 1; }
  }
  getrusage(RUSAGE_SELF, &r1);
  clock_gettime(CLOCK_MONOTONIC, &w1);
  close(s);
  waitpid(child, 0, 0);
  double user = secs(r1.ru_utime) - secs(r0.ru_utime), sys = secs(r1.ru_stime) - secs(r0.ru_stime);
  double wall = (w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
  printf("{\"sends\":%ld,\"userS\":%.6f,\"sysS\":%.6f,\"wallS\":%.6f,\"nsPerSend\":%.1f}\n", n, user, sys, wall, (user + sys) / n * 1e9);
  return 0;
}
`;

export interface KernelSend { sends: number; nsPerSend: number; userS: number; sysS: number; wallS: number; compiler: string; runsNs: number[] }

/** The median of three runs, each on a quiet core 0. */
export async function kernelSend(log: Log, sends = 1_000_000): Promise<KernelSend> {
  const dir = "/tmp/haven-bench-kernel-send";
  execFileSync("mkdir", ["-p", dir]);
  writeFileSync(join(dir, "send.c"), KERNEL_SEND_C);
  const cc = spawnSync("gcc", ["-O2", "-o", join(dir, "send"), join(dir, "send.c")], { encoding: "utf8" });
  if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
  const runs: KernelSend[] = [];
  for (let i = 0; i < 3; i++) {
    await waitQuiet(log);
    const out = execFileSync(join(dir, "send"), [String(sends), SERVER_CORE, GENERATOR_CORE], { encoding: "utf8", timeout: 120_000 });
    runs.push(JSON.parse(out.trim()) as KernelSend);
  }
  const sorted = [...runs].sort((a, b) => a.nsPerSend - b.nsPerSend);
  const r = { ...sorted[1], runsNs: runs.map((x) => Math.round(x.nsPerSend)) };
  r.compiler = execFileSync("gcc", ["--version"], { encoding: "utf8" }).split("\n")[0];
  log(`kernel: one 30-byte send() on loopback TCP costs ${r.nsPerSend.toFixed(0)} ns of CPU (median of ${r.runsNs.join(", ")} ns; ${r.sends} sends each, ${Math.round((r.sysS / (r.userS + r.sysS)) * 100)} % in the kernel)`);
  return r;
}

// ------------------------------------------------------------------ h) soak

export interface SoakFigures {
  seconds: number;
  patients: number;
  raised: number;
  cancelled: number;
  closedWith4410: number;
  rssStartMb: number;
  rssEndMb: number;
  rssGrowthMbPerHour: number;
  samples: { t: number; rssMb: number; active: number; rooms: number; emergencyRooms: number; generatorActive: number }[];
  finalActive: number;
  finalEmergencyRooms: number;
  maxRoomsMinusActive: number;
  errors: Record<string, number>;
}

export async function soakFigures(v: Variant, seconds: number, o: TrackingOptions, log: Log): Promise<SoakFigures> {
  const s = v.setup!;
  const patients = 200;
  log(`${v.id}: soak for ${seconds} s: ${patients} patients raising, streaming and cancelling emergencies`);
  const dbName = newDbName("haven_bench_step");
  const url = await createDb(dbName, s.baseDb);
  const people = await withDb(url, (sql) => seedPeople(sql, s.template, patients, 0, 0));
  const server = await startHaven({ tree: s.tree, transport: v.transport!, databaseUrl: url, keys: s.keys, logFile: join(o.logDir, `${v.id}-soak.log`) });
  const g = await startGenerator();
  const mintAll = async () => Object.fromEntries(await Promise.all(people.patients.map(async (id) => [id, await s.minter.mint({ sub: id, role: "patient" })] as const)));
  try {
    const tokens = await mintAll();
    await g.request({ type: "soak", nodes: [server.url], patients: people.patients.map((id) => ({ id, token: tokens[id] })), lifeS: [20, 60], center: NAIROBI, radiusM: 8000 }, "soaking");
    const samples: SoakFigures["samples"] = [];
    const t0 = performance.now();
    let lastMint = t0;
    while ((performance.now() - t0) / 1000 < seconds) {
      await sleep(10_000);
      if (performance.now() - lastMint > 10 * 60_000) { g.post({ type: "tokens", tokens: await mintAll() }); lastMint = performance.now(); }
      const m = await scrapeMetrics(server.url);
      const st = await g.request({ type: "soak-stats" }, "soak-stats");
      samples.push({ t: (performance.now() - t0) / 1000, rssMb: rssBytes(server.pid) / MB, active: m.haven_emergencies_active, rooms: m.haven_rooms, emergencyRooms: m.haven_emergency_rooms, generatorActive: st.active });
      const last = samples.at(-1)!;
      if (samples.length % 6 === 0) log(`  soak ${last.t.toFixed(0)} s: RSS ${last.rssMb.toFixed(0)} MB, ${last.active} active, ${last.emergencyRooms} emergency rooms, ${st.raised} raised`);
    }
    g.post({ type: "soak-stop" });
    await sleep(45_000); // the last ones cancel, and their rooms close after the grace period
    const m = await scrapeMetrics(server.url);
    const st = await g.request({ type: "soak-stats" }, "soak-stats");
    // growth from the samples after the first fifth (warm-up): least-squares slope
    const steady = samples.slice(Math.floor(samples.length / 5));
    const slope = leastSquares(steady.map((x) => x.t), steady.map((x) => x.rssMb));
    const f: SoakFigures = {
      seconds, patients, raised: st.raised, cancelled: st.cancelled, closedWith4410: st.closed,
      rssStartMb: samples[0]?.rssMb ?? Number.NaN, rssEndMb: rssBytes(server.pid) / MB, rssGrowthMbPerHour: slope * 3600,
      samples, finalActive: m.haven_emergencies_active, finalEmergencyRooms: m.haven_emergency_rooms,
      maxRoomsMinusActive: Math.max(0, ...samples.map((x) => x.emergencyRooms - x.active)), errors: st.errors,
    };
    log(`  soak: ${f.raised} emergencies raised, ${f.cancelled} cancelled; RSS ${f.rssStartMb.toFixed(0)} → ${f.rssEndMb.toFixed(0)} MB (${f.rssGrowthMbPerHour.toFixed(1)} MB/h); at the end ${f.finalActive} active, ${f.finalEmergencyRooms} emergency rooms`);
    return f;
  } finally {
    await g.stop();
    await server.stop();
    await dropDb(dbName);
  }
}

function leastSquares(x: number[], y: number[]): number {
  const n = x.length;
  if (n < 2) return Number.NaN;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) { num += (x[i] - mx) * (y[i] - my); den += (x[i] - mx) ** 2; }
  return den ? num / den : Number.NaN;
}
