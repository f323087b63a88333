import { createServer, connect, type Socket, type Server } from "node:net";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, freshDatabase, freePort, login, scenario, sleep, startHaven, storedPatientLat, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * Postgres cut off under traffic, through a TCP proxy the test controls (the machine's shared
 * Postgres keeps serving everyone else): rooms keep streaming, what needs the database answers
 * UNAVAILABLE (retry) instead of failing obscurely, nothing crashes, and all works again after.
 */
class CuttableProxy {
  private readonly sockets = new Set<Socket>();
  private server?: Server;
  private open = true;
  port = 0;

  async start(upstreamPort: number): Promise<void> {
    this.port = await freePort();
    this.server = createServer((client) => {
      if (!this.open) { client.destroy(); return; }
      const upstream = connect(upstreamPort, "127.0.0.1");
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        this.sockets.add(a);
        a.on("error", () => b.destroy());
        a.on("close", () => { this.sockets.delete(a); b.destroy(); });
        a.pipe(b);
      }
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.open = true;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

let h: Haven;
let ops: Account;
let proxy: CuttableProxy;
let drop: () => Promise<void>;
let dbUrl: string;
beforeAll(async () => {
  const db = await freshDatabase();
  drop = db.drop;
  dbUrl = db.url;
  proxy = new CuttableProxy();
  const upstream = new URL(db.url);
  await proxy.start(Number(upstream.port || 5432));
  const viaProxy = new URL(db.url);
  viaProxy.port = String(proxy.port);
  h = await startHaven({ DATABASE_URL: viaProxy.toString(), HAVEN_DB_CONNECT_TIMEOUT_SECONDS: "2" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); await proxy?.stop(); await drop?.(); });

describe("Postgres outage", () => {
  it("keeps rooms streaming, answers UNAVAILABLE for what needs the database, and recovers", async () => {
    const s = await scenario(h, ops, { lat: -1.2864, lng: 36.8172 });
    const someone = await account(h, "patient");
    proxy.cut();

    const cutAt = Date.now();
    // positions keep flowing between the parties while the database is away
    for (let i = 1; i <= 5; i++) {
      await s.pRoom.request("position", { lat: -1.2864 + i * 1e-5, lng: 36.8172 });
      await waitFor(s.faRoom, (st) => st.patient.lat === -1.2864 + i * 1e-5, 1000, `move ${i} during the outage`);
    }
    // a critical action answers "temporarily unavailable, retry" and changes nothing, for anyone
    const statusBefore = s.pRoom.state.status;
    const refused = await s.faRoom.request("status", { step: "on_scene", idempotencyKey: "onscene-0001" }).then(() => undefined, (e: any) => e.reason);
    expect(refused?.code).toBe("UNAVAILABLE");
    await sleep(150);
    expect(s.pRoom.state.status).toBe(statusBefore);
    expect(s.faRoom.state.status).toBe(statusBefore);
    expect(s.pRoom.state.times.onSceneAt).toBe(0);
    // what needs the database answers a clear, retryable error
    const login1 = await h.http("POST", "/api/auth/login", { email: someone.email, password: "a-long-password-1" });
    expect(login1.status).toBe(503);
    expect(login1.body.code).toBe("UNAVAILABLE");
    const profile = await h.http("GET", "/api/medical-profile", undefined, someone.token);
    expect(profile).toMatchObject({ status: 503, body: { code: "UNAVAILABLE" } });
    expect(h.proc.exitCode).toBeNull();
    expect((await h.http("GET", "/health")).status).toBe(200);
    // ... for the whole 10 s of the outage, a move every 400 ms
    for (let i = 0; Date.now() - cutAt < 10_000; i++) {
      const lng = 36.8172 + (i % 2) * 1e-6;
      await s.crewRoom.request("position", { lat: -1.2864, lng });
      await waitFor(s.pRoom, (st) => st.ambulance.get(s.crew.acc.id)?.lng === lng, 1000, "crew moves during the outage");
      await sleep(400);
    }
    expect(h.proc.exitCode).toBeNull();

    proxy.restore();
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      status = (await h.http("POST", "/api/auth/login", { email: someone.email, password: "a-long-password-1" })).status;
      if (status !== 200) await sleep(250);
    }
    expect(status).toBe(200);
    // the positions sent during the outage reach the database once it is back
    const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
    try {
      let lat: number | undefined;
      for (let i = 0; i < 30 && lat !== -1.2864 + 5e-5; i++) {
        lat = await storedPatientLat(sql, s.id);
        if (lat !== -1.2864 + 5e-5) await sleep(200);
      }
      expect(lat).toBe(-1.2864 + 5e-5);
    } finally {
      await sql.end({ timeout: 1 });
    }
    // the refused action, retried with its key, now goes through once
    await s.faRoom.request("status", { step: "on_scene", idempotencyKey: "onscene-0001" });
    await waitFor(s.pRoom, (st) => st.status === "on_scene", 1000, "on scene after the outage");
    await s.pRoom.request("position", { lat: -1.28, lng: 36.8172 });
    await waitFor(s.faRoom, (st) => st.patient.lat === -1.28, 1000, "after the outage");
    expect(h.proc.exitCode).toBeNull();
  });
});
