import type { Presence, Room } from "@colyseus/core";
import type { Redis } from "ioredis";

/**
 * Every place Haven reaches past Colyseus's public API, in one module, so that an upgrade of
 * @colyseus/core, @colyseus/schema, the transports or the Redis presence touches one file.
 * `test/unit/colyseus-internals.test.ts` checks each of these against the installed versions and
 * fails loudly, naming the field, when an upgrade removes or renames one.
 *
 * Room (@colyseus/core 0.18): `_onMessage` and `_onJoin` (Haven's message pipeline and join
 * bookkeeping wrap them), `_serializer` (the schema encoder and its handshake cache),
 * `_simulationInterval` and `patchRate` (no per-room tick), `_reservedSeats`,
 * `_reservedSeatTimeouts`, `_reserveSeat` and `_listing` (seats and the room's index entry, for a
 * room taken over by another node). Schema root (@colyseus/schema 5): `changes`,
 * `enqueueChangeTree` and `nextUniqueId` (patch on change, changes held back while committing).
 * RedisPresence: `sub` (its subscriber connection). Transports: uWS `_listeningSocket` and a
 * client's `ref.ws.context` / `searchParams` (the upgrade request, dropped after the join), ws `wss`.
 */

type Handler = (...args: any[]) => any;

/** The schema encoder's root, as patches.ts uses it. */
export interface SchemaRootInternals {
  changes: { next?: unknown; tail?: unknown; nextPosition: number };
  enqueueChangeTree(tree: unknown, existingNode?: unknown): void;
}

/** The schema serializer of a room. */
export interface SerializerInternals {
  handshake?(): Uint8Array;
  handshakeCache?: Uint8Array;
  encoder: { root: SchemaRootInternals };
}

interface RoomInternals {
  _onMessage: Handler;
  _onJoin: Handler;
  _serializer: SerializerInternals;
  _simulationInterval: unknown;
  patchRate: number | null;
  _reservedSeats: Record<string, [Record<string, unknown> | undefined, unknown, ...unknown[]]>;
  _reservedSeatTimeouts: Record<string, NodeJS.Timeout>;
  _reserveSeat: Handler;
  _listing?: { roomId?: string };
}

const room = (r: Room) => r as unknown as RoomInternals;

export const colyseus = {
  /** Replaces a room's handling of incoming frames; `original` is Colyseus's own. */
  wrapOnMessage(r: Room, wrap: (original: Handler) => Handler): void {
    room(r)._onMessage = wrap(room(r)._onMessage);
  },
  /** Replaces a room's join handling; `original` is Colyseus's own. */
  wrapOnJoin(r: Room, wrap: (original: Handler) => Handler): void {
    room(r)._onJoin = wrap(room(r)._onJoin);
  },
  /** Turns the room's own tick off: no patch interval, and a stand-in simulation interval. */
  disableTick(r: Room, standIn: unknown): void {
    room(r).patchRate = null;
    room(r)._simulationInterval = standIn;
  },
  serializer(r: Room): SerializerInternals {
    return room(r)._serializer;
  },
  /** The join options and auth data a seat was reserved with, by session id. */
  seat(r: Room, sessionId: string): { options?: Record<string, unknown>; auth?: unknown } | undefined {
    const seat = room(r)._reservedSeats?.[sessionId];
    return seat ? { options: seat[0], auth: seat[1] } : undefined;
  },
  /** The room takes no new seats and drops those not yet taken. */
  closeSeats(r: Room, taken: (sessionId: string) => boolean): void {
    const self = room(r);
    self._reserveSeat = async () => false;
    for (const sessionId of Object.keys(self._reservedSeats)) {
      if (taken(sessionId)) continue;
      clearTimeout(self._reservedSeatTimeouts[sessionId]);
      delete self._reservedSeatTimeouts[sessionId];
      delete self._reservedSeats[sessionId];
    }
  },
  /** The entry Colyseus keeps for a room of this process in the matchmaker's driver. */
  listing<T = { roomId?: string }>(r: unknown): T {
    return (r as RoomInternals)._listing as T;
  },
  /** The next refId the schema root gives out: trees with a refId at or above it are newer. */
  nextRefId(root: SchemaRootInternals): number {
    return (root as unknown as { nextUniqueId: number }).nextUniqueId;
  },
  /** RedisPresence's subscriber connection. */
  presenceSubscriber(p: Presence): Redis {
    return (p as unknown as { sub: Redis }).sub;
  },
  /** The uWS transport's listening socket (set by Haven's own listen). */
  listeningSocket(transport: unknown): unknown {
    return (transport as { _listeningSocket?: unknown })._listeningSocket;
  },
  setListeningSocket(transport: unknown, socket: unknown): void {
    (transport as { _listeningSocket?: unknown })._listeningSocket = socket;
  },
  /**
   * Once a socket has joined (or failed to), the request it was upgraded from is not needed again:
   * uWebSockets.js keeps it on the socket for life (the headers, parsed into a Headers object, the
   * token, the query), a few KB per socket. Reconnects and rejoins come with a new upgrade.
   */
  forgetUpgrade(client: { ref?: unknown }): void {
    const ws = (client.ref as { ws?: Record<string, unknown> } | undefined)?.ws;
    if (ws && typeof ws === "object" && "context" in ws) {
      ws.context = undefined;
      ws.searchParams = undefined;
    }
  },
  /** The ws transport's open sockets. */
  wsClients(transport: unknown): Set<{ bufferedAmount: number; terminate(): void }> {
    return (transport as { wss: { clients: Set<{ bufferedAmount: number; terminate(): void }> } }).wss.clients;
  },
};
