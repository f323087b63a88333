import { setTimeout as sleep } from "node:timers/promises";
import { matchMaker } from "@colyseus/core";
import type { Membership } from "./membership.ts";
import { colyseus } from "../colyseus.ts";

/** In the message of an error from a room's onCreate when another live process holds its id. */
export const HELD_ELSEWHERE = "HELD_ELSEWHERE";

export function heldElsewhere(roomId: string): Error {
  return new Error(`${HELD_ELSEWHERE}: room ${roomId} is held by another live node`);
}

/** A room's entry in the matchmaker's driver. */
export type RoomListing = Awaited<ReturnType<typeof matchMaker.createRoom>>;

/** The listing Colyseus keeps for a room of this process (what it writes to the driver). */
export function listingOf(room: unknown): RoomListing {
  return colyseus.listing<RoomListing>(room);
}

const isHeldElsewhere = (error: unknown) => String((error as Error)?.message ?? error).includes(HELD_ELSEWHERE);

/**
 * The room `roomId`, wherever it lives, created (on the least busy live node) when no live node
 * holds it. Many callers on many nodes may ask at once: one room results, because a room claims
 * its id in its onCreate and every other attempt waits for the winner's listing.
 */
export async function ensureRoom(m: Membership, name: string, roomId: string, options: Record<string, unknown>, o: { timeoutMs?: number; fresh?: boolean } = {}): Promise<RoomListing> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) {
      if (Date.now() > deadline) throw new Error(`room ${roomId} cannot be reached or opened now`);
      await sleep(Math.min(25 * attempt, 250));
    }
    const local = matchMaker.getLocalRoomById(roomId);
    if (local) return listingOf(local);
    const listing = await matchMaker.driver.findOne({ roomId }) as RoomListing | undefined;
    if (listing) {
      if ((await m.alive([listing.processId])).has(listing.processId)) return listing;
      // its holder is not answering: wait until it is dead for sure before taking the room over
      if (!(await m.deadOnes([listing.processId])).has(listing.processId)) continue;
    } else {
      // no listing: after Redis lost its data, the holders are putting theirs back (a room
      // whose id was minted just now has no holder to wait for)
      if (!o.fresh && !m.settled()) continue;
      const holder = await m.holderOf(roomId);
      if (holder && holder !== m.processId && !(await m.deadOnes([holder])).has(holder)) continue;
    }
    try {
      return await matchMaker.createRoom(name, options);
    } catch (error) {
      // another node is creating it: its listing appears once its onCreate is done
      if (!isHeldElsewhere(error)) throw error;
    }
  }
}

/**
 * Where a new room goes: the live process with the fewest rooms (a duty room: this process). Colyseus's own choice reads a
 * process list that keeps a dead process until a request to it times out; this one asks
 * membership, so a room is never sent to a process that died.
 */
export function processSelector(m: () => Membership) {
  /** Rooms sent to each process in the last seconds, which its published room count does not show yet. */
  const recent = new Map<string, number>();
  const sent = (pid: string) => {
    recent.set(pid, (recent.get(pid) ?? 0) + 1);
    setTimeout(() => recent.set(pid, (recent.get(pid) ?? 1) - 1), 2000).unref();
    return pid;
  };
  return async (roomName: string): Promise<string> => {
    const me = matchMaker.processId;
    // a responder's duty room lives on the node its app called: its socket goes there
    if (roomName === "duty") return me;
    try {
      const members = await m().members();
      const live = await m().alive(members);
      live.add(me);
      const counts = new Map((await matchMaker.stats.fetchAll()).map((s) => [s.processId, s.roomCount]));
      counts.set(me, matchMaker.stats.local.roomCount);
      const load = (pid: string) => (counts.get(pid) ?? 0) + (recent.get(pid) ?? 0);
      return sent([...live].sort((a, b) => load(a) - load(b) || a.localeCompare(b))[0] ?? me);
    } catch {
      return me;
    }
  };
}
