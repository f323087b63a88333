import { describe, expect, it } from "vitest";
import { Room } from "@colyseus/core";
import { RedisPresence } from "@colyseus/redis-presence";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { schema, t } from "@colyseus/schema";
import { Redis } from "ioredis";
import { colyseus } from "../../src/colyseus.ts";

/**
 * Haven reaches past Colyseus's public API in one module (src/colyseus.ts). Each field it uses
 * is checked here against the installed versions: an upgrade that removes or renames one fails
 * this test, naming the field, instead of failing somewhere at run time.
 */
const Probe = schema({ n: t.number() }, "ColyseusInternalsProbe");

class ProbeRoom extends Room {
  onCreate(): void {
    this.setState(new Probe());
  }
}

describe("the Colyseus internals Haven uses still exist", () => {
  const room = new ProbeRoom();
  // what the matchmaker does when it creates a room: __init, then onCreate sets the state
  (room as unknown as { __init(): void }).__init();
  room.onCreate();
  const internals = room as unknown as Record<string, unknown>;

  it.each([["_onMessage"], ["_onJoin"], ["_reserveSeat"]])("Room.%s is a method", (field) => {
    expect(typeof internals[field], `Room.${field}`).toBe("function");
  });

  it.each([["_reservedSeats"], ["_reservedSeatTimeouts"]])("Room.%s is a record of seats", (field) => {
    expect(typeof internals[field], `Room.${field}`).toBe("object");
  });

  it("Room.patchRate and _simulationInterval can turn the tick off", () => {
    expect("patchRate" in room, "Room.patchRate").toBe(true);
    // Colyseus reads it (unset until a simulation interval is set) to decide whether to tick
    expect(Room.toString().includes("this._simulationInterval"), "Room._simulationInterval").toBe(true);
  });

  it("the schema serializer has its handshake, cache and encoder root with a change queue and refIds", () => {
    const serializer = colyseus.serializer(room);
    expect(serializer, "Room._serializer").toBeDefined();
    expect(typeof serializer.handshake, "SchemaSerializer.handshake").toBe("function");
    // Haven fills the cache with one handshake per state class; the serializer answers from it
    expect(serializer.handshake!.toString().includes("this.handshakeCache"), "SchemaSerializer.handshakeCache").toBe(true);
    const root = serializer.encoder.root;
    expect(typeof root.enqueueChangeTree, "Root.enqueueChangeTree").toBe("function");
    expect(root.changes, "Root.changes").toMatchObject({ nextPosition: expect.any(Number) });
    expect(colyseus.nextRefId(root), "Root.nextUniqueId").toEqual(expect.any(Number));
  });

  it("Room._listing is where Colyseus keeps the room's index entry", () => {
    // set by the matchmaker when the room is created; the field is declared on the class
    const source = Room.toString();
    expect(source.includes("_listing"), "Room._listing").toBe(true);
  });

  it("RedisPresence keeps its subscriber connection as `sub`", () => {
    const redis = new Redis({ lazyConnect: true });
    const presence = new RedisPresence(redis);
    try {
      expect(colyseus.presenceSubscriber(presence), "RedisPresence.sub").toBeInstanceOf(Redis);
    } finally {
      redis.disconnect();
      colyseus.presenceSubscriber(presence).disconnect();
    }
  });

  it("the ws transport keeps its server as `wss`, with the open sockets", () => {
    const transport = new WebSocketTransport({ noServer: true } as never);
    expect(colyseus.wsClients(transport), "WebSocketTransport.wss.clients").toBeInstanceOf(Set);
  });
});
