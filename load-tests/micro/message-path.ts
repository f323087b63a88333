/**
 * What Haven's own part of an incoming position message costs, per message: decoding the frame
 * (src/protocol/frames.ts) and validating its payload (src/protocol/validate.ts), in ns and in
 * bytes of heap allocated (from V8's GC statistics; what a message allocates is what the young
 * generation has to scavenge under load).
 *
 *   node load-tests/micro/message-path.ts
 */
import { encode } from "@colyseus/schema";
import { Packr } from "msgpackr";
import { GCProfiler } from "node:v8";
import { decodeMessageFrame } from "../../src/protocol/frames.ts";
import { validate } from "../../src/protocol/validate.ts";

/** As @colyseus/sdk 0.18 packs a message: msgpackr's Packr with its defaults (records). */
const sdkPackr = new Packr();

function frame(type: string, payload: unknown): Buffer {
  const head: number[] = [13];
  const it = { offset: 1 };
  encode.string(head as never, type, it);
  return Buffer.concat([Buffer.from(head.slice(0, it.offset)), sdkPackr.pack(payload)]);
}

const position = frame("position", { lat: -1.28639, lng: 36.81722, accuracy: 8 });
const N = 2_000_000;

function run(): void {
  for (let i = 0; i < N; i++) {
    const f = decodeMessageFrame(position, 16_384);
    validate("position", f.payload);
  }
}

function measure(): { ns: number; bytes: number } {
  const profiler = new GCProfiler();
  const before = process.memoryUsage().heapUsed;
  profiler.start();
  const t0 = process.hrtime.bigint();
  run();
  const ns = Number(process.hrtime.bigint() - t0) / N;
  const after = process.memoryUsage().heapUsed;
  const stats = profiler.stop()?.statistics ?? [];
  let freed = 0;
  for (const s of stats) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
  return { ns, bytes: (after - before + freed) / N };
}

run(); // warm-up
const results = [measure(), measure(), measure()].sort((a, b) => a.ns - b.ns);
const best = results[0];
console.log(`position message, decode + validate: ${best.ns.toFixed(0)} ns and ${best.bytes.toFixed(0)} B allocated per message (best of 3 × ${N.toLocaleString("en")})`);
