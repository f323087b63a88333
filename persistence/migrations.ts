import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import type { Logger } from "../src/log.ts";
import type { Sql } from "./client.ts";

/**
 * Haven's schema migrations: the numbered files of `persistence/migrations/`, applied in order at
 * start, each once, whichever node starts first.
 */

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

