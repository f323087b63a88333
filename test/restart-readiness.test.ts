import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenService } from "../src/auth/tokens.ts";
import { OPS, freePort, freshDatabase, join, login, scenario, sleep, startHaven, type Haven } from "./harness.ts";

/**
 * A node restarted after kill -9 answers only what does not depend on the emergencies it is still
 * restoring: until the last one is back, duty, emergency and matchmaking calls answer
 * `503 UNAVAILABLE` with `Retry-After`, so nobody gets a room that shows a wrong picture.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let env: Record<string, string>;
let sql: postgres.Sql;
beforeAll(async () => {
  db = await freshDatabase();
  env = {
    DATABASE_URL: db.url,
    HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey(),
    HAVEN_MEDICAL_MASTER_KEY: Buffer.alloc(32, 7).toString("base64"),
  };
  sql = postgres(db.url, { max: 2, onnotice: () => {} });
});
afterAll(async () => { await sql?.end({ timeout: 1 }); await db?.drop(); });

describe("a restarted node", () => {
  it("answers 503 UNAVAILABLE with Retry-After until its emergencies are restored, then shows the assignment", async () => {
    let a: Haven | undefined = await startHaven(env);
    let b: Haven | undefined;
    try {
      const ops = await login(a, OPS.email, OPS.password);
      const e = await scenario(a, ops, { lat: -1.2921, lng: 36.8219 });
      await a.kill();
      a = undefined;

      // the restore of this emergency waits on a row lock the test holds: a slow restore
      let release!: () => void;
      const released = new Promise<void>((r) => { release = r; });
      let locked!: () => void;
      const lockHeld = new Promise<void>((r) => { locked = r; });
      const holder = sql.begin(async (tx) => {
        await tx`select id from emergencies where id = ${e.id} for update`;
        locked();
        await released;
      });
      await lockHeld;

      const port = await freePort();
      const starting = startHaven({ ...env, PORT: String(port) });
      const url = `http://127.0.0.1:${port}`;
      let health: Response | undefined;
      for (let i = 0; i < 200 && !health?.ok; i++) {
        health = await fetch(`${url}/health`).catch(() => undefined);
        if (!health?.ok) await sleep(50);
      }
      expect(health?.ok).toBe(true);
      // listening, not ready: what depends on restored rooms is refused, plainly
      expect((await fetch(`${url}/ready`)).status).toBe(503);
      const post = (path: string, token: string) => fetch(`${url}${path}`, {
        method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: "{}",
      });
      for (const r of [await post("/api/duty", e.fa.acc.token), await post(`/matchmake/joinById/${e.id}`, e.fa.acc.token)]) {
        expect(r.status).toBe(503);
        expect(r.headers.get("retry-after")).toBe("1");
        expect(((await r.json()) as { code: string }).code).toBe("UNAVAILABLE");
      }
      const status = await fetch(`${url}/api/emergency/${e.id}/status`, { headers: { authorization: `Bearer ${e.patient.token}` } });
      expect(status.status).toBe(503);
      // what needs no room is served meanwhile
      const signedIn = await fetch(`${url}/api/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(OPS) });
      expect(signedIn.status).toBe(200);

      release();
      await holder;
      b = await starting;
      // ready: the responder's duty room shows the emergency it serves
      const duty = await b.http("POST", "/api/duty", {}, e.fa.acc.token);
      expect(duty.status).toBe(201);
      const dutyRoom = await join(b, e.fa.acc.token, duty.body.roomId);
      expect(dutyRoom.state.assignedTo).toBe(e.id);
      const room = await join(b, e.fa.acc.token, e.id);
      expect(room.state.firstAiders.has(e.fa.acc.id)).toBe(true);
    } finally {
      await a?.kill();
      await b?.stop();
    }
  });
});
