import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { isAbsolute, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { Redis } from "ioredis";
import { startFrontDoor, type FrontDoor } from "./front-door.ts";
import { haproxyConfig, nodePath } from "./haproxy.ts";
import { ConfigError, int, urlOf } from "../config.ts";
import { NODE_FLAGS } from "../gc.ts";

/**
 * `npm run cluster`: a local cluster of three Haven nodes with a proxy in front, on this machine,
 * against one Postgres and one Redis. Node 1 starts first, so that it alone creates the
 * development keys in the shared data folder; nodes 2 and 3 follow once it is healthy.
 *
 * The proxy is HAProxy when a `haproxy` binary is on the PATH (Debian's `haproxy` package), with
 * the configuration src/cluster/haproxy.ts writes for deploy/haproxy.cfg, on local ports: clients
 * use its port for everything, REST, matchmaking and WebSockets, and each node's public address
 * is the proxy's followed by the node's path (`127.0.0.1:2567/node-2`), so sockets come through
 * it to the node that holds the room. Without HAProxy it is the built-in front door
 * (src/cluster/front-door.ts), which carries REST and matchmaking only: sockets then go straight
 * to the node named in the seat reservation. The launcher says which one it runs.
 *
 * A node that dies (try `kill -9` on one) is reported and left dead: the others take its
 * emergencies over, and the proxy stops sending it requests. Ctrl-C (SIGINT) or SIGTERM
 * stops the proxy and shuts every node down gracefully; another one, a moment later, forces
 * them down. Should HAProxy itself exit, the cluster is stopped.
 *
 *   HAVEN_CLUSTER_BASE_PORT   first node's port; the nodes use it and the next two (2571)
 *   HAVEN_CLUSTER_FRONT_PORT  the proxy's port (2567)
 *   HAVEN_CLUSTER_PROXY       auto (HAProxy when installed, else the front door), haproxy, front-door
 *   DATABASE_URL              postgres://postgres@127.0.0.1:5432/haven_cluster, created when absent
 *   REDIS_URL                 redis://127.0.0.1:6379
 *   HAVEN_DATA_DIR            .data/cluster: development keys shared by the three nodes, and
 *                             haproxy.cfg, the proxy's configuration for this run
 *
 * Every other variable (HAVEN_TRANSPORT, LOG_LEVEL, ...) is passed on to the nodes.
 */

const NODES = 3;
const HOST = "127.0.0.1";
/** How long a node may take to answer /health after it was started. */
const START_TIMEOUT_MS = 60_000;
/** How long the nodes get to shut down gracefully before they are killed. */
const STOP_TIMEOUT_MS = 20_000;

const root = fileURLToPath(new URL("../..", import.meta.url));

interface LaunchConfig {
  basePort: number;
  frontPort: number;
  proxy: "auto" | "haproxy" | "front-door";
  databaseUrl: string;
  redisUrl: string;
  dataDir: string;
}

function proxyChoice(raw: string | undefined): LaunchConfig["proxy"] {
  if (raw === undefined || raw === "") return "auto";
  if (raw === "auto" || raw === "haproxy" || raw === "front-door") return raw;
  throw new ConfigError("HAVEN_CLUSTER_PROXY", `expected auto, haproxy or front-door, got ${JSON.stringify(raw)}`);
}

function loadLaunchConfig(env: NodeJS.ProcessEnv): LaunchConfig {
  const basePort = int(env, "HAVEN_CLUSTER_BASE_PORT", 2571, 1, 65535 - (NODES - 1));
  const frontPort = int(env, "HAVEN_CLUSTER_FRONT_PORT", 2567, 1, 65535);
  if (frontPort >= basePort && frontPort < basePort + NODES) {
    throw new ConfigError("HAVEN_CLUSTER_FRONT_PORT", `${frontPort} is one of the nodes' ports (${basePort}-${basePort + NODES - 1})`);
  }
  const dataDir = env.HAVEN_DATA_DIR === undefined || env.HAVEN_DATA_DIR === "" ? resolve(root, ".data/cluster") : env.HAVEN_DATA_DIR;
  return {
    basePort,
    frontPort,
    proxy: proxyChoice(env.HAVEN_CLUSTER_PROXY),
    databaseUrl: urlOf(env, "DATABASE_URL", ["postgres:", "postgresql:"]) ?? "postgres://postgres@127.0.0.1:5432/haven_cluster",
    redisUrl: urlOf(env, "REDIS_URL", ["redis:", "rediss:"]) ?? "redis://127.0.0.1:6379",
    dataDir: isAbsolute(dataDir) ? dataDir : resolve(dataDir),
  };
}

/** The URL without its password, for messages. */
function shown(raw: string): string {
  const u = new URL(raw);
  if (u.password) u.password = "***";
  return u.toString();
}

function say(label: string, line: string, stream: NodeJS.WriteStream = process.stdout): void {
  stream.write(`${label.padEnd(10)} | ${line}\n`);
}

/** Creates the cluster's database when it does not exist yet (connected to the server's `postgres` database). */
async function ensureDatabase(databaseUrl: string): Promise<void> {
  const target = new URL(databaseUrl);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
  if (name === "") throw new Error(`DATABASE_URL names no database: ${shown(databaseUrl)}`);
  const admin = new URL(databaseUrl);
  admin.pathname = "/postgres";
  const sql = postgres(admin.toString(), { max: 1, connect_timeout: 5, onnotice: () => undefined });
  try {
    const found = await sql`select 1 from pg_database where datname = ${name}`;
    if (found.length > 0) return;
    try {
      await sql`create database ${sql(name)}`;
      say("cluster", `created database ${name}`);
    } catch (error) {
      if ((error as { code?: string }).code !== "42P04") throw error; // created meanwhile by someone else
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Fails with a clear message when Redis does not answer, before any node tries it. */
async function checkRedis(redisUrl: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  let cause: Error | undefined;
  redis.on("error", (error: Error) => { cause = error; });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw cause ?? error; // "Connection is closed" says less than the error that closed it
  } finally {
    redis.disconnect();
  }
}

/** Fails when something already listens on `port` (often a node left over from an earlier run). */
function checkPortFree(p: number): Promise<void> {
  return new Promise((resolvePort, reject) => {
    const probe = net.createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => {
      reject(new Error(error.code === "EADDRINUSE" ? `port ${p} is already in use (a node left over from an earlier run?)` : `port ${p}: ${error.message}`));
    });
    probe.listen(p, HOST, () => probe.close(() => resolvePort()));
  });
}

function healthy(p: number, path = "/health"): Promise<boolean> {
  return new Promise((resolveHealth) => {
    const probe = http.get({ host: HOST, port: p, path, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolveHealth(res.statusCode === 200);
    });
    probe.on("timeout", () => probe.destroy());
    probe.on("error", () => resolveHealth(false));
  });
}

interface RunningNode {
  name: string;
  port: number;
  child: ChildProcess;
  exited: Promise<void>;
  running: boolean;
}

const config = (() => {
  try {
    return loadLaunchConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`haven cluster: invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
})();

/** The `haproxy` binary's version, or undefined when there is none on the PATH. */
function haproxyVersion(): string | undefined {
  const probe = spawnSync("haproxy", ["-v"], { encoding: "utf8", timeout: 5000 });
  if (probe.error || probe.status !== 0) return undefined;
  return /version (\S+)/i.exec(probe.stdout)?.[1] ?? "unknown version";
}

const haproxy = config.proxy === "front-door" ? undefined : haproxyVersion();
if (config.proxy === "haproxy" && haproxy === undefined) {
  say("cluster", "HAVEN_CLUSTER_PROXY=haproxy, but there is no working haproxy binary on the PATH (Debian: apt-get install haproxy)", process.stderr);
  process.exit(1);
}
const HAPROXY_CONFIG = resolve(config.dataDir, "haproxy.cfg");
/** How long HAProxy may take to answer /ready for the nodes once it was started. */
const PROXY_START_TIMEOUT_MS = 15_000;

const nodes: RunningNode[] = [];
let frontDoor: FrontDoor | undefined;
let proxy: { child: ChildProcess; running: boolean; exited: Promise<void> } | undefined;
/** Every node answered /health once and the proxy listens. */
let up = false;
let stopping = false;

/** Starts node `i` (1-based); its output lines are prefixed with its name. */
function startNode(i: number): RunningNode {
  const name = `node-${i}`;
  const nodePort = config.basePort + i - 1;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(nodePort),
    HOST,
    HAVEN_NODE_NAME: name,
    DATABASE_URL: config.databaseUrl,
    REDIS_URL: config.redisUrl,
    HAVEN_DATA_DIR: config.dataDir,
  };
  if (haproxy !== undefined) {
    // sockets come through the proxy, which sends /node-N/… to node N and overwrites X-Forwarded-For
    env.HAVEN_PUBLIC_ADDRESS = `${HOST}:${config.frontPort}${nodePath(name)}`;
    env.HAVEN_TRUST_PROXY = "true";
  } else {
    delete env.HAVEN_PUBLIC_ADDRESS; // each node's address is HOST:PORT
  }
  // its own process group: a Ctrl-C in the terminal reaches the launcher only, which stops each node once
  const child = spawn(process.execPath, [...NODE_FLAGS, "src/main.ts"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  createInterface({ input: child.stdout! }).on("line", (line) => say(name, line));
  createInterface({ input: child.stderr! }).on("line", (line) => say(name, line, process.stderr));
  const node: RunningNode = { name, port: nodePort, child, running: true, exited: Promise.resolve() };
  node.exited = new Promise((resolveExit) => {
    child.on("exit", (code, signal) => {
      node.running = false;
      const how = signal ? `signal ${signal}` : `code ${code}`;
      if (stopping) say("cluster", `${name} stopped (${how})`);
      else if (!up) say("cluster", `${name} exited while the cluster was starting (${how})`, process.stderr);
      else say("cluster", `${name} exited unexpectedly (${how}); the other nodes keep running and take its emergencies over. It is not restarted.`);
      resolveExit();
    });
    child.on("error", (error) => {
      say("cluster", `${name} could not be started: ${error.message}`, process.stderr);
      node.running = false;
      resolveExit();
    });
  });
  nodes.push(node);
  say("cluster", `starting ${name} on ${HOST}:${nodePort} (pid ${child.pid})`);
  return node;
}

/** Waits until the node answers /health with 200; fails when it exits or takes too long. */
async function waitHealthy(node: RunningNode): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!stopping) {
    if (!node.running) throw new Error(`${node.name} exited while starting (see its output above)`);
    if (await healthy(node.port)) return;
    if (Date.now() > deadline) throw new Error(`${node.name} did not answer /health within ${START_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Starts HAProxy in the foreground with the configuration written for the nodes' local ports;
 * resolves once it answers /ready for them. Its log lines (the access log has no query string)
 * are prefixed with "haproxy".
 */
async function startHaproxy(): Promise<void> {
  writeFileSync(HAPROXY_CONFIG, haproxyConfig({
    nodes: nodes.map((n) => ({ name: n.name, address: `${HOST}:${n.port}` })),
    bind: `${HOST}:${config.frontPort}`,
    maxBodyBytes: 65536,
    maxconn: 4096,
    header: [
      "Written by `npm run cluster` (src/cluster/launch.ts) for this run's local ports, with the",
      "generator of deploy/haproxy.cfg (src/cluster/haproxy.ts). Rewritten on every start.",
    ],
  }));
  const child = spawn("haproxy", ["-db", "-f", HAPROXY_CONFIG], { stdio: ["ignore", "pipe", "pipe"], detached: true });
  createInterface({ input: child.stdout! }).on("line", (line) => say("haproxy", line));
  createInterface({ input: child.stderr! }).on("line", (line) => say("haproxy", line, process.stderr));
  const p = { child, running: true, exited: Promise.resolve() };
  p.exited = new Promise((resolveExit) => {
    child.on("exit", (code, signal) => {
      p.running = false;
      const how = signal ? `signal ${signal}` : `code ${code}`;
      if (stopping) say("cluster", `haproxy stopped (${how})`);
      else if (!up) say("cluster", `haproxy exited while the cluster was starting (${how})`, process.stderr);
      else {
        say("cluster", `haproxy exited unexpectedly (${how}): nothing reaches the nodes any more, stopping the cluster`, process.stderr);
        void stop(1);
      }
      resolveExit();
    });
    child.on("error", (error) => {
      say("cluster", `haproxy could not be started: ${error.message}`, process.stderr);
      p.running = false;
      resolveExit();
    });
  });
  proxy = p;
  say("cluster", `starting haproxy on ${HOST}:${config.frontPort} (pid ${child.pid}, configuration ${HAPROXY_CONFIG})`);
  const deadline = Date.now() + PROXY_START_TIMEOUT_MS;
  while (!stopping) {
    if (!p.running) throw new Error("haproxy exited while starting (see its output above)");
    if (await healthy(config.frontPort, "/ready")) return;
    if (Date.now() > deadline) throw new Error(`haproxy did not answer /ready within ${PROXY_START_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops the proxy, then every node (SIGTERM, SIGKILL after STOP_TIMEOUT_MS); exits with `code`. */
async function stop(code: number): Promise<never> {
  stopping = true;
  await frontDoor?.close().catch(() => undefined);
  if (proxy?.running) {
    proxy.child.kill("SIGTERM"); // HAProxy's hard stop: it closes every connection at once
    await Promise.race([proxy.exited, new Promise((r) => setTimeout(r, 5000))]);
    if (proxy.running) proxy.child.kill("SIGKILL");
  }
  const live = nodes.filter((n) => n.running);
  if (live.length > 0) say("cluster", `stopping ${live.map((n) => n.name).join(", ")}`);
  for (const n of live) n.child.kill("SIGTERM");
  let forced = false;
  const timeout = setTimeout(() => {
    forced = true;
    for (const n of nodes.filter((x) => x.running)) {
      say("cluster", `${n.name} did not stop within ${STOP_TIMEOUT_MS / 1000} s: killing it`, process.stderr);
      n.child.kill("SIGKILL");
    }
  }, STOP_TIMEOUT_MS);
  await Promise.all(nodes.map((n) => n.exited));
  clearTimeout(timeout);
  process.exit(forced && code === 0 ? 1 : code);
}

/**
 * A repeat within this long is the same request: under `npm run`, a Ctrl-C reaches the launcher
 * twice (from the terminal and forwarded by npm).
 */
const REPEAT_SIGNAL_MS = 2000;
let signalledAt = 0;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (signalledAt > 0) {
      if (Date.now() - signalledAt < REPEAT_SIGNAL_MS) return;
      say("cluster", `${signal} again: killing the nodes`, process.stderr);
      for (const n of nodes.filter((x) => x.running)) n.child.kill("SIGKILL");
      if (proxy?.running) proxy.child.kill("SIGKILL");
      process.exit(1);
    }
    signalledAt = Date.now();
    say("cluster", `${signal}: shutting the cluster down (again, a moment later, to force)`);
    void stop(0);
  });
}
// should the launcher itself fail, the nodes (in their own process groups) are not left behind
process.on("exit", () => {
  for (const n of nodes) if (n.running) n.child.kill("SIGTERM");
  if (proxy?.running) proxy.child.kill("SIGTERM");
});

async function main(): Promise<void> {
  const nodePorts = Array.from({ length: NODES }, (_, i) => config.basePort + i);
  try {
    for (const p of [...nodePorts, config.frontPort]) await checkPortFree(p);
  } catch (error) {
    say("cluster", (error as Error).message, process.stderr);
    process.exit(1);
  }
  try {
    await checkRedis(config.redisUrl);
  } catch (error) {
    say("cluster", `Redis does not answer at ${shown(config.redisUrl)}: ${(error as Error).message}`, process.stderr);
    process.exit(1);
  }
  try {
    await ensureDatabase(config.databaseUrl);
  } catch (error) {
    say("cluster", `Postgres: ${(error as Error).message} (${shown(config.databaseUrl)})`, process.stderr);
    process.exit(1);
  }
  mkdirSync(config.dataDir, { recursive: true });
  if (haproxy !== undefined) {
    say("cluster", `proxy: HAProxy ${haproxy} on ${HOST}:${config.frontPort}, for REST, matchmaking and WebSockets${config.proxy === "auto" ? " (HAVEN_CLUSTER_PROXY=front-door for the built-in front door)" : ""}`);
  } else {
    say("cluster", `proxy: the built-in front door on ${HOST}:${config.frontPort}, for REST and matchmaking (${config.proxy === "auto" ? "no haproxy binary on the PATH; Debian: apt-get install haproxy" : "HAVEN_CLUSTER_PROXY=front-door"})`);
  }

  try {
    await waitHealthy(startNode(1));
    if (stopping) return;
    await Promise.all(Array.from({ length: NODES - 1 }, (_, i) => waitHealthy(startNode(i + 2))));
    if (stopping) return;
    if (haproxy !== undefined) {
      await startHaproxy();
    } else {
      frontDoor = await startFrontDoor({
        port: config.frontPort,
        host: HOST,
        nodes: nodes.map((n) => ({ name: n.name, host: HOST, port: n.port })),
        log: (line) => say("front-door", line),
      });
    }
  } catch (error) {
    if (stopping) return;
    say("cluster", `the cluster could not start: ${(error as Error).message}`, process.stderr);
    await stop(1);
  }

  up = true;
  say("cluster", "up:");
  if (haproxy !== undefined) {
    say("cluster", `  haproxy      http://${HOST}:${config.frontPort}  (REST API, matchmaking and WebSockets; pid ${proxy!.child.pid})`);
    for (const n of nodes) say("cluster", `  ${n.name}       http://${HOST}:${n.port}  (pid ${n.child.pid}; through the proxy: http://${HOST}:${config.frontPort}${nodePath(n.name)}/)`);
  } else {
    say("cluster", `  front door   http://${HOST}:${frontDoor!.port}  (REST API and matchmaking; sockets go to the node in the seat reservation)`);
    for (const n of nodes) say("cluster", `  ${n.name}       http://${HOST}:${n.port}  (pid ${n.child.pid})`);
  }
  say("cluster", `  database ${shown(config.databaseUrl)}, redis ${shown(config.redisUrl)}, data ${config.dataDir}`);
  say("cluster", "Ctrl-C stops everything; kill -9 a node's pid to watch failover.");
}

await main();
