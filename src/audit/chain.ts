import { createHash } from "node:crypto";

/**
 * Hash-chained audit records for every read or write of health data (table `audit_log`). Each
 * record's hash is sha256(previous hash ‖ canonical encoding of the record), so editing, inserting,
 * reordering or deleting a record in the middle of the log breaks the chain at that point.
 *
 * What a chain alone cannot show, and what the storage step must add:
 * - a truncated tail (the last records deleted) leaves a valid shorter chain: publish or log the
 *   head hash elsewhere from time to time (an anchor) and compare;
 * - the hash is unkeyed, so someone able to rewrite the whole table can recompute every hash after
 *   an edit: the application role may only INSERT into audit_log, and anchors catch a rewrite.
 *
 * An entry records who did what to whose data, never the data: `fields` holds field names only.
 * `reason` is free text typed by a break-glass user; keep it short and free of clinical details.
 * The server sequence number (`seq`) is the row order and is not part of the hashed entry.
 */

export interface AuditEntry {
  at: Date;
  /** Token subject of the actor. */
  actor: string;
  actorRole: string;
  /** e.g. "medical_profile.read", "medical_profile.write", "medical_profile.erase". */
  action: string;
  /** The patient pseudonym whose data was touched. */
  subject?: string;
  emergencyId?: string;
  /** Names of the health-data fields read or written — never their values. */
  fields?: string[];
  breakGlass: boolean;
  reason?: string;
  /** The server node that handled the request. */
  node?: string;
  outcome: "ok" | "denied" | "error";
}

const VERSION = "haven:audit:v1";
const HASH_BYTES = 32;
const GENESIS = Buffer.alloc(HASH_BYTES);

/**
 * The canonical encoding of an entry: a JSON array in a fixed field order, absent optional values
 * as null, the time as ISO 8601 UTC with milliseconds. JSON string escaping makes it unambiguous
 * (no separator can be forged by a value), and it does not depend on object key order.
 */
export function canonicalEntry(entry: AuditEntry): string {
  if (!(entry.at instanceof Date) || Number.isNaN(entry.at.getTime())) throw new TypeError("audit entry needs a valid time");
  if (entry.fields !== undefined && !entry.fields.every((f) => typeof f === "string")) {
    throw new TypeError("audit fields are field names");
  }
  return JSON.stringify([
    VERSION,
    entry.at.toISOString(),
    entry.actor,
    entry.actorRole,
    entry.action,
    entry.subject ?? null,
    entry.emergencyId ?? null,
    entry.fields ?? null,
    entry.breakGlass === true,
    entry.reason ?? null,
    entry.node ?? null,
    entry.outcome,
  ]);
}

/** sha256(prev ‖ canonical(entry)); the first record of a chain has `prev = null`, hashed as 32 zero bytes. */
export function chainHash(prev: Buffer | null, entry: AuditEntry): Buffer {
  if (prev !== null && (!Buffer.isBuffer(prev) || prev.length !== HASH_BYTES)) throw new TypeError("a previous hash is 32 bytes");
  return createHash("sha256")
    .update(prev ?? GENESIS)
    .update(canonicalEntry(entry), "utf8")
    .digest();
}

export interface ChainRow {
  prevHash: Buffer | null;
  hash: Buffer;
  entry: AuditEntry;
}

/**
 * Checks rows in sequence order. Row i is broken when its `prevHash` is not the hash of row i-1
 * (for the first row: `anchor`, by default null = the start of the log) or when its `hash` is not
 * `chainHash(prevHash, entry)`. `brokenAt` is the index of the first broken row: an edited row is
 * reported itself (or, if its hash was recomputed, the row after it); a deleted row is reported as
 * the row that now follows the gap. To verify a window in the middle of the log, pass the hash of
 * the row just before it as `anchor`.
 */
export function verifyChain(rows: ChainRow[], anchor: Buffer | null = null): { ok: true } | { ok: false; brokenAt: number } {
  let expectedPrev = anchor;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    const linked = expectedPrev === null ? row.prevHash === null : row.prevHash !== null && expectedPrev.equals(row.prevHash);
    if (!linked) return { ok: false, brokenAt: i };
    let recomputed: Buffer;
    try {
      recomputed = chainHash(row.prevHash, row.entry);
    } catch {
      return { ok: false, brokenAt: i };
    }
    if (!Buffer.isBuffer(row.hash) || !recomputed.equals(row.hash)) return { ok: false, brokenAt: i };
    expectedPrev = row.hash;
  }
  return { ok: true };
}
