/**
 * Databases of the benchmark on the machine's PostgreSQL: one pristine base per server tree
 * (migrated by the server itself, hospitals seeded), copied into a fresh database for every step.
 */
import { randomUUID } from "node:crypto";
import postgres from "postgres";

export const PG_ADMIN_URL = process.env.HAVEN_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export function dbUrl(name: string): string {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export function newDbName(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

async function admin<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** Creates a database, empty or as a copy of `template` (which must have no open connection). */
export async function createDb(name: string, template?: string): Promise<string> {
  if (!NAME.test(name) || (template && !NAME.test(template))) throw new Error(`bad database name ${name}`);
  await admin(async (sql) => {
    // names are generated here, never user data
    await sql.unsafe(template ? `create database ${name} template ${template}` : `create database ${name}`);
  });
  return dbUrl(name);
}

export async function dropDb(name: string): Promise<void> {
  if (!NAME.test(name)) return;
  await admin((sql) => sql.unsafe(`drop database if exists ${name} with (force)`)).catch(() => undefined);
}

/** Databases a killed earlier run left behind (their names carry the prefix). */
export async function dropLeftovers(prefix: string): Promise<string[]> {
  const names = await admin((sql) => sql<{ datname: string }[]>`select datname from pg_database where datname like ${prefix + "%"}`);
  for (const { datname } of names) await dropDb(datname);
  return names.map((n) => n.datname);
}

export async function withDb<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export async function pgVersion(): Promise<string> {
  return admin(async (sql) => (await sql<{ v: string }[]>`select current_setting('server_version') as v`)[0].v);
}
