/**
 * The wire formats the load generator speaks without any client library: Colyseus 0.18 frames
 * (as @colyseus/core and @colyseus/sdk write them) and Engine.IO v4 / Socket.IO v5 packets.
 *
 * Colyseus: the first byte of every frame is the protocol code (its low 5 bits; the high 3 bits
 * are modifier flags): 10 JOIN_ROOM (the client answers the server's JOIN_ROOM with the single
 * byte 10, and the server then sends the full state), 11 ERROR, 12 LEAVE_ROOM, 13 ROOM_DATA
 * (then the message type as a msgpack string, then the msgpack payload), 14 ROOM_STATE (full
 * state), 15 ROOM_STATE_PATCH.
 */
import http from "node:http";
import { Packr } from "msgpackr";

export const JOIN_ROOM = 10;
export const ERROR = 11;
export const LEAVE_ROOM = 12;
export const ROOM_DATA = 13;
export const ROOM_STATE = 14;
export const ROOM_STATE_PATCH = 15;
export const CODE_MASK = 0x1f;

export const JOIN_ACK = Buffer.from([JOIN_ROOM]);
export const LEAVE = Buffer.from([LEAVE_ROOM]);

/** The header of a ROOM_DATA frame of type "position": the code and the type as a msgpack fixstr. */
const POSITION_HEADER = Buffer.from([ROOM_DATA, 0xa0 | "position".length, ...Buffer.from("position")]);
/**
 * The payload as the SDK packs it (`new Packr().pack({ lat, lng })`, msgpackr with records): a
 * record definition (fixext1 type 0x72, id 0x40, keys ["lat", "lng"]) followed by the two values
 * as float64 big-endian (0xcb).
 */
const RECORD_HEAD = Buffer.from([0xd4, 0x72, 0x40, 0x92, 0xa3, ...Buffer.from("lat"), 0xa3, ...Buffer.from("lng")]);
const LAT_AT = POSITION_HEADER.length + RECORD_HEAD.length + 1;
const LNG_AT = LAT_AT + 8 + 1;
const POSITION_TEMPLATE = Buffer.concat([POSITION_HEADER, RECORD_HEAD, Buffer.from([0xcb]), Buffer.alloc(8), Buffer.from([0xcb]), Buffer.alloc(8)]);

/** A ROOM_DATA frame `position` with `{ lat, lng }`, byte for byte what `room.send("position", { lat, lng })` of @colyseus/sdk 0.18 sends. */
export function positionFrame(lat: number, lng: number): Buffer {
  const b = Buffer.from(POSITION_TEMPLATE);
  b.writeDoubleBE(lat, LAT_AT);
  b.writeDoubleBE(lng, LNG_AT);
  return b;
}

/** Checks the hand-built frame against the SDK's encoding (its msgpackr Packr with default options). */
export function checkPositionFrame(): void {
  const lat = -1.2620001234567;
  const lng = 36.8230007654321;
  const expected = Buffer.concat([POSITION_HEADER, new Packr().pack({ lat, lng })]);
  const built = positionFrame(lat, lng);
  if (!expected.equals(built)) throw new Error(`position frame differs from the SDK's: ${built.toString("hex")} vs ${expected.toString("hex")}`);
}

/** The bytes a patch carries for a coordinate: float64 little-endian (Haven's schema today). */
export function float64LE(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value, 0);
  return b;
}

/** The bytes of a coordinate as int32 degrees × 10⁷ little-endian (should the schema move to it). */
export function int32E7LE(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(Math.round(value * 1e7), 0);
  return b;
}

/** Bytes of a WebSocket frame header from server to client (no mask) for a payload of `n` bytes. */
export function wsHeaderBytes(n: number): number {
  return n < 126 ? 2 : n < 65536 ? 4 : 10;
}

export interface SeatReservation {
  name: string;
  sessionId: string;
  roomId: string;
  processId: string;
  publicAddress?: string;
}

/** POST /matchmake/joinById/{roomId}, as the SDK sends it: JSON `{}` and the token as a bearer. */
export function reserveSeat(agent: http.Agent, base: URL, roomId: string, token: string, timeoutMs = 30_000): Promise<SeatReservation> {
  return new Promise((resolve, reject) => {
    const body = "{}";
    const req = http.request({
      agent, host: base.hostname, port: base.port, method: "POST", path: `/matchmake/joinById/${encodeURIComponent(roomId)}`,
      headers: { accept: "application/json", "content-type": "application/json", authorization: `Bearer ${token}`, "content-length": String(body.length) },
      timeout: timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) return reject(Object.assign(new Error(`matchmake ${res.statusCode}: ${text.slice(0, 200)}`), { status: res.statusCode }));
        try {
          resolve(JSON.parse(text) as SeatReservation);
        } catch {
          reject(new Error(`matchmake answered ${text.slice(0, 200)}`));
        }
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("matchmake timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

/** The socket URL the SDK builds from a seat reservation (buildEndpoint), with the token as `_authToken`. */
export function roomSocketUrl(base: URL, seat: SeatReservation, token: string): string {
  const host = seat.publicAddress ?? base.host;
  return `ws://${host}/${seat.processId}/${seat.roomId}?sessionId=${seat.sessionId}&_authToken=${token}`;
}

// ------------------------------------------------------------------ Engine.IO v4 / Socket.IO v5

/** The Engine.IO WebSocket endpoint (no polling first, as a client with transports: ["websocket"]). */
export function engineIoUrl(base: URL): string {
  return `ws://${base.host}/socket.io/?EIO=4&transport=websocket`;
}

/** Engine.IO packet types (first character). */
export const EIO_OPEN = "0";
export const EIO_CLOSE = "1";
export const EIO_PING = "2";
export const EIO_PONG = "3";
export const EIO_MESSAGE = "4";
/** Socket.IO packet types (second character, after the Engine.IO "4"). */
export const SIO_CONNECT = "0";
export const SIO_EVENT = "2";
export const SIO_ACK = "3";
export const SIO_CONNECT_ERROR = "4";
