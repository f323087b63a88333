import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { pino } from "pino";
import { migrate, MIGRATION_LOCK_KEY, openDatabase, type Sql } from "../persistence/db.ts";
import { PgEmergencyStore } from "../persistence/postgres.ts";
import { FencedError } from "../persistence/stores.ts";

/** Every migration file, in order: a fresh database gets them all. */
const ALL_MIGRATIONS = readdirSync(new URL("../persistence/migrations/", import.meta.url)).filter((f) => f.endsWith(".sql")).sort().map((f) => f.replace(/\.sql$/, ""));

/** The machine's Postgres: started here when it is down; these tests never skip. */
const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const quiet = { onnotice: () => {} };

const TABLES = [
  "audit_log", "emergencies", "emergency_events", "emergency_snapshots", "haven_schema_migrations",
  "hospitals", "medical_keys", "medical_profile_keys", "medical_profiles", "notification_preferences", "outbox", "push_subscriptions", "refresh_tokens", "responders", "users",
];

interface Captured { log: pino.Logger; records: Record<string, any>[] }
function captureLog(level = "debug"): Captured {
  const records: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n")) if (line) records.push(JSON.parse(line));
      done();
    },
  });
  return { log: pino({ level }, stream), records };
}

async function ensurePostgres(): Promise<void> {
  const probe = postgres(ADMIN_URL, { max: 1, connect_timeout: 3, ...quiet });
  try {
    await probe`select 1`;
  } catch {
    const version = execFileSync("ls", ["/etc/postgresql"]).toString().trim().split("\n").at(-1)!;
    execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "start"], { stdio: "inherit" });
    await probe`select 1`;
  } finally {
    await probe.end({ timeout: 1 });
  }
}

const created: string[] = [];
const clients: Sql[] = [];

/** A throwaway database (dropped in afterAll) and its URL. */
async function freshDatabase(): Promise<string> {
  const name = `haven_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(ADMIN_URL, { max: 1, ...quiet });
  try {
    await admin.unsafe(`create database ${name}`); // a generated identifier
  } finally {
    await admin.end({ timeout: 1 });
  }
  created.push(name);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

function client(url: string, max = 1): Sql {
  const sql = postgres(url, { max, ...quiet }) as Sql;
  clients.push(sql);
  return sql;
}

const silent = pino({ level: "silent" });

beforeAll(async () => {
  await ensurePostgres();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 })));
  const admin = postgres(ADMIN_URL, { max: 1, ...quiet });
  try {
    for (const name of created) await admin.unsafe(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end({ timeout: 1 });
  }
});

describe("migrations", () => {
  it("create every table on an empty database, and apply nothing the second time", async () => {
    const sql = client(await freshDatabase());
    expect(await migrate(sql, silent)).toEqual({ applied: ALL_MIGRATIONS });
    const rows = await sql<{ table_name: string }[]>`
      select table_name from information_schema.tables where table_schema = 'public' order by table_name`;
    expect(rows.map((r) => r.table_name)).toEqual(TABLES);
    const [m] = await sql`select version, name, checksum from haven_schema_migrations`;
    expect(m).toMatchObject({ version: 1, name: "initial" });
    expect(m.checksum).toMatch(/^[0-9a-f]{64}$/);

    expect(await migrate(sql, silent)).toEqual({ applied: [] });
    expect((await sql`select count(*)::int as n from haven_schema_migrations`)[0].n).toBe(ALL_MIGRATIONS.length);
  });

  it("two nodes migrating one empty database together: each migration applied once, both succeed", async () => {
    const url = await freshDatabase();
    const holder = client(url);
    const observer = client(url);
    const a = client(url);
    const b = client(url);
    // Hold the migration lock so that both really wait on it together, then let go.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const held = holder.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`;
      await released;
    });
    const both = Promise.all([migrate(a, silent), migrate(b, silent)]);
    for (let i = 0; ; i++) {
      const [{ n }] = await observer<{ n: number }[]>`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`;
      if (n === 2) break;
      if (i > 100) throw new Error(`expected two waiters on the migration lock, saw ${n}`);
      await sleep(20);
    }
    release();
    await held;
    const results = await both;
    expect(results.map((r) => r.applied).sort()).toEqual([[], ALL_MIGRATIONS]);
    const rows = await a`select version from haven_schema_migrations order by version`;
    expect(rows.map((r) => r.version)).toEqual(ALL_MIGRATIONS.map((m) => Number(m.slice(0, 3))));
  });

  it("refuse an applied migration whose file changed", async () => {
    const sql = client(await freshDatabase());
    await migrate(sql, silent);
    await sql`update haven_schema_migrations set checksum = ${"0".repeat(64)} where version = 1`;
    await expect(migrate(sql, silent)).rejects.toThrow(/001_initial\.sql changed after it was applied/);
  });
});

describe("schema", () => {
  let sql: Sql;
  beforeAll(async () => {
    sql = client(await freshDatabase(), 2);
    await migrate(sql, silent);
  });

  it("refuses UPDATE and DELETE (and TRUNCATE) on emergency_events and audit_log", async () => {
    const id = crypto.randomUUID();
    await sql`insert into emergencies (id, patient_id, bypass, status, priority, created_at) values (${id}, 'p-append', false, 'active', 'high', now())`;
    await sql`insert into emergency_events (emergency_id, seq, type, actor, payload, at) values (${id}, 1, 'created', 'p-append', ${sql.json({ a: 1 })}, now())`;
    await sql`insert into audit_log (actor, actor_role, action, outcome, hash) values ('u1', 'ops_admin', 'read', 'ok', ${Buffer.from("h")})`;

    await expect(sql`update emergency_events set type = 'x' where emergency_id = ${id}`).rejects.toThrow(/UPDATE on emergency_events refused: the table is append-only/);
    await expect(sql`delete from emergency_events where emergency_id = ${id}`).rejects.toThrow(/DELETE on emergency_events refused/);
    await expect(sql`truncate emergency_events cascade`).rejects.toThrow(/TRUNCATE on emergency_events refused/);
    await expect(sql`update audit_log set outcome = 'denied'`).rejects.toThrow(/UPDATE on audit_log refused/);
    await expect(sql`delete from audit_log`).rejects.toThrow(/DELETE on audit_log refused/);
    await expect(sql`truncate audit_log`).rejects.toThrow(/TRUNCATE on audit_log refused/);

    expect((await sql`select count(*)::int as n from emergency_events`)[0].n).toBe(1);
    expect((await sql`select count(*)::int as n from audit_log`)[0].n).toBe(1);
  });

  it("allows one active emergency per patient, and another once the first is closed", async () => {
    const first = crypto.randomUUID();
    const insert = (id: string) =>
      sql`insert into emergencies (id, patient_id, bypass, status, priority, created_at) values (${id}, 'p-one', false, 'dispatching', 'high', now())`;
    await insert(first);
    await expect(insert(crypto.randomUUID())).rejects.toMatchObject({ code: "23505", constraint_name: "emergencies_one_active_per_patient" });
    await sql`update emergencies set status = 'handed_over', closed_at = now() where id = ${first}`;
    const second = crypto.randomUUID();
    await insert(second);
    await sql`update emergencies set status = 'cancelled', closed_at = now() where id = ${second}`;
    await insert(crypto.randomUUID());
    expect((await sql`select count(*)::int as n from emergencies where patient_id = 'p-one'`)[0].n).toBe(3);
  });
});

describe("fencing of emergency writes", () => {
  it("a takeover raises the token; the earlier holder's commits and snapshots are refused, the new holder's land", async () => {
    const sql = client(await freshDatabase(), 3);
    await migrate(sql, silent);
    const store = new PgEmergencyStore(sql);
    const id = crypto.randomUUID();
    const at = Date.now();
    await store.open({ id, patientId: "p-fence", bypass: false, status: "alerted", priority: "high", createdAt: at, node: "n1" },
      { seq: 1, type: "call_received", actor: "patient:p-fence", payload: { lat: -1.28 }, at });
    const snap = (seq: number, tag: string) => ({ seq, state: Buffer.from(tag) });

    const first = await store.claim(id, "proc-a", "n1");
    expect(first).toMatchObject({ id, fence: 1, patientId: "p-fence", alert: { lat: -1.28 } });
    expect(await store.commit(id, first!.fence, [{ seq: 2, type: "responder_assigned", actor: "x", payload: {}, at }], snap(2, "a-2"), "dispatched")).toBe(true);

    // another process takes over: it reads what the first one committed, under a higher token
    const second = await store.claim(id, "proc-b", "n2");
    expect(second!.fence).toBe(2);
    expect(second!.snapshot!.toString()).toBe("a-2");

    // the first holder, unaware, tries to write: refused, nothing of it lands
    await expect(store.commit(id, first!.fence, [{ seq: 3, type: "on_scene", actor: "x", payload: {}, at }], snap(3, "a-3"), "on_scene")).rejects.toBeInstanceOf(FencedError);
    expect(await store.saveSnapshots([{ id, fence: first!.fence, seq: 9, state: Buffer.from("a-stale") }])).toEqual([id]);
    // the new holder writes as usual
    expect(await store.commit(id, second!.fence, [{ seq: 3, type: "on_scene", actor: "y", payload: {}, at }], snap(3, "b-3"), "on_scene")).toBe(true);
    expect(await store.saveSnapshots([{ id, fence: second!.fence, seq: 3, state: Buffer.from("b-3b") }])).toEqual([]);

    const events = await sql<{ seq: number; actor: string }[]>`select seq, actor from emergency_events where emergency_id = ${id} order by seq`;
    expect(events.map((e) => `${e.seq}:${e.actor}`)).toEqual(["1:patient:p-fence", "2:x", "3:y"]);
    const [row] = await sql<{ state: Buffer }[]>`select state from emergency_snapshots where emergency_id = ${id}`;
    expect(row.state.toString()).toBe("b-3b");
    expect((await sql<{ status: string; owner: string }[]>`select status, owner from emergencies where id = ${id}`)[0]).toMatchObject({ status: "on_scene", owner: "proc-b" });
    // a closed emergency is not taken over
    await store.commit(id, second!.fence, [{ seq: 4, type: "cancelled", actor: "y", payload: {}, at }], snap(4, "b-4"), "cancelled");
    expect(await store.claim(id, "proc-c", "n3")).toBeUndefined();
    await sql.end({ timeout: 1 });
  });

  it("positions rows land on top of the snapshot they follow, never on a newer one, and a whole snapshot or a commit clears them", async () => {
    const sql = client(await freshDatabase(), 3);
    await migrate(sql, silent);
    const store = new PgEmergencyStore(sql);
    const id = crypto.randomUUID();
    const at = Date.now();
    await store.open({ id, patientId: "p-pos", bypass: false, status: "alerted", priority: "high", createdAt: at, node: "n1" },
      { seq: 1, type: "call_received", actor: "patient:p-pos", payload: {}, at });
    const { fence } = (await store.claim(id, "proc-a", "n1"))!;
    const stored = async () => (await sql<{ state: Buffer; positions: Buffer | null }[]>`select state, positions from emergency_snapshots where emergency_id = ${id}`)[0];

    expect(await store.saveSnapshots([{ id, fence, seq: 1, state: Buffer.from("s-1") }])).toEqual([]);
    expect(await store.saveSnapshots([{ id, fence, seq: 1, positions: Buffer.from("p-1") }])).toEqual([]);
    expect((await stored()).positions?.toString()).toBe("p-1");
    expect((await store.claim(id, "proc-a", "n1"))).toMatchObject({ snapshot: Buffer.from("s-1"), positions: Buffer.from("p-1") });
    const fence2 = fence + 1;

    // a critical change commits a newer snapshot: it clears them, and a positions row encoded before it does not land
    await store.commit(id, fence2, [{ seq: 2, type: "responder_assigned", actor: "x", payload: {}, at }], { seq: 2, state: Buffer.from("s-2") }, "dispatched");
    expect(await stored()).toMatchObject({ state: Buffer.from("s-2"), positions: null });
    await store.saveSnapshots([{ id, fence: fence2, seq: 1, positions: Buffer.from("p-stale") }]);
    expect((await stored()).positions).toBeNull();
    await store.saveSnapshots([{ id, fence: fence2, seq: 2, positions: Buffer.from("p-2") }]);
    expect((await stored()).positions?.toString()).toBe("p-2");
    // a whole snapshot carries its own positions (none here): the older row goes
    await store.saveSnapshots([{ id, fence: fence2, seq: 2, state: Buffer.from("s-2b") }]);
    expect(await stored()).toMatchObject({ state: Buffer.from("s-2b"), positions: null });
    await sql.end({ timeout: 1 });
  });
});

describe("embedded PostgreSQL", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "haven-embedded-"));
    // Run as root, PostgreSQL runs as the user postgres, which must be able to reach the data.
    await chmod(dir, 0o711);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
  }

  function waitGone(pid: number): Promise<void> {
    return (async () => {
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await sleep(25);
      }
      throw new Error(`process ${pid} is still there`);
    })();
  }

  it("starts, migrates, stops, restarts on the same directory, and survives SIGKILL of its server", { timeout: 60_000 }, async () => {
    const port = await freePort();
    const options = { dataDir: join(dir, "data"), embeddedPort: port, poolMax: 2, connectTimeoutSeconds: 5, statementTimeoutMs: 4000 };
    const readyRecord = (c: Captured) => c.records.find((r) => /embedded PostgreSQL ready/.test(r.msg));

    // First start: initdb, start, create database haven.
    const c1 = captureLog();
    let t = performance.now();
    const db1 = await openDatabase(options, c1.log);
    const firstMs = Math.round(performance.now() - t);
    expect(db1.embedded).toBe(true);
    expect(await migrate(db1.sql, silent)).toEqual({ applied: ALL_MIGRATIONS });
    const [settings] = await db1.sql`select current_setting('statement_timeout') as st, current_setting('application_name') as app, current_user as who, pg_encoding_to_char(encoding) as enc from pg_database where datname = current_database()`;
    expect(settings).toEqual({ st: "4s", app: "haven", who: "haven", enc: "UTF8" });
    await db1.sql`insert into hospitals (id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting) values ('h1', 'Kenyatta', -1.3, 36.8, ${["trauma"]}, 5, 2, true)`;
    await db1.close();
    await db1.close(); // twice is harmless

    const passwordFile = join(options.dataDir, "embedded-postgres.password");
    expect(statSync(passwordFile).mode & 0o777).toBe(0o600);
    const password = await readFile(passwordFile, "utf8");
    expect(existsSync(join(options.dataDir, "postgres", "PG_VERSION"))).toBe(true);
    expect(JSON.stringify(c1.records)).not.toContain(password.trim());
    expect(existsSync(join(options.dataDir, "postgres", "postmaster.pid"))).toBe(false);

    // Restart on the existing cluster: no initdb, same password.
    const c2 = captureLog();
    t = performance.now();
    const db2 = await openDatabase(options, c2.log);
    const restartMs = Math.round(performance.now() - t);
    expect(await migrate(db2.sql, silent)).toEqual({ applied: [] });
    expect((await db2.sql`select name from hospitals`).map((r) => r.name)).toEqual(["Kenyatta"]);
    await db2.sql`insert into hospitals (id, name, lat, lng, specialties, emergency_beds, icu_beds, accepting) values ('h2', 'Aga Khan', -1.26, 36.82, ${[]}, 3, 1, true)`;

    // SIGKILL the postmaster: a stale postmaster.pid stays behind.
    const pid = Number((await readFile(join(options.dataDir, "postgres", "postmaster.pid"), "utf8")).split("\n")[0]);
    process.kill(pid, "SIGKILL");
    await waitGone(pid);
    expect(existsSync(join(options.dataDir, "postgres", "postmaster.pid"))).toBe(true);
    await expect(db2.sql`select 1`).rejects.toThrow();
    expect(c2.records.some((r) => r.level === 50 && /exited unexpectedly/.test(r.msg))).toBe(true);
    await db2.close(); // does not hang on the dead server

    const c3 = captureLog();
    t = performance.now();
    const db3 = await openDatabase(options, c3.log);
    const afterKillMs = Math.round(performance.now() - t);
    expect(await migrate(db3.sql, silent)).toEqual({ applied: [] });
    expect((await db3.sql`select id from hospitals order by id`).map((r) => r.id)).toEqual(["h1", "h2"]);
    await db3.close();

    console.log(
      `embedded PostgreSQL start: first ${firstMs} ms (${JSON.stringify(pick(readyRecord(c1)))}), ` +
        `restart ${restartMs} ms (${JSON.stringify(pick(readyRecord(c2)))}), ` +
        `after SIGKILL ${afterKillMs} ms (${JSON.stringify(pick(readyRecord(c3)))})`,
    );
  });

  it("stops a server left running by a Haven process that was killed, then starts its own", { timeout: 30_000 }, async () => {
    const port = await freePort();
    const dataDir = join(dir, "orphan");
    const script = `
      import { pino } from "pino";
      import { openDatabase } from ${JSON.stringify(new URL("../persistence/db.ts", import.meta.url).href)};
      await openDatabase({ dataDir: ${JSON.stringify(dataDir)}, embeddedPort: ${port}, poolMax: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 4000 }, pino({ level: "silent" }));
      console.log("ready");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: new URL("..", import.meta.url).pathname, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    for (let i = 0; !output.includes("ready"); i++) {
      if (child.exitCode !== null || i > 400) throw new Error(`the child did not start: ${output}`);
      await sleep(25);
    }
    const pid = Number((await readFile(join(dataDir, "postgres", "postmaster.pid"), "utf8")).split("\n")[0]);
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    process.kill(pid, 0); // the server outlived the process that started it

    const c = captureLog();
    const db = await openDatabase({ dataDir, embeddedPort: port, poolMax: 1, connectTimeoutSeconds: 5, statementTimeoutMs: 4000 }, c.log);
    try {
      expect(c.records.some((r) => /left running by an earlier Haven process/.test(r.msg))).toBe(true);
      expect((await db.sql`select 1 as one`)[0].one).toBe(1);
    } finally {
      await db.close();
    }
    await waitGone(pid);
  });
});

function pick(r: Record<string, any> | undefined) {
  return r && { firstStart: r.firstStart, initialiseMs: r.initialiseMs, startMs: r.startMs, totalMs: r.totalMs };
}
