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
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false, moreTypes: false, int64AsType: "number" });

const MAX_TYPE_LENGTH = 40;

/**
 * Message bodies are copied here and decoded from it: the unpacker keeps a DataView on its source,
 * so a body decoded where it arrived would cost a view (and a new Buffer for the slice) per message.
 * Decoding is synchronous and the decoded values are copies, so one buffer serves every frame.
 */
const SCRATCH_BYTES = 16 * 1024;
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
const scratchRange = { start: 0, end: 0 };

function unpackBody(buffer: Buffer, offset: number): unknown {
  const length = buffer.byteLength - offset;
  if (length > SCRATCH_BYTES) return unpackr.unpack(buffer.subarray(offset));
  buffer.copy(scratch, 0, offset);
  scratchRange.end = length;
  return unpackr.unpack(scratch, scratchRange);
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
      const type = decode.string(buffer, it);
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
