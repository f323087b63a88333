import { readFileSync } from "node:fs";
import postgres from "postgres";
import type { Logger } from "../src/log.ts";

/**
 * The PostgreSQL client as Haven configures it, for an external server and the embedded one
 * alike. Settings follow docs/security (postgres section): `debug` off, so query parameters
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


/** The client-side deadline of every statement and transaction unless configured. */
export const DEFAULT_CALL_TIMEOUT_MS = 6000;

export function clientOptions(o: DatabaseOptions, log: Logger): postgres.Options<{}> {
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
export function describeUrl(url: string): string {
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
export function tlsFromUrl(url: string, log: Logger): { url: string; ssl?: postgres.Options<{}>["ssl"] } {
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

export async function connect(sql: Sql, target: string): Promise<void> {
  try {
    await sql`select 1`;
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => undefined);
    throw new Error(`cannot use PostgreSQL at ${target}: ${(error as Error).message}`, { cause: error });
  }
}
