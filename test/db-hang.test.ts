import { createServer, connect, type Socket, type Server } from "node:net";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, freshDatabase, freePort, login, rejection, scenario, sleep, startHaven, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * Postgres that hangs instead of refusing: a TCP proxy that, in "hang" mode, accepts every
 * connection and holds every byte both ways (a frozen database host, a network that drops without
 * a reset). Haven's client-side deadline answers a critical change `UNAVAILABLE` in time, the
 * room's positions keep flowing to everyone meanwhile, and all carries on once bytes flow again.
 */
class HangingProxy {
  private readonly pairs = new Set<{ client: Socket; upstream?: Socket; held: { to: Socket; data: Buffer }[] }>();
  private server?: Server;
  private hanging = false;
  private upstreamPort = 0;
  port = 0;

  async start(upstreamPort: number): Promise<void> {
    this.upstreamPort = upstreamPort;
    this.port = await freePort();
    this.server = createServer((client) => {
      const pair = { client, upstream: undefined as Socket | undefined, held: [] as { to: Socket; data: Buffer }[] };
      this.pairs.add(pair);
      const upstream = connect(this.upstreamPort, "127.0.0.1");
      pair.upstream = upstream;
      const forward = (to: Socket) => (data: Buffer) => {
        if (this.hanging) pair.held.push({ to, data });
        else to.write(data);
      };
      client.on("data", forward(upstream));
      upstream.on("data", forward(client));
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        a.on("error", () => b.destroy());
        a.on("close", () => { b.destroy(); this.pairs.delete(pair); });
      }
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
  }

  /** From now on every byte, on every connection old or new, is held. */
  hang(): void {
    this.hanging = true;
  }

  /** Bytes flow again, the held ones first. */
  release(): void {
    this.hanging = false;
    for (const pair of this.pairs) {
      for (const { to, data } of pair.held.splice(0)) if (!to.destroyed) to.write(data);
    }
  }

  async stop(): Promise<void> {
    for (const pair of this.pairs) { pair.client.destroy(); pair.upstream?.destroy(); }
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

const CALL_TIMEOUT_MS = 1500;
let h: Haven;
let ops: Account;
let proxy: HangingProxy;
let drop: () => Promise<void>;
let dbUrl: string;
beforeAll(async () => {
  const db = await freshDatabase();
  drop = db.drop;
  dbUrl = db.url;
  proxy = new HangingProxy();
  await proxy.start(Number(new URL(db.url).port || 5432));
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  h = await startHaven({ DATABASE_URL: viaProxy.toString(), HAVEN_DB_CALL_TIMEOUT_MS: String(CALL_TIMEOUT_MS), HAVEN_DB_CONNECT_TIMEOUT_SECONDS: "1" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); await proxy?.stop(); await drop?.(); });

describe("a database that hangs", () => {
  it("answers a critical change UNAVAILABLE within the deadline while positions keep flowing, then carries on", async () => {
    const s = await scenario(h, ops, { lat: -1.2864, lng: 36.8172 });
    // the crew moves every 200 ms throughout; the patient and the first-aider watch
    const gaps = { patient: 0, firstAider: 0 };
    const seen = { patient: Date.now(), firstAider: Date.now() };
    let moving = true;
    let step = 0;
    const crewId = s.crew.acc.id;
    const watch = (room: typeof s.pRoom, who: keyof typeof gaps) => {
      let last = room.state.ambulance.get(crewId)?.lng;
      room.onStateChange((st: any) => {
        const lng = st.ambulance.get(crewId)?.lng;
        if (lng === last) return;
        last = lng;
        const now = Date.now();
        if (moving) gaps[who] = Math.max(gaps[who], now - seen[who]);
        seen[who] = now;
      });
    };
    watch(s.pRoom, "patient");
    watch(s.faRoom, "firstAider");
    const mover = (async () => {
      while (moving) {
        step++;
        s.crewRoom.send("position", { lat: -1.2864, lng: 36.8172 + (step % 50) * 1e-6 });
        await sleep(200);
      }
    })();
    await sleep(600);

    proxy.hang();
    const hungAt = Date.now();
    gaps.patient = gaps.firstAider = 0;
    // a critical change: refused in time, and nobody sees it
    const asked = Date.now();
    const refused = await rejection(s.faRoom.request("status", { step: "on_scene", idempotencyKey: "hang-onscene-1" }));
    const answeredIn = Date.now() - asked;
    expect(refused.code).toBe("UNAVAILABLE");
    expect(answeredIn).toBeLessThan(CALL_TIMEOUT_MS + 1000);
    expect(s.pRoom.state.status).toBe("dispatched");
    expect(s.pRoom.state.times.onSceneAt).toBe(0);

    // a burst of critical changes while the database hangs: the room's queue is bounded, the
    // overflow is answered at once, and the positions still flow
    const burst = Array.from({ length: 20 }, (_, i) => {
      const at = Date.now();
      return s.faRoom.request("status", { step: "en_route", idempotencyKey: `hang-burst-${i}` })
        .then(() => ({ code: "ok", ms: Date.now() - at }), (e: any) => ({ code: e.reason?.code ?? String(e), ms: Date.now() - at }));
    });
    const answers = await Promise.all(burst);
    expect(answers.every((a) => a.code === "UNAVAILABLE" || a.code === "RATE_LIMITED")).toBe(true);
    expect(answers.filter((a) => a.ms < 500).length).toBeGreaterThan(0); // the overflow did not wait

    while (Date.now() - hungAt < 6000) await sleep(100);
    expect(gaps.patient).toBeGreaterThan(0);
    expect(gaps.patient).toBeLessThanOrEqual(1000);
    expect(gaps.firstAider).toBeLessThanOrEqual(1000);
    expect(h.proc.exitCode).toBeNull();

    proxy.release();
    moving = false;
    await mover;
    // the refused change, retried with its key once the database answers, goes through once
    let done: unknown;
    for (let i = 0; i < 40 && !done; i++) {
      done = await s.faRoom.request("status", { step: "on_scene", idempotencyKey: "hang-onscene-1" }).catch(() => undefined);
      if (!done) await sleep(500);
    }
    expect(done).toMatchObject({ ok: true, status: "on_scene" });
    await waitFor(s.pRoom, (st) => st.status === "on_scene", 2000, "on scene after the hang");
    const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql`select type from emergency_events where emergency_id = ${s.id} and type = 'on_scene'`;
      expect(rows.length).toBe(1); // the abandoned attempt left nothing behind
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("a repeated change that changes nothing records nothing, and one sender's critical changes are rate-bounded", async () => {
    const s = await scenario(h, ops, { lat: -1.29, lng: 36.82 });
    for (let i = 0; i < 3; i++) await s.faRoom.request("status", { step: "en_route" });
    const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql`select actor from emergency_events where emergency_id = ${s.id} and type = 'en_route'`;
      expect(rows.map((r) => r.actor)).toEqual([`first_aider:${s.fa.acc.id}`]);
      const [{ n: before }] = await sql`select count(*)::int as n from emergency_events where emergency_id = ${s.id}`;
      // more critical changes than a sender may make in a window: the rest are refused
      const codes = await Promise.all(Array.from({ length: 30 }, () =>
        s.crewRoom.request("status", { step: "en_route" }).then(() => "ok", (e: any) => e.reason?.code)));
      expect(codes.filter((c) => c === "RATE_LIMITED").length).toBeGreaterThan(0);
      expect(codes.filter((c) => c === "ok").length).toBeGreaterThan(0);
      const [{ n: after }] = await sql`select count(*)::int as n from emergency_events where emergency_id = ${s.id}`;
      expect(after - before).toBe(1); // the crew's first en_route, once
    } finally {
      await sql.end({ timeout: 1 });
    }
    // another party is not limited by the crew's flood
    await s.faRoom.request("status", { step: "on_scene" });
    await waitFor(s.pRoom, (st) => st.status === "on_scene", 2000, "on scene");
  });
});
