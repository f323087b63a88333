import { describe, expect, it } from "vitest";
import { Transactions, type TransactionHost } from "../../rooms/transactions.ts";
import { FakeClock, settle } from "./fakes.ts";

/** A committing "room" with nothing behind it: its state is a list, its store a list of writes. */
function harness(o: { deadlineMs?: number; perSender?: { limit: number; windowMs: number } } = {}) {
  const clock = new FakeClock();
  const state = { items: [] as string[], seq: 0 };
  const log: string[] = [];
  let write: (signal: AbortSignal) => Promise<boolean> = async () => true;
  const host: TransactionHost<{ items: string[]; seq: number }> = {
    flushPending: () => log.push("flush"),
    hold: () => ({ capture: () => log.push("hold"), patchWithout: (patch) => patch() }),
    release: () => log.push("release"),
    mark: () => ({ items: [...state.items], seq: state.seq }),
    movedFrom: (m) => m.seq !== state.seq || m.items.join() !== state.items.join(),
    undo: (m, keepSequence) => {
      state.items = [...m.items];
      if (!keepSequence) state.seq = m.seq;
      log.push("undo");
    },
    prepare: (m) => state.seq === m.seq ? undefined : {
      write: async (signal) => { log.push("write"); return write(signal); },
      written: () => log.push("written"),
    },
    commitFailed: (error) => new Error(`retry: ${(error as Error).message}`),
  };
  const tx = new Transactions(host, { deadlineMs: o.deadlineMs ?? 6000, clock, perSender: o.perSender });
  const add = (item: string) => () => {
    state.items.push(item);
    state.seq++;
    tx.effect(() => log.push(`effect ${item}`));
    return { item };
  };
  return { tx, state, log, clock, add, setWrite: (w: typeof write) => { write = w; } };
}

describe("transaction engine", () => {
  it("commits a change before it is acknowledged, holding it back from patches, and runs its effects after the commit", async () => {
    const h = harness();
    expect(await h.tx.run("alice", "k1", h.add("a"))).toEqual({ item: "a" });
    expect(h.log).toEqual(["flush", "hold", "write", "written", "release", "effect a"]);
    expect(h.state.items).toEqual(["a"]);
    expect(h.tx.isCommitting()).toBe(false);
  });

  it("runs an effect at once outside a change", () => {
    const h = harness();
    let ran = false;
    h.tx.effect(() => { ran = true; });
    expect(ran).toBe(true);
    expect(h.tx.inChange).toBe(false);
  });

  it("commits nothing for a change that changes nothing", async () => {
    const h = harness();
    expect(await h.tx.run("alice", undefined, () => ({ same: true }))).toEqual({ same: true });
    expect(h.log).not.toContain("write");
  });

  it("undoes a refused change and commits nothing", async () => {
    const h = harness();
    await expect(h.tx.run("alice", undefined, () => { h.add("x")(); throw new Error("refused"); })).rejects.toThrow("refused");
    expect(h.state).toEqual({ items: [], seq: 0 });
    expect(h.log).not.toContain("write");
    expect(h.log).not.toContain("effect x");
  });

  it("undoes a change whose commit failed, keeps its sequence numbers spent, runs no effect and asks for a retry", async () => {
    const h = harness();
    h.setWrite(async () => { throw new Error("connection lost"); });
    await expect(h.tx.run("alice", "k", h.add("a"))).rejects.toThrow("retry: connection lost");
    expect(h.state).toEqual({ items: [], seq: 1 });
    expect(h.log).not.toContain("effect a");
    // the same key is not remembered: a retry runs again
    h.setWrite(async () => true);
    expect(await h.tx.run("alice", "k", h.add("a"))).toEqual({ item: "a" });
  });

  it("answers a retry (same sender, same key) with the first answer marked duplicate, changing nothing", async () => {
    const h = harness();
    await h.tx.run("alice", "k1", h.add("a"));
    expect(await h.tx.run("alice", "k1", h.add("b"))).toEqual({ item: "a", duplicate: true });
    expect(h.state.items).toEqual(["a"]);
    // another sender's key is another change
    expect(await h.tx.run("bob", "k1", h.add("b"))).toEqual({ item: "b" });
  });

  it("keeps the recorded outcome when the database saw the change before (a retry after a restart)", async () => {
    const h = harness();
    h.setWrite(async () => false);
    expect(await h.tx.run("alice", "k1", h.add("a"))).toEqual({ item: "a", duplicate: true });
    expect(h.state).toEqual({ items: [], seq: 0 });
    expect(h.log).not.toContain("effect a");
  });

  it("abandons a commit past the deadline: the write is aborted, the change undone, the sender told to retry", async () => {
    const h = harness({ deadlineMs: 1000 });
    let aborted = false;
    h.setWrite((signal) => new Promise(() => signal.addEventListener("abort", () => { aborted = true; })));
    const answer = h.tx.run("alice", undefined, h.add("a"));
    await settle();
    expect(h.tx.isCommitting()).toBe(true);
    h.clock.advance(1000);
    await expect(answer).rejects.toThrow("retry: the database did not answer in time");
    expect(aborted).toBe(true);
    expect(h.state.items).toEqual([]);
    expect(h.tx.isCommitting()).toBe(false);
  });

  it("runs changes one at a time, in order, each answering within its deadline however long it waited", async () => {
    const h = harness({ deadlineMs: 1000 });
    let release!: () => void;
    h.setWrite(() => new Promise<boolean>((resolve) => { release = () => resolve(true); }));
    const first = h.tx.run("alice", undefined, h.add("a"));
    const second = h.tx.run("bob", undefined, h.add("b"));
    await settle();
    expect(h.state.items).toEqual(["a"]); // the second waits for its turn
    h.clock.advance(1000);
    await expect(first).rejects.toThrow("did not answer in time");
    await expect(second).rejects.toThrow("could not be recorded in time");
    release();
  });

  it("bounds each sender's rate of changes and the queue of waiting changes", async () => {
    const h = harness({ perSender: { limit: 2, windowMs: 10_000 } });
    await h.tx.run("alice", undefined, h.add("a"));
    await h.tx.run("alice", undefined, h.add("b"));
    await expect(h.tx.run("alice", undefined, h.add("c"))).rejects.toMatchObject({ code: "RATE_LIMITED" });
    h.clock.advance(10_000);
    await h.tx.run("alice", undefined, h.add("c"));

    const q = harness();
    q.setWrite(() => new Promise(() => {}));
    const waiting = Array.from({ length: 17 }, (_, i) => q.tx.run(null, undefined, q.add(`s${i}`)).catch(() => undefined));
    await expect(q.tx.run(null, undefined, q.add("over"))).rejects.toMatchObject({ code: "UNAVAILABLE" });
    q.clock.advance(6000);
    await Promise.all(waiting);
  });
});
