import { LocalDriver } from "@colyseus/core";
import { describe, expect, it } from "vitest";
import { IndexedLocalDriver } from "../../src/cluster/local-driver.ts";

const listing = (roomId: string, name: string, extra: Record<string, unknown> = {}) =>
  ({ roomId, name, processId: "p1", clients: 0, maxClients: 10, locked: false, private: false, metadata: { kind: name }, ...extra }) as never;

describe("the single-process room driver", () => {
  it("finds a room by id (and other conditions) as Colyseus's own driver does, from an index", async () => {
    const ours = new IndexedLocalDriver();
    const theirs = new LocalDriver();
    for (const d of [ours, theirs]) {
      await d.insert(listing("e-1", "emergency"));
      d.persist(listing("h-1", "hospital", { locked: true }), true);
      await d.insert(listing("e-2", "emergency"));
    }
    const asks: Record<string, unknown>[] = [
      { roomId: "e-1" }, { roomId: "e-2", name: "emergency" }, { roomId: "e-2", name: "hospital" }, { roomId: "h-1", locked: true },
      { roomId: "h-1", locked: false }, { roomId: "h-1", kind: "hospital" }, { roomId: "h-1", kind: "emergency" }, { roomId: "h-1", nothing: 1 },
      { roomId: "missing" }, { name: "emergency" },
    ];
    for (const conditions of asks) {
      expect((await ours.findOne(conditions as never))?.roomId, JSON.stringify(conditions)).toBe((await theirs.findOne(conditions as never))?.roomId);
    }
    // updates are seen (the index holds the same listing), removals and clearing too
    ours.update(await ours.findOne({ roomId: "e-1" } as never) as never, { $set: { locked: true } } as never);
    expect((await ours.findOne({ roomId: "e-1", locked: true } as never))?.roomId).toBe("e-1");
    expect(ours.remove("e-1")).toBe(true);
    expect(await ours.findOne({ roomId: "e-1" } as never)).toBeUndefined();
    expect(ours.has("e-1")).toBe(false);
    ours.clear();
    expect(await ours.findOne({ roomId: "e-2" } as never)).toBeUndefined();
  });
});
