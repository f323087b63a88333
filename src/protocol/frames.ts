import { decode, type Iterator } from "@colyseus/schema";
import { Protocol, PROTOCOL_CODE_MASK } from "@colyseus/shared-types";
import { Unpackr } from "msgpackr";
import { HavenError } from "./errors.ts";

/**
 * Decoding of client frames that carry a message (ROOM_DATA and ROOM_REQUEST), done here rather
 * than by Colyseus's global msgpack `unpack`, which accepts records, cycles, Sets and RegExps, and
 * whose failures close the socket instead of answering. Everything about a frame is checked:
 * its size, its header, the message type and the msgpack body, all inside try/catch.
 */
const UNPACK_OPTIONS = { useRecords: false, mapsAsObjects: true, structuredClone: false, moreTypes: false, int64AsType: "number" } as const;
const unpackr = new Unpackr({ ...UNPACK_OPTIONS });

const MAX_TYPE_LENGTH = 40;

/**
 * Message bodies are copied here and decoded from it: the unpacker keeps a DataView on its source,
 * so a body decoded where it arrived would cost a view (and a new Buffer for the slice) per message.
 * Decoding is synchronous and the decoded values are copies, so one buffer serves every frame.
 */
const SCRATCH_BYTES = 16 * 1024;
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
const scratchRange = { start: 0, end: 0 };

/**
 * The SDK packs every message with msgpackr's records: each body starts with the definition of its
 * record (fixext1, type "r", id 0x40, the keys as an array) and then the values. Decoding a
 * definition builds the key list and a reader for it, every message. A definition seen before
 * (byte for byte) is decoded instead by an unpacker that has it as a shared structure, from the
 * values on: its reader is built once. Only short definitions of plain field names are kept,
 * at most `MAX_KNOWN_RECORDS` of them (the first seen); anything else takes the general path.
 */
interface KnownRecord { definition: Buffer; unpackr: Unpackr }
const knownRecords: KnownRecord[] = [];
const MAX_KNOWN_RECORDS = 64;
const RECORD_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function recordDefinitionLength(buffer: Buffer, offset: number, end: number): number {
  // fixext1 (0xd4), extension type 0x72 ("r"), structure id 0x40, a fixarray of fixstr keys
  if (buffer[offset] !== 0xd4 || buffer[offset + 1] !== 0x72 || buffer[offset + 2] !== 0x40) return 0;
  const head = buffer[offset + 3];
  if (head === undefined || (head & 0xf0) !== 0x90) return 0;
  let at = offset + 4;
  for (let i = head & 0x0f; i > 0; i--) {
    if (at >= end || (buffer[at] & 0xe0) !== 0xa0) return 0;
    at += 1 + (buffer[at] & 0x1f);
  }
  return at <= end ? at - offset : 0;
}

function learnRecord(buffer: Buffer, offset: number, length: number): void {
  if (knownRecords.length >= MAX_KNOWN_RECORDS) return;
  const definition = Buffer.from(buffer.subarray(offset, offset + length));
  const keys: string[] = [];
  for (let at = 4; at < length; at += 1 + (definition[at] & 0x1f)) {
    keys.push(definition.toString("latin1", at + 1, at + 1 + (definition[at] & 0x1f)));
  }
  if (keys.length === 0 || !keys.every((k) => RECORD_KEY.test(k)) || new Set(keys).size !== keys.length) return;
  knownRecords.push({ definition, unpackr: new Unpackr({ ...UNPACK_OPTIONS, structures: [keys] }) });
}

function unpackBody(buffer: Buffer, offset: number): unknown {
  const end = buffer.byteLength;
  const length = end - offset;
  if (length > SCRATCH_BYTES) return unpackr.unpack(buffer.subarray(offset));
  const defined = recordDefinitionLength(buffer, offset, end);
  if (defined > 0) {
    for (const known of knownRecords) {
      if (known.definition.length === defined && buffer.compare(known.definition, 0, defined, offset, offset + defined) === 0) {
        scratch[0] = 0x40; // a reference to the shared structure, then the values
        buffer.copy(scratch, 1, offset + defined);
        scratchRange.end = length - defined + 1;
        return known.unpackr.unpack(scratch, scratchRange);
      }
    }
    learnRecord(buffer, offset, defined);
  }
  buffer.copy(scratch, 0, offset);
  scratchRange.end = length;
  return unpackr.unpack(scratch, scratchRange);
}

/**
 * Message types seen, so that a frame's type is matched against them rather than decoded into a
 * new string every message: at most `MAX_KNOWN_TYPES` (the first seen) short plain names, found
 * by their length and bytes.
 */
const knownTypes: { bytes: Buffer; name: string }[] = [];
const MAX_KNOWN_TYPES = 128;
const TYPE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,30}$/;

function knownType(buffer: Buffer, it: Iterator): string | undefined {
  const head = buffer[it.offset];
  if ((head & 0xe0) !== 0xa0) return undefined; // not a fixstr
  const start = it.offset + 1;
  const end = start + (head & 0x1f);
  if (end > buffer.byteLength) return undefined;
  for (const known of knownTypes) {
    if (known.bytes.length === end - start && buffer.compare(known.bytes, 0, known.bytes.length, start, end) === 0) {
      it.offset = end;
      return known.name;
    }
  }
  return undefined;
}

function learnType(name: string): string {
  if (typeof name === "string" && knownTypes.length < MAX_KNOWN_TYPES && TYPE_NAME.test(name)) {
    knownTypes.push({ bytes: Buffer.from(name, "latin1"), name });
  }
  return name;
}

export interface DecodedFrame {
  kind: "data" | "request";
  /** Present on requests once the header decoded: the id the reply must carry. */
  requestId?: number;
  type?: string;
  payload?: unknown;
  error?: HavenError;
}

export function isMessageFrame(buffer: Uint8Array): boolean {
  const code = buffer[0] & PROTOCOL_CODE_MASK;
  return code === Protocol.ROOM_DATA || code === Protocol.ROOM_REQUEST || code === Protocol.ROOM_DATA_BYTES;
}

export function decodeMessageFrame(buffer: Buffer, maxFrameBytes: number): DecodedFrame {
  const code = buffer[0] & PROTOCOL_CODE_MASK;
  const frame: DecodedFrame = { kind: code === Protocol.ROOM_REQUEST ? "request" : "data" };
  const it: Iterator = { offset: 1 };
  try {
    if (frame.kind === "request") {
      const requestId = decode.number(buffer, it);
      if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffffffff) {
        throw new HavenError("MALFORMED_FRAME", "the request id is not valid");
      }
      frame.requestId = requestId;
    }
    if (code === Protocol.ROOM_DATA_BYTES) {
      throw new HavenError("UNKNOWN_MESSAGE", "raw byte messages are not part of Haven's protocol");
    }
    // the type is read before the size is judged, so that a refused plain send names its type
    let typeError: HavenError | undefined;
    if (it.offset >= buffer.byteLength || !decode.stringCheck(buffer, it)) {
      typeError = new HavenError("UNKNOWN_MESSAGE", "the message type must be a name");
    } else {
      const type = knownType(buffer, it) ?? learnType(decode.string(buffer, it));
      if (typeof type !== "string" || type.length === 0 || type.length > MAX_TYPE_LENGTH || it.offset > buffer.byteLength) {
        typeError = new HavenError("MALFORMED_FRAME", "the message type is not valid");
      } else {
        frame.type = type;
      }
    }
    if (buffer.byteLength > maxFrameBytes) {
      throw new HavenError("FRAME_TOO_LARGE", `a frame may carry at most ${maxFrameBytes} bytes`);
    }
    if (typeError) throw typeError;
    if (buffer.byteLength > it.offset) {
      frame.payload = unpackBody(buffer, it.offset);
    }
  } catch (error) {
    frame.error = error instanceof HavenError ? error : new HavenError("MALFORMED_FRAME", "the frame could not be decoded");
  }
  return frame;
}
