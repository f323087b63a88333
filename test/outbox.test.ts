import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, freshDatabase, login, sleep, startHaven, until, type Haven } from "./harness.ts";
import { Gateway } from "./notify-kit.ts";
import { backoffMs } from "../src/notify/backoff.ts";

/**
 * The notifications outbox against real local receivers: each message delivered exactly once,
 * retried with growing delays, dead-lettered after the limit, and neither lost nor doubled when
 * the node delivering it is killed mid-retry or when two nodes drain one outbox.
 */
const KNOBS = {
  HAVEN_OUTBOX_POLL_MS: "20",
  HAVEN_OUTBOX_BACKOFF_BASE_MS: "50",
  HAVEN_OUTBOX_BACKOFF_MAX_MS: "5000",
  HAVEN_OUTBOX_MAX_ATTEMPTS: "6",
  HAVEN_NOTIFY_SEND_TIMEOUT_MS: "1000",
  HAVEN_OUTBOX_LEASE_MS: "1500",
};
const PHONE = "+254712345678";

type Sql = postgres.Sql<{}>;

async function queue(sql: Sql, rows: { key: string; channel: string; recipient: string }[]): Promise<void> {
  for (const r of rows) {
    await sql`insert into outbox (dedupe_key, channel, recipient, event, payload)
      values (${r.key}, ${r.channel}, ${r.recipient}, 'ops_escalation', ${sql.json({ params: { ref: r.key, priority: "critical", reason: "a test" } })})`;
  }
}

async function statusOf(sql: Sql, key: string): Promise<{ status: string; attempts: number; last_error: string | null }> {
  const [row] = await sql<{ status: string; attempts: number; last_error: string | null }[]>`select status, attempts, last_error from outbox where dedupe_key = ${key}`;
  return row;
}

/** The message's row once its worker recorded an outcome (the receiver answers before the row is updated). */
async function settled(sql: Sql, key: string): Promise<{ status: string; attempts: number; last_error: string | null }> {
  let row = await statusOf(sql, key);
  for (let i = 0; i < 100 && row.status === "pending"; i++) { await sleep(30); row = await statusOf(sql, key); }
  return row;
}

async function metricsOf(h: Haven): Promise<string> {
  return (await fetch(`${h.url}/metrics`)).text();
}

describe("the outbox worker", () => {
  let gw: Gateway;
  let h: Haven;
  let sql: Sql;
  beforeAll(async () => {
    gw = await new Gateway().start();
    h = await startHaven({ ...gw.env(), ...KNOBS });
    sql = postgres(h.databaseUrl, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end({ timeout: 1 });
    await h?.stop();
    await gw?.stop();
  });

  it("delivers each message exactly once, by SMS in the gateway's shape and by signed webhook, and counts it in /metrics", async () => {
    const rows = Array.from({ length: 20 }, (_, i) => i % 2 === 0
      ? { key: `once-sms-${i}`, channel: "sms", recipient: "tel:0712 345 678" }
      : { key: `once-hook-${i}`, channel: "webhook", recipient: `url:${gw.url}/ops` });
    await queue(sql, rows);
    await until(() => rows.every((r) => gw.accepted().some((a) => a.key === r.key)), 5000, "all delivered");
    await sleep(300); // nothing more arrives
    for (const r of rows) {
      expect(gw.attemptsOf(r.key)).toHaveLength(1);
      expect((await settled(sql, r.key)).status).toBe("delivered");
    }
    const sms = gw.attemptsOf("once-sms-0")[0];
    expect(sms.to).toBe(PHONE); // normalised to E.164 from the local way of writing it
    expect(sms.text).toBe("Haven OPS: emergency once-sms-0 (critical) needs a human: a test.");
    const hook = gw.attemptsOf("once-hook-1")[0];
    expect(hook.status).toBe(200); // its signature checked out
    expect(hook.body).toMatchObject({ id: "once-hook-1", event: "ops_escalation" });
    const metrics = await metricsOf(h);
    expect(metrics).toMatch(/haven_notifications_total\{channel="sms",outcome="delivered"\} (\d+)/);
    expect(Number(/haven_notifications_total\{channel="webhook",outcome="delivered"\} (\d+)/.exec(metrics)![1])).toBeGreaterThanOrEqual(10);
  });

  it("retries with growing delays while the receiver fails, then delivers once", async () => {
    gw.failFirst.set("retry-1", 4);
    await queue(sql, [{ key: "retry-1", channel: "webhook", recipient: `url:${gw.url}/flaky` }]);
    await until(() => gw.accepted().some((a) => a.key === "retry-1"), 8000, "delivered after the receiver recovered");
    const attempts = gw.attemptsOf("retry-1");
    expect(attempts.map((a) => a.status)).toEqual([503, 503, 503, 503, 200]);
    const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i].at);
    // base 50 ms doubling with equal jitter: 25–50, 50–100, 100–200, 200–400 ms (plus the poll)
    expect(gaps[3]).toBeGreaterThan(gaps[0]);
    expect(gaps[3]).toBeGreaterThanOrEqual(200);
    expect(gaps[2]).toBeGreaterThanOrEqual(100);
    expect(await settled(sql, "retry-1")).toMatchObject({ status: "delivered", attempts: 5 });
  });

  it("dead-letters a message after the attempt limit, and one refused for good at once", async () => {
    gw.failPaths.set("/down", 500);
    gw.failPaths.set("/gone", 410);
    await queue(sql, [
      { key: "dead-1", channel: "webhook", recipient: `url:${gw.url}/down` },
      // 410: the receiver refuses the message itself; trying again cannot help
      { key: "refused-1", channel: "webhook", recipient: `url:${gw.url}/gone` },
    ]);
    await until(() => gw.attemptsOf("dead-1").length >= 6, 10_000, "six attempts");
    const row = await settled(sql, "dead-1");
    expect(row).toMatchObject({ status: "dead", attempts: 6 });
    expect(row.last_error).toContain("500");
    await sleep(500);
    expect(gw.attemptsOf("dead-1")).toHaveLength(6); // never tried again
    expect(gw.attemptsOf("refused-1")).toHaveLength(1);
    expect(await settled(sql, "refused-1")).toMatchObject({ status: "dead", attempts: 1 });
    expect(await metricsOf(h)).toMatch(/haven_outbox_messages\{status="dead",channel="webhook"\} [1-9]/);
  });

  it("operations lists dead letters with their last error, and sends one again once the receiver is back", async () => {
    const ops = await login(h, OPS.email, OPS.password);
    const listed = await h.http("GET", "/api/ops/outbox?status=dead&limit=10", undefined, ops.token);
    expect(listed.status).toBe(200);
    const dead = listed.body.messages.find((m: any) => m.key === "dead-1");
    expect(dead).toMatchObject({ status: "dead", attempts: 6, channel: "webhook", event: "ops_escalation", lastError: "the webhook receiver answered 500" });
    const patient = await account(h, "patient");
    expect((await h.http("GET", "/api/ops/outbox", undefined, patient.token)).body.code).toBe("FORBIDDEN");
    expect((await h.http("POST", `/api/ops/outbox/${dead.id}/retry`, {}, patient.token)).body.code).toBe("FORBIDDEN");
    expect((await h.http("GET", "/api/ops/outbox?status=lost", undefined, ops.token)).body.code).toBe("INVALID_PAYLOAD");
    expect((await h.http("POST", "/api/ops/outbox/999999999/retry", {}, ops.token)).body.code).toBe("NOT_FOUND");

    gw.failPaths.delete("/down");
    expect((await h.http("POST", `/api/ops/outbox/${dead.id}/retry`, {}, ops.token)).body).toEqual({ id: dead.id, status: "pending" });
    await until(() => gw.accepted().some((a) => a.key === "dead-1"), 3000, "sent again");
    expect(await settled(sql, "dead-1")).toMatchObject({ status: "delivered", attempts: 1 });
    expect((await h.http("POST", `/api/ops/outbox/${dead.id}/retry`, {}, ops.token)).body.code).toBe("NOT_FOUND"); // delivered: nothing to retry
  });

  it("claims through the partial index of due messages, however many were delivered before", async () => {
    await sql`insert into outbox (dedupe_key, channel, recipient, event, payload, status, delivered_at, finished_at)
      select 'old-' || g, 'sms', 'tel:+254712345678', 'ops_escalation', '{"params":{}}', 'delivered', now(), now() from generate_series(1, 20000) g`;
    await sql`analyze outbox`;
    const plan = (await sql`explain select id from outbox where status = 'pending' and next_attempt_at <= now()
      order by next_attempt_at limit 20 for update skip locked`).map((r: any) => r["QUERY PLAN"]).join("\n");
    expect(plan).toContain("outbox_due_idx");
    expect(plan).not.toMatch(/Seq Scan/);
  });

  it("skips a message whose recipient has no address on its channel", async () => {
    await queue(sql, [{ key: "skip-1", channel: "sms", recipient: "tel:12" }]);
    const row = await settled(sql, "skip-1");
    expect(row.status).toBe("skipped");
    expect(row.last_error).toBe("no valid phone number");
    expect(gw.attemptsOf("skip-1")).toHaveLength(0);
  });
});

describe("the outbox across failures and nodes", () => {
  it("is neither lost nor doubled when the delivering node is killed mid-retry and another takes over", async () => {
    const gw = await new Gateway().start();
    const db = await freshDatabase();
    const env = { ...gw.env(), ...KNOBS, DATABASE_URL: db.url, HAVEN_OUTBOX_BACKOFF_BASE_MS: "200" };
    let a: Haven | undefined;
    let b: Haven | undefined;
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    try {
      a = await startHaven(env);
      gw.failWith.webhook = 503;
      const rows = Array.from({ length: 10 }, (_, i) => ({ key: `kill-${i}`, channel: "webhook", recipient: `url:${gw.url}/ops` }));
      await queue(sql, rows);
      await until(() => rows.every((r) => gw.attemptsOf(r.key).length >= 2), 5000, "each tried twice");
      await a.kill(); // mid-retry: every message is pending, some claimed
      gw.failWith = {};
      b = await startHaven(env);
      await until(() => rows.every((r) => gw.accepted().some((x) => x.key === r.key)), 8000, "all delivered by the second node");
      await sleep(500);
      for (const r of rows) {
        expect(gw.accepted().filter((x) => x.key === r.key)).toHaveLength(1);
        expect((await settled(sql, r.key)).status).toBe("delivered");
      }
    } finally {
      await sql.end({ timeout: 1 });
      await a?.stop();
      await b?.stop();
      await db.drop();
      await gw.stop();
    }
  });

  it("two nodes draining one outbox never send the same message twice", async () => {
    const gw = await new Gateway().start();
    gw.delayMs = 5; // each delivery takes a moment, so both nodes have work
    const db = await freshDatabase();
    const env = { ...gw.env(), ...KNOBS, DATABASE_URL: db.url, HAVEN_OUTBOX_BATCH: "5" };
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    let nodes: Haven[] = [];
    try {
      nodes = [await startHaven({ ...env, HAVEN_NODE_NAME: "node-1" })];
      nodes.push(await startHaven({ ...env, HAVEN_NODE_NAME: "node-2" }));
      const rows = Array.from({ length: 200 }, (_, i) => ({ key: `two-${i}`, channel: i % 2 ? "sms" : "webhook", recipient: i % 2 ? `tel:${PHONE}` : `url:${gw.url}/ops` }));
      await sql`insert into outbox (dedupe_key, channel, recipient, event, payload)
        select * from unnest(${rows.map((r) => r.key)}::text[], ${rows.map((r) => r.channel)}::text[], ${rows.map((r) => r.recipient)}::text[],
          ${rows.map(() => "ops_escalation")}::text[], ${rows.map((r) => JSON.stringify({ params: { ref: r.key } }))}::jsonb[])`;
      await until(() => new Set(gw.accepted().map((x) => x.key)).size === 200, 15_000, "all 200 delivered");
      await sleep(500);
      expect(gw.requests).toHaveLength(200); // not one sent twice
      const byNode = await sql<{ claimed_by: string; n: number }[]>`select claimed_by, count(*)::int as n from outbox group by claimed_by`;
      expect(byNode.reduce((t, r) => t + r.n, 0)).toBe(200);
      expect(byNode).toHaveLength(2); // both nodes delivered some
    } finally {
      await sql.end({ timeout: 1 });
      for (const n of nodes) await n.stop();
      await db.drop();
      await gw.stop();
    }
  });
});

describe("backoff", () => {
  it("doubles from the base with equal jitter, up to the max", () => {
    expect(backoffMs(1, 50, 10_000, () => 0)).toBe(25);
    expect(backoffMs(1, 50, 10_000, () => 1)).toBe(50);
    expect(backoffMs(4, 50, 10_000, () => 0)).toBe(200);
    expect(backoffMs(4, 50, 10_000, () => 1)).toBe(400);
    expect(backoffMs(40, 50, 10_000, () => 1)).toBe(10_000);
  });
});
