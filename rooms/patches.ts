import type { Room } from "@colyseus/core";
import { $refId } from "@colyseus/schema";
import { colyseus } from "../src/colyseus.ts";

/**
 * Patches are sent when something changed, not on a fixed tick.
 *
 * A room whose state changes (a handled message, a timer, a call from another actor) asks for a
 * patch; every room that asked is patched once, together, on the next turn of the event loop
 * (`setImmediate`), after all the socket input of the current turn has been handled. So a room
 * that changes nothing costs nothing, an update goes out in the same turn it arrived in, and the
 * busier the server, the more changes each patch carries (a turn gathers more input).
 */
const queued: PatchedRoom[] = [];
let armed = false;

interface PatchedRoom extends Pick<Room, "broadcastPatch"> {
  /** Set while the room is in the queue. */
  [QUEUED]?: boolean;
}

const QUEUED = Symbol("haven.patchQueued");

/** Asks for a patch of `room` on the next event-loop turn (once, however often it is asked). */
export function requestPatch(room: PatchedRoom): void {
  if (room[QUEUED]) return;
  room[QUEUED] = true;
  queued.push(room);
  if (!armed) {
    armed = true;
    setImmediate(flushPatches);
  }
}

/** Patches every room that asked, in the order they asked. */
function flushPatches(): void {
  armed = false;
  // rooms asking again while this runs (a patch that triggers a change) wait for the next turn
  const rooms = queued.splice(0, queued.length);
  for (const room of rooms) {
    room[QUEUED] = false;
    try {
      room.broadcastPatch();
    } catch (error) {
      onRoomError(error, "patch");
    }
  }
}

let onRoomError: (error: unknown, where: "patch" | "timer") => void = (error) => { console.error(error); };

/** Where a failing patch or room timer is reported (the server's logger); it never stops the process. */
export function setRoomErrorHandler(handler: (error: unknown, where: "patch" | "timer") => void): void {
  onRoomError = handler;
}

/** A change tree of the state going from clean to dirty passes through here. */
interface StateRoot {
  enqueueChangeTree(tree: { changesNode?: unknown }, existingNode?: unknown): void;
}

/**
 * Makes every change of the room's state ask for a patch: the state's root change queue is
 * watched where a change tree first becomes dirty (once per tree per patch, not per field).
 */
export function patchOnChange(room: PatchedRoom, root: StateRoot): void {
  const enqueue = root.enqueueChangeTree;
  root.enqueueChangeTree = function (tree, existingNode = tree.changesNode) {
    if (existingNode === undefined) requestPatch(room);
    return enqueue.call(this, tree, existingNode);
  };
}

/** A node of the encoder root's queue of dirty change trees (a doubly linked list). */
interface ChangeNode {
  changeTree: { ref: { [$refId]?: number } };
  next?: ChangeNode;
  prev?: ChangeNode;
  position: number;
}

/** The parts of the schema encoder's root that holding changes back reaches into. */
export interface ChangeRoot extends StateRoot {
  changes: { next?: ChangeNode; tail?: ChangeNode; nextPosition: number };
}

/**
 * Changes held back from patches while they are being committed, so that nobody sees what may be
 * undone, while every other change of the room (positions) keeps going out.
 *
 * Created just before a change is made, on a queue with nothing dirty in it; `capture()` after
 * the change marks every tree it dirtied as held. A tree made after creation is held too (a
 * client must never get changes of an object whose addition it has not been sent), and so is a
 * held tree's later change. `patchWithout` runs a patch with the held trees taken out of the
 * queue and puts them back after it, in their order, to go out once the hold ends.
 */
export class HeldChanges {
  private readonly trees = new Set<object>();
  private readonly firstNewRefId: number;
  private readonly root: ChangeRoot;

  constructor(root: ChangeRoot) {
    this.root = root;
    this.firstNewRefId = colyseus.nextRefId(root as never);
  }

  /** Holds every tree dirty now. */
  capture(): void {
    for (let node = this.root.changes.next; node; node = node.next) this.trees.add(node.changeTree);
  }

  private holds(tree: ChangeNode["changeTree"]): boolean {
    return this.trees.has(tree) || (tree.ref[$refId] ?? Infinity) >= this.firstNewRefId;
  }

  patchWithout<T>(patch: () => T): T {
    const list = this.root.changes;
    const held: ChangeNode[] = [];
    let node = list.next;
    list.next = list.tail = undefined;
    while (node) {
      const next = node.next;
      node.prev = node.next = undefined;
      if (this.holds(node.changeTree)) held.push(node);
      else append(list, node);
      node = next;
    }
    try {
      return patch();
    } finally {
      for (const h of held) append(list, h);
    }
  }
}

function append(list: ChangeRoot["changes"], node: ChangeNode): void {
  if (!list.tail) {
    list.nextPosition = 0;
    list.next = node;
  } else {
    list.tail.next = node;
    node.prev = list.tail;
  }
  list.tail = node;
  node.position = list.nextPosition++;
}

/** A scheduled callback of a room; `clear()` cancels it. */
export interface RoomTimer {
  clear(): void;
  readonly active: boolean;
}

/**
 * The room clock on the event loop's own timers. Colyseus's clock only fires its timers when the
 * room ticks, which would need a tick per room; these fire on their own, and a room with nothing
 * scheduled costs nothing. It keeps the parts of the clock interface Colyseus itself reads
 * (`currentTime`, `elapsedTime`, `deltaTime`, `tick`, `start`, `stop`, `clear`).
 */
export class EventClock {
  private readonly timers = new Set<NodeTimer>();
  private readonly startedAt = performance.now();
  currentTime = this.startedAt;
  deltaTime = 0;
  running = false;

  get elapsedTime(): number {
    return this.currentTime - this.startedAt;
  }

  start(): void {
    this.running = true;
    this.tick();
  }

  stop(): void {
    this.running = false;
  }

  tick(): void {
    const now = performance.now();
    this.deltaTime = now - this.currentTime;
    this.currentTime = now;
  }

  setTimeout(handler: (...args: any[]) => void, ms: number, ...args: any[]): RoomTimer {
    return this.schedule(handler, ms, args, false);
  }

  setInterval(handler: (...args: any[]) => void, ms: number, ...args: any[]): RoomTimer {
    return this.schedule(handler, ms, args, true);
  }

  /** Cancels everything scheduled (the room is going away). */
  clear(): void {
    for (const t of [...this.timers]) t.clear();
  }

  private schedule(handler: (...args: any[]) => void, ms: number, args: any[], repeat: boolean): RoomTimer {
    const timers = this.timers;
    const fire = () => {
      if (!repeat) timer.clear();
      this.tick();
      try {
        handler(...args);
      } catch (error) {
        onRoomError(error, "timer");
      }
    };
    const handle = repeat ? setInterval(fire, ms) : setTimeout(fire, ms);
    const timer: NodeTimer = {
      active: true,
      clear() {
        if (!timer.active) return;
        timer.active = false;
        if (repeat) clearInterval(handle); else clearTimeout(handle);
        timers.delete(timer);
      },
    };
    timers.add(timer);
    return timer;
  }
}

interface NodeTimer extends RoomTimer {
  active: boolean;
}
