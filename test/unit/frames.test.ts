import { encode } from "@colyseus/schema";
import fc from "fast-check";
import { Packr, Unpackr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { decodeMessageFrame } from "../../src/protocol/frames.ts";

/** A ROOM_DATA frame as @colyseus/sdk 0.18 sends it: msgpackr's Packr with its defaults (records). */
const sdk = new Packr();
function frame(type: string, payload: unknown, packr: Packr = sdk): Buffer {
  const head: number[] = [13];
  const it = { offset: 1 };
  encode.string(head as never, type, it);
  return Buffer.concat([Buffer.from(head.slice(0, it.offset)), packr.pack(payload)]);
}

const plain = new Packr({ useRecords: false });

describe("message frames", () => {
  it("decode the SDK's record-packed bodies the same the first time and every time after (known definitions)", () => {
    const bodies = [
      { lat: -1.28639, lng: 36.81722 },
      { lat: -1.28639, lng: 36.81722, accuracy: 64 },
      { lat: 0, lng: 127, accuracy: 100, heading: 359.5, speed: 12 },
      { emergencyId: "e-1", key: "team", ready: true },
      { note: "a nested record", signs: { heartRate: 118, spo2: 91 }, list: [64, 65, { a: 1 }] },
    ];
    for (let round = 0; round < 5; round++) {
      for (const body of bodies) {
        const f = decodeMessageFrame(frame("m", body), 16_384);
        expect(f.error).toBeUndefined();
        expect(f).toMatchObject({ kind: "data", type: "m", payload: body });
      }
    }
  });

  it("give any body the same payload as a plain msgpack decode would, whatever the packing", () => {
    const value = fc.dictionary(fc.constantFrom("lat", "lng", "accuracy", "a", "b", "note"),
      fc.oneof(fc.integer({ min: -200, max: 200 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string({ maxLength: 8 }), fc.boolean(),
        fc.array(fc.integer({ min: 0, max: 130 }), { maxLength: 4 })), { maxKeys: 6 });
    fc.assert(fc.property(value, fc.boolean(), (body, records) => {
      const packr = records ? sdk : plain;
      const f = decodeMessageFrame(frame("m", body, packr), 16_384);
      expect(f.error).toBeUndefined();
      expect(f.payload).toEqual(new Unpackr({ mapsAsObjects: true }).unpack(packr.pack(body)));
    }), { numRuns: 500 });
  });

  it("name the type the same the first time and every time after, whatever its letters", () => {
    for (let round = 0; round < 3; round++) {
      for (const type of ["position", "positioN", "status", "pösition", "a", "x".repeat(31), "e_2"]) {
        expect(decodeMessageFrame(frame(type, { a: 1 }), 16_384)).toMatchObject({ type, payload: { a: 1 } });
      }
    }
    // a type cut short is never taken for the known type it starts like
    const cut = frame("position", {}).subarray(0, 6);
    expect(decodeMessageFrame(cut, 16_384).type).not.toBe("position");
  });

  it("refuse a body cut short or with bytes left over, known definition or not", () => {
    const good = frame("position", { lat: 1.5, lng: 2.5 });
    decodeMessageFrame(good, 16_384); // its definition is known from here on
    expect(decodeMessageFrame(good.subarray(0, good.length - 3), 16_384).error?.code).toBe("MALFORMED_FRAME");
    expect(decodeMessageFrame(Buffer.concat([good, Buffer.from([0x01])]), 16_384).error?.code).toBe("MALFORMED_FRAME");
    // the definition says three keys and two values follow
    const lying = Buffer.from(good);
    const at = lying.indexOf(0x92, 10);
    lying[at] = 0x93;
    expect(decodeMessageFrame(lying, 16_384).error?.code).toBe("MALFORMED_FRAME");
  });
});
