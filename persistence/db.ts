import postgres from "postgres";
import type { Logger } from "../src/log.ts";
import { clientOptions, connect, describeUrl, tlsFromUrl, DEFAULT_CALL_TIMEOUT_MS, type Database, type DatabaseOptions } from "./client.ts";
import { withDeadline } from "./deadline.ts";
import { openEmbedded } from "./embedded.ts";

/**
 * Haven's PostgreSQL connection: an external server given by a URL, or (without one) an embedded
 * PostgreSQL kept in a data directory (embedded.ts). Every statement the stores run is bounded by
 * the call deadline (deadline.ts); migrations (migrations.ts) run on the pool without it.
 */

export type { Sql, DatabaseOptions, Database } from "./client.ts";
export { DEFAULT_CALL_TIMEOUT_MS } from "./client.ts";
export { migrate, MIGRATION_LOCK_KEY } from "./migrations.ts";

export async function openDatabase(o: DatabaseOptions, log: Logger): Promise<Database> {
  const db = o.url === undefined ? await openEmbedded(o, log) : await openExternal(o.url, o, log);
  const ms = o.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  return { ...db, admin: db.sql, sql: withDeadline(db.sql, ms, (message) => log.error(message)) };
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
