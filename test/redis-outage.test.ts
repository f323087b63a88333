import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { Redis } from "ioredis";
import type { Room } from "@colyseus/sdk";
import { account, freePort, holderOf, join, login, metric, onDuty, OPS, sleep, startCluster, waitFor, type Account, type Cluster, type Haven } from "./harness.ts";

/**
 * Redis cut off under traffic and back, empty, as after a restart without persistence. The test
 * runs its own redis-server on its own port (the machine's Redis keeps serving everyone else),
 * kills it for 10 s, then starts a new one on the same port. Two Haven nodes in cluster mode
 * must not crash, the emergency room already running must keep streaming positions between its
 * parties the whole time, and once Redis is back the nodes reconnect by themselves: a client
 * joins the emergency through the node that does not hold it, and a new alert is dispatched to a
 * first-aider on duty, who accepts it.
 */

const NAIROBI = { lat: -1.2864, lng: 36.8172 };
const north = (m: number) => ({ lat: NAIROBI.lat + m / 111_320, lng: NAIROBI.lng });
const OUTAGE_MS = 10_000;
/** The longest a party may go without seeing the other move (positions are sent every 200 ms). */
const MAX_GAP_MS = 1_000;
/** Past the default cluster lease (3 s) + heartbeat (1 s) after a reconnect, with margin: failover checks run again by then. */
const SETTLED_MS = 6_500;

/** A redis-server child process on a port of the test's own (not daemonized: the test kills it). */
class PrivateRedis {
  proc?: ChildProcess;
  readonly output: string[] = [];
  readonly port: number;
  constructor(port: number) {
    this.port = port;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const proc = spawn("redis-server", ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    proc.stdout!.on("data", (d) => this.output.push(String(d)));
    proc.stderr!.on("data", (d) => this.output.push(String(d)));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}:\n${this.output.join("")}`);
      const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
      probe.on("error", () => {});
      try {
        await probe.connect();
        if ((await probe.ping()) === "PONG") return;
      } catch {
        // not listening yet
      } finally {
        probe.disconnect();
      }
      await sleep(50);
    }
    throw new Error(`redis-server did not answer PING on port ${this.port}:\n${this.output.join("")}`);
  }

  /** SIGKILL: Redis is gone at once, as in a crash; whatever it held is lost. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }
}

/** Records when `room` sees the value `read` picks from its state change (the other party moving). */
function watchMoves(room: Room<any, any>, read: (state: any) => number | undefined): number[] {
  const seen: number[] = [];
  const pick = () => { try { return read(room.state); } catch { return undefined; } };
  let last = pick();
  room.onStateChange(() => {
    const v = pick();
    if (v !== undefined && v !== last) {
      last = v;
      seen.push(Date.now());
    }
  });
  return seen;
}

/** Sends a new position every 200 ms (a plain send; a refusal arrives as an "error" message). */
function streamPositions(room: Room<any, any>, from: { lat: number; lng: number }, errors: unknown[]): () => void {
  room.onMessage("error", (e: unknown) => errors.push(e));
  let k = 0;
  const timer = setInterval(() => {
    k++;
    room.send("position", { lat: from.lat + k * 1e-6, lng: from.lng });
  }, 200);
  return () => clearInterval(timer);
}

/** The longest stretch within [from, to] without a sighting. */
function longestGap(seen: number[], from: number, to: number): number {
  const points = [from, ...seen.filter((t) => t > from && t < to), to];
  let max = 0;
  for (let i = 1; i < points.length; i++) max = Math.max(max, points[i] - points[i - 1]);
  return max;
}

const sightings = (seen: number[], from: number, to: number) => seen.filter((t) => t >= from && t <= to).length;

async function redisState(h: Haven): Promise<string | undefined> {
  try {
    const r = await h.http("GET", "/health");
    return r.body?.cluster?.redis;
  } catch {
    return undefined;
  }
}


/** Polls until every node's /health reports `cluster.redis` as `want`; returns how long it took. */
async function untilRedis(nodes: Haven[], want: "up" | "down", timeoutMs: number): Promise<number> {
  const started = Date.now();
  let states: (string | undefined)[] = [];
  while (Date.now() - started < timeoutMs) {
    states = await Promise.all(nodes.map(redisState));
    if (states.every((s) => s === want)) return Date.now() - started;
    await sleep(100);
  }
  throw new Error(`after ${timeoutMs} ms the nodes report redis ${JSON.stringify(states)}, not all "${want}"`);
}


/**
 * An ops dashboard refreshing an emergency's status through `h` every 250 ms (one request at a
 * time, each given 3 s), as real traffic goes on while Redis restarts; records each answer.
 */
function pollStatus(h: Haven, token: string, id: string): { answers: { at: number; status: number | string }[]; stop(): Promise<void> } {
  const answers: { at: number; status: number | string }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      let status: number | string;
      try {
        const r = await fetch(`${h.url}/api/emergency/${id}/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3000) });
        await r.arrayBuffer();
        status = r.status;
      } catch (error: any) {
        status = error?.name ?? "error";
      }
      answers.push({ at: Date.now(), status });
      await sleep(250);
    }
  })();
  return { answers, async stop() { running = false; await loop; } };
}

/** Joins `roomId` through `h`, retrying every 200 ms until `timeoutMs`; returns the room and the refusals before. */
async function joinRetrying(h: Haven, token: string, roomId: string, timeoutMs: number): Promise<{ room: Room<any, any>; refusals: string[] }> {
  const refusals: string[] = [];
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    try {
      return { room: await join(h, token, roomId), refusals };
    } catch (error: any) {
      refusals.push(`${error?.code ?? "no code"}: ${String(error?.message ?? error).split(" (code")[0].split("\n")[0]}`);
      await sleep(200);
    }
  }
  throw new Error(`no join of ${roomId} through ${h.url} within ${timeoutMs} ms: ${refusals.join(" | ")}`);
}

/** Waits for an offer of `emergencyId` in a duty room and accepts it. */
async function acceptOfferFor(duty: Room<any, any>, emergencyId: string, timeoutMs: number) {
  await waitFor(duty, (s) => [...s.offers.values()].some((o: any) => o.emergencyId === emergencyId), timeoutMs, `offer of ${emergencyId}`);
  const offer = [...duty.state.offers.values()].find((o: any) => o.emergencyId === emergencyId) as any;
  return duty.request("accept_offer", { offerId: offer.id });
}

const tail = (h: Haven, n = 40) => h.logs.join("").split("\n").slice(-n).join("\n");

describe("Redis outage in a cluster of two nodes", () => {
  let redis: PrivateRedis;
  let c: Cluster;

  // should the test process itself die, its redis-server goes with it
  const killRedis = () => { redis?.proc?.kill("SIGKILL"); };

  beforeAll(async () => {
    process.once("exit", killRedis);
    redis = new PrivateRedis(await freePort());
    await redis.start();
    c = await startCluster(2, { HAVEN_DISPATCH_WIDEN_INTERVAL_MS: "300" }, { url: redis.url, db: 0 });
  }, 60_000);

  afterAll(async () => {
    await c?.stop();
    await redis?.kill();
    process.removeListener("exit", killRedis);
  }, 30_000);

  it("Redis killed for 10 s and restarted empty: no crash, the running emergency keeps streaming, joins and dispatch work again", async () => {
    const nodes = c.nodes;
    onTestFailed(() => {
      // what the nodes said, without the once-per-retry connection errors of the outage itself
      const quiet = /ECONNREFUSED|Stream isn't writeable|afterConnect/;
      for (const n of nodes) console.error(`---- ${n.url} (exit ${n.proc.exitCode ?? n.proc.signalCode ?? "none"})\n${n.logs.join("").split("\n").filter((l) => l && !quiet.test(l)).slice(-60).join("\n")}`);
    });
    const alive = () => nodes.every((n) => n.proc.exitCode === null && n.proc.signalCode === null);
    const ops: Account = await login(nodes[0], OPS.email, OPS.password);

    // ---- a live emergency: alert, a first-aider offered and assigned, both parties in the room
    const patient = await account(nodes[0], "patient");
    const alert = await nodes[0].http("POST", "/api/emergency/alert", NAIROBI, patient.token);
    expect(alert.status).toBe(201);
    const id = alert.body.emergencyId as string;
    const holder = await holderOf(c, id);
    const other = nodes.find((n) => n !== holder)!;

    const fa = await onDuty(other, ops, "first_aider", north(60));
    const offersSeenByFa = new Set<string>();
    fa.duty.onStateChange(() => { for (const o of fa.duty.state.offers.values()) offersSeenByFa.add((o as any).emergencyId); });
    expect(await acceptOfferFor(fa.duty, id, 5000)).toMatchObject({ ok: true, emergencyId: id });

    const pRoom = await join(nodes[0], patient.token, id);
    const faRoom = await join(nodes[1], fa.acc.token, id);
    await waitFor(pRoom, (s) => s.firstAiders.get(fa.acc.id)?.online === true, 3000, "first-aider online");

    // ---- both stream; each records when it sees the other move
    const patientSeesFa = watchMoves(pRoom, (s) => s.firstAiders.get(fa.acc.id)?.lat);
    const faSeesPatient = watchMoves(faRoom, (s) => s.patient.lat);
    const errors: unknown[] = [];
    const left: string[] = [];
    pRoom.onLeave((code: number) => left.push(`patient ${code}`));
    faRoom.onLeave((code: number) => left.push(`first-aider ${code}`));
    const stops = [streamPositions(pRoom, NAIROBI, errors), streamPositions(faRoom, north(40), errors)];
    const dashboard = pollStatus(other, ops.token, id);
    try {
      const streamingFrom = Date.now();
      await sleep(1500);
      expect(sightings(patientSeesFa, streamingFrom, Date.now())).toBeGreaterThanOrEqual(3);
      expect(sightings(faSeesPatient, streamingFrom, Date.now())).toBeGreaterThanOrEqual(3);
      expect(dashboard.answers.length).toBeGreaterThan(0);
      expect(dashboard.answers.every((a) => a.status === 200)).toBe(true);
      expect(await redisState(holder)).toBe("up");

      // ---- Redis dies, and stays away for 10 s
      const cutAt = Date.now();
      await redis.kill();
      // both nodes notice, and say so
      await untilRedis(nodes, "down", 5000);
      for (const n of nodes) expect(await metric(n, "haven_redis_up")).toBe(0);
      while (Date.now() - cutAt < OUTAGE_MS) {
        expect(alive(), `a node exited during the outage:\n${nodes.map((n) => tail(n)).join("\n---\n")}`).toBe(true);
        await sleep(250);
      }
      const outageEnd = Date.now();
      expect(alive()).toBe(true);
      // the emergency streamed the whole time, both ways
      expect(longestGap(patientSeesFa, cutAt, outageEnd), "patient saw the first-aider stop moving during the outage").toBeLessThanOrEqual(MAX_GAP_MS);
      expect(longestGap(faSeesPatient, cutAt, outageEnd), "first-aider saw the patient stop moving during the outage").toBeLessThanOrEqual(MAX_GAP_MS);
      expect(sightings(patientSeesFa, cutAt, outageEnd)).toBeGreaterThanOrEqual(OUTAGE_MS / 400);
      expect(sightings(faSeesPatient, cutAt, outageEnd)).toBeGreaterThanOrEqual(OUTAGE_MS / 400);
      expect(left).toEqual([]);
      expect(errors).toEqual([]);

      const patient3 = await account(holder, "patient");
      // ---- Redis is back, empty, on the same port
      await redis.start();
      const backAt = Date.now();
      // a new client joins the running emergency through the node that does not hold it, trying
      // from the moment Redis answers again and retrying as an app does: the nodes announce
      // themselves and their rooms again as they reconnect, so a refusal meanwhile is fine; taking
      // the emergency away from the node that runs it is not
      const opsJoin = joinRetrying(other, ops.token, id, 15_000);
      // the nodes reconnect by themselves, and say so
      const reconnectMs = await untilRedis(nodes, "up", 15_000);
      for (const n of nodes) expect(await metric(n, "haven_redis_up")).toBe(1);
      // a new alert opens its room at once: a room id minted just now has no holder to wait for
      const alert3 = await other.http("POST", "/api/emergency/alert", north(-3000), patient3.token);
      const newAlertMs = Date.now() - backAt;
      expect(alert3.status).toBe(201);
      expect(alive()).toBe(true);
      const { room: opsRoom, refusals } = await opsJoin;
      expect(opsRoom.state.patient.id).toBe(patient.id);
      expect(opsRoom.state.firstAiders.has(fa.acc.id)).toBe(true);
      // ... and sees the parties moving, in the room they were in all along
      const opsSeesPatient = watchMoves(opsRoom, (s) => s.patient.lat);
      const opsSeesFa = watchMoves(opsRoom, (s) => s.firstAiders.get(fa.acc.id)?.lat);
      const opsFrom = Date.now();
      await sleep(1500); // more than a heartbeat: a node that lost its claim to an emergency finds out on its next one
      expect(left, `the running emergency's parties were sent away (4421: moved) after Redis came back; the join was refused ${refusals.length} times first: ${refusals.join(" | ")}`).toEqual([]);
      expect((await holderOf(c, id)).url, "the running emergency moved to another node").toBe(holder.url);
      const holder3 = await holderOf(c, alert3.body.emergencyId);
      expect(await Promise.all(nodes.map((n) => metric(n, "haven_emergency_rooms"))), "emergency rooms per node").toEqual(nodes.map((n) => (n === holder ? 1 : 0) + (n === holder3 ? 1 : 0)));
      expect(sightings(opsSeesPatient, opsFrom, Date.now())).toBeGreaterThanOrEqual(3);
      expect(sightings(opsSeesFa, opsFrom, Date.now())).toBeGreaterThanOrEqual(3);

      // ---- dispatch works again: a first-aider goes on duty near a new alert, and gets and accepts its offer
      const fa2 = await onDuty(other, ops, "first_aider", north(520));
      const patient2 = await account(holder, "patient");
      const alert2 = await holder.http("POST", "/api/emergency/alert", north(500), patient2.token);
      expect(alert2.status).toBe(201);
      const id2 = alert2.body.emergencyId as string;
      expect(id2).not.toBe(id);
      expect(await acceptOfferFor(fa2.duty, id2, 10_000)).toMatchObject({ ok: true, emergencyId: id2 });
      const p2Room = await join(other, patient2.token, id2);
      await waitFor(p2Room, (s) => s.firstAiders.has(fa2.acc.id), 3000, "second first-aider assigned");
      // the first first-aider, still assigned to the first emergency, was not offered the second one
      expect([...offersSeenByFa]).not.toContain(id2);

      // the dashboard gets the status through the other node again
      const dashboardFrom = Date.now();
      while (!dashboard.answers.some((a) => a.at > dashboardFrom) && Date.now() - dashboardFrom < 5000) await sleep(50);
      expect(dashboard.answers.filter((a) => a.at > dashboardFrom).map((a) => a.status)).toContain(200);

      // ---- streaming never stopped, from the cut until well after the nodes' failover checks
      // resumed (lease 3 s + heartbeat 1 s after the reconnect); nobody was dropped; nothing crashed
      while (Date.now() - backAt < SETTLED_MS) await sleep(100);
      expect(alive()).toBe(true);
      expect((await Promise.all(nodes.map((n) => metric(n, "haven_emergency_rooms")))).reduce((a, b) => a + b, 0)).toBe(3); // the first emergency, the one raised as Redis came back, the one raised after
      expect((await holderOf(c, id)).url, "the emergency moved to another node").toBe(holder.url);
      const end = Date.now();
      expect(longestGap(patientSeesFa, cutAt, end), "patient saw the first-aider stop moving").toBeLessThanOrEqual(MAX_GAP_MS);
      expect(longestGap(faSeesPatient, cutAt, end), "first-aider saw the patient stop moving").toBeLessThanOrEqual(MAX_GAP_MS);
      expect(sightings(patientSeesFa, backAt, end)).toBeGreaterThanOrEqual(5);
      expect(sightings(faSeesPatient, backAt, end)).toBeGreaterThanOrEqual(5);
      expect(left).toEqual([]);
      expect(errors).toEqual([]);
      expect(alive()).toBe(true);
      console.info(`[redis-outage] nodes reported redis up ${reconnectMs} ms after it was restarted; a new alert was answered ${newAlertMs} ms after; the join was refused ${refusals.length} times before; dashboard answers from the cut on: ${JSON.stringify(Object.entries(Object.groupBy(dashboard.answers.filter((a) => a.at > cutAt), (a) => String(a.status))).map(([k, v]) => [k, v!.length]))}; longest gap from the cut on: patient ${longestGap(patientSeesFa, cutAt, end)} ms, first-aider ${longestGap(faSeesPatient, cutAt, end)} ms`);

      for (const r of [opsRoom, p2Room, fa2.duty]) await r.leave();
    } finally {
      for (const stop of stops) stop();
      await dashboard.stop();
    }
    for (const r of [pRoom, faRoom, fa.duty]) await r.leave();
  }, 90_000);
});
