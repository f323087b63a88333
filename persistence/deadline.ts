import type { Sql } from "./client.ts";

/**
 * A client-side deadline on every database call. The server's `statement_timeout` cancels a slow
 * statement, but a database that hangs (a network that holds every byte, a frozen host) never
 * answers at all: without a deadline here, a caller would wait for as long as the hang lasts.
 *
 * A statement or a transaction that passes its deadline is answered with `DatabaseDeadlineError`
 * (code `DEADLINE_EXCEEDED`, which `isDatabaseUnavailable` counts as "unavailable, retry") and
 * abandoned: a statement is cancelled; a transaction that has not committed yet rolls back at its
 * next step, however late that is, so a change reported as not recorded is never recorded later.
 * The one window that stays open is a COMMIT already sent when the deadline passes: it is
 * reported in the log if it lands after all.
 */
export class DatabaseDeadlineError extends Error {
  readonly code = "DEADLINE_EXCEEDED";
  constructor(ms: number) {
    super(`the database did not answer within ${ms} ms`);
    this.name = "DatabaseDeadlineError";
  }
}

type Warn = (message: string) => void;

/** `sql` whose tagged-template statements and `begin` transactions give up after `ms`. */
export function withDeadline(sql: Sql, ms: number, warn: Warn = () => {}): Sql {
  const begin = (fn: (tx: Sql) => Promise<unknown>) => transaction(sql, fn, ms, warn);
  return new Proxy(sql, {
    apply(target, self, args: unknown[]) {
      const query = Reflect.apply(target, self, args) as unknown;
      // only a tagged template is a statement; `sql(value)` builds a fragment or identifier
      return isTemplate(args[0]) ? statement(query as CancellableQuery, ms) : query;
    },
    get(target, key, receiver) {
      if (key === "begin") return begin;
      return Reflect.get(target, key, receiver);
    },
  });
}

interface CancellableQuery extends PromiseLike<unknown> {
  cancel(): unknown;
}

function isTemplate(value: unknown): value is TemplateStringsArray {
  return Array.isArray(value) && Object.prototype.hasOwnProperty.call(value, "raw");
}

function statement(query: CancellableQuery, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new DatabaseDeadlineError(ms));
      try { query.cancel(); } catch { /* not started yet, or already done */ }
    }, ms);
    query.then(
      (value) => { clearTimeout(timer); resolve(value); },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}

function transaction(sql: Sql, fn: (tx: Sql) => Promise<unknown>, ms: number, warn: Warn): Promise<unknown> {
  let abandoned = false;
  const check = () => {
    if (abandoned) throw new DatabaseDeadlineError(ms);
  };
  const work = sql.begin(async (tx) => {
    check();
    const result = await fn(tx as unknown as Sql);
    check(); // past the deadline: roll back instead of committing
    return result;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      abandoned = true;
      reject(new DatabaseDeadlineError(ms));
    }, ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        if (abandoned) warn(`a transaction answered as timed out after ${ms} ms committed after all`);
        resolve(value);
      },
      (error: unknown) => { clearTimeout(timer); reject(error); },
    );
  });
}
