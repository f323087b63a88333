import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import { Client } from "@colyseus/sdk";
import { Redis } from "ioredis";
import { ensureRedis, freePort, freshDatabase, REDIS_URL, root, sleep, until, waitFor } from "./harness.ts";
import { GENEROUS_LIMITS } from "./generous-limits.ts";

/**
 * The deployment: deploy/check.ts (what CI runs on the Compose file and HAProxy's configuration),
 * and `npm run cluster` with HAProxy in front of its three nodes, where every client call, REST,
 * matchmaking and WebSocket, goes through the proxy's one port. It needs Debian's `haproxy`
 * (`apt-get install haproxy`) and fails, saying so, without it. Its cluster runs on the machine's
 * Redis database 12, emptied first (test/cluster.test.ts uses database 9).
 */

const NAIROBI = { lat: -1.2864, lng: 36.8172 };
const REDIS_DB = 12;

describe("deployment files", () => {
  it("deploy/check.ts passes: haproxy.cfg is the generator's output, HAProxy's own test accepts it, and compose.yaml matches it", () => {
    const t0 = Date.now();
    const run = spawnSync(process.execPath, ["deploy/check.ts"], { cwd: root, encoding: "utf8" });
    const out = `${run.stdout}${run.stderr}`;
    expect(run.status, out).toBe(0);
    expect(out).toContain("haproxy -c -f deploy/haproxy.cfg (HAProxy");
    expect(out).toMatch(/deploy-check: passed/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

describe("npm run cluster with HAProxy in front", () => {
  let launcher: ChildProcess;
  let exited: Promise<number | null>;
  let drop: () => Promise<void>;
  let dataDir: string;
  let url: string;
  let front: number;
  const out: string[] = [];
  const output = () => out.join("");
  /** The launcher's output lines from HAProxy (its access log). */
  const proxyLog = () => output().split("\n").filter((l) => l.startsWith("haproxy "));

  beforeAll(async () => {
    const haproxy = spawnSync("haproxy", ["-v"], { encoding: "utf8" });
    if (haproxy.error || haproxy.status !== 0) throw new Error("this test needs HAProxy: apt-get install haproxy (no working haproxy binary on the PATH)");
    await ensureRedis();
    const redisUrl = `${REDIS_URL.replace(/\/\d*$/, "")}/${REDIS_DB}`;
    const admin = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    await admin.flushdb();
    admin.disconnect();
    const db = await freshDatabase();
    drop = db.drop;
    dataDir = mkdtempSync(joinPath(tmpdir(), "haven-proxy-"));
    const base = await freePort();
    front = await freePort();
    url = `http://127.0.0.1:${front}`;
    launcher = spawn(process.execPath, ["src/cluster/launch.ts"], {
      cwd: root,
      env: {
        ...process.env, ...GENEROUS_LIMITS,
        DATABASE_URL: db.url, REDIS_URL: redisUrl, HAVEN_DATA_DIR: dataDir, HAVEN_ENV: "test",
        HAVEN_CLUSTER_BASE_PORT: String(base), HAVEN_CLUSTER_FRONT_PORT: String(front), HAVEN_CLUSTER_PROXY: "haproxy",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    launcher.stdout!.on("data", (d) => out.push(String(d)));
    launcher.stderr!.on("data", (d) => out.push(String(d)));
    exited = new Promise((r) => launcher.once("exit", r));
    await until(() => output().includes("Ctrl-C stops everything") || launcher.exitCode !== null, 60_000, "the cluster to be up")
      .catch((error) => { throw new Error(`${error.message}\n${output().split("\n").slice(-30).join("\n")}`); });
    expect(launcher.exitCode, output()).toBeNull();
  }, 90_000);

  afterAll(async () => {
    if (launcher && launcher.exitCode === null) {
      launcher.kill("SIGTERM");
      const code = await Promise.race([exited, sleep(30_000).then(() => "timeout")]);
      if (code === "timeout") launcher.kill("SIGKILL");
      expect(code, output().split("\n").slice(-20).join("\n")).toBe(0);
    }
    await drop?.();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  const post = async (path: string, body: unknown, token?: string) => {
    const r = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as any };
  };
  /** A patient account, registered and signed in through the proxy. */
  const patient = async () => {
    const email = `p-${Math.random().toString(36).slice(2, 10)}@haven.test`;
    expect((await post("/api/auth/register", { email, password: "a-long-password-1", name: "P", role: "patient" })).status).toBe(201);
    const session = await post("/api/auth/login", { email, password: "a-long-password-1" });
    expect(session.status).toBe(200);
    return session.body.accessToken as string;
  };
  /** processId of each node, asked through the proxy at the node's own path. */
  const processIds = async () => {
    const ids = new Map<string, string>();
    for (const name of ["node-1", "node-2", "node-3"]) {
      const r = await fetch(`${url}/${name}/health`);
      if (r.status === 200) ids.set(((await r.json()) as any).cluster.processId, name);
    }
    return ids;
  };

  it("says it runs HAProxy, and /ready and the REST API answer through the proxy, spread over the three nodes", async () => {
    expect(output()).toMatch(/proxy: HAProxy \S+ on 127\.0\.0\.1:\d+, for REST, matchmaking and WebSockets/);
    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true });
    const seen = new Set<string>();
    const transports = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const health = (await (await fetch(`${url}/health`)).json()) as any;
      seen.add(health.cluster.processId);
      transports.add(health.transport);
    }
    console.log(`[proxy] ${output().match(/HAProxy \S+/)?.[0]} in front of nodes on transport ${[...transports].join(", ")}`);
    expect(seen.size).toBe(3);
    expect((await processIds()).size).toBe(3);
    // a declared body above the proxy's limit never reaches a node; Haven's error format
    const big = await fetch(`${url}/api/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: "x".repeat(70_000) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as any).code).toBe("BODY_TOO_LARGE");
  });

  it("an alert through the proxy, then a join by id through it: the seat names the node that holds the room at the proxy's address, and the socket reaches that node through the proxy", async () => {
    const nodeOf = await processIds();
    const redis = new Redis(`${REDIS_URL.replace(/\/\d*$/, "")}/${REDIS_DB}`, { maxRetriesPerRequest: 1 });
    const holders = new Set<string>();
    try {
      for (let i = 0; i < 3; i++) {
        const token = await patient();
        const alert = await post("/api/emergency/alert", { lat: NAIROBI.lat + i * 0.001, lng: NAIROBI.lng }, token);
        expect(alert.status, JSON.stringify(alert.body)).toBe(201);
        const id = alert.body.emergencyId as string;

        // the seat reservation, asked through the proxy (whichever node answers)
        const seat = await post(`/matchmake/joinById/${id}`, {}, token);
        expect(seat.status, JSON.stringify(seat.body)).toBe(200);
        const holder = nodeOf.get(seat.body.processId);
        expect(holder, `processId ${seat.body.processId} is none of ${[...nodeOf]}`).toBeDefined();
        expect(seat.body.publicAddress).toBe(`127.0.0.1:${front}/${holder}`);
        // and that node is the one the cluster lists as the room's holder
        const listing = JSON.parse((await redis.hget("roomcaches", id))!);
        expect(listing.publicAddress).toBe(seat.body.publicAddress);
        holders.add(holder!);

        const client = new Client(url);
        client.auth.token = token;
        const room = await client.consumeSeatReservation(seat.body);
        await waitFor(room, (s) => s.patient?.online === true && s.status === "alerted", 5000, "the patient online in the emergency, through the proxy");
        await room.leave();
        // the SDK's own flow, as an app calls it: matchmaking and socket through the proxy's one address
        const again = await client.joinById(id);
        await waitFor(again, (s) => s.patient?.online === true, 5000, "the patient online again");
        await again.leave();

        const socketLine = proxyLog().find((l) => l.includes(`"GET /${holder}/${seat.body.processId}/${id} HTTP/1.1"`));
        expect(socketLine, proxyLog().slice(-10).join("\n")).toBeDefined();
        expect(socketLine).toMatch(new RegExp(`haven ${holder}/${holder} \\S+ 101 `));
      }
    } finally {
      redis.disconnect();
    }
    console.log(`[proxy] 3 emergencies held by ${[...holders].join(", ")}; every socket went through HAProxy to its holder`);
    // the access log never carries the query string, where the socket's token travels
    const lines = proxyLog();
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.filter((l) => /_authToken|sessionId=|\?/.test(l))).toEqual([]);
  }, 60_000);

  it("a node killed with SIGKILL: the proxy leaves it out, and a join by id through the proxy reaches the emergency on the node that took it over", async () => {
    const nodeOf = await processIds();
    const token = await patient();
    const alert = await post("/api/emergency/alert", NAIROBI, token);
    expect(alert.status).toBe(201);
    const id = alert.body.emergencyId as string;
    const seat = await post(`/matchmake/joinById/${id}`, {}, token);
    const holder = nodeOf.get(seat.body.processId)!;
    const pid = Number(new RegExp(`starting ${holder} on \\S+ \\(pid (\\d+)\\)`).exec(output())![1]);
    process.kill(pid, "SIGKILL");
    const killedAt = Date.now();

    const client = new Client(url);
    client.auth.token = token;
    let room: Awaited<ReturnType<Client["joinById"]>> | undefined;
    let last: unknown;
    while (!room && Date.now() - killedAt < 20_000) {
      try {
        room = await client.joinById(id);
      } catch (error) {
        last = error; // 503 while the emergency is restored elsewhere: retry, as an app does
        await sleep(250);
      }
    }
    expect(room, `no join within 20 s: ${(last as Error)?.message}\n${output().split("\n").slice(-15).join("\n")}`).toBeDefined();
    await waitFor(room!, (s) => s.patient?.online === true, 5000, "the patient online on the new holder");
    const now = (await processIds());
    expect(now.size).toBe(2);
    expect([...now.values()]).not.toContain(holder);
    const redis = new Redis(`${REDIS_URL.replace(/\/\d*$/, "")}/${REDIS_DB}`, { maxRetriesPerRequest: 1 });
    const listing = JSON.parse((await redis.hget("roomcaches", id))!);
    redis.disconnect();
    expect(listing.publicAddress).not.toBe(`127.0.0.1:${front}/${holder}`);
    console.log(`[proxy] ${holder} killed; the emergency rejoined through the proxy on ${listing.publicAddress} ${Date.now() - killedAt} ms later`);
    await room!.leave();
    // REST calls keep working through the proxy, on the live nodes
    for (let i = 0; i < 4; i++) expect((await fetch(`${url}/ready`)).status).toBe(200);
  }, 60_000);
});
