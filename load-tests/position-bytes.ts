/**
 * Bytes one recipient receives for one position update of another party.
 *
 *   node load-tests/position-bytes.ts            (npm run bench:position-bytes)
 *
 * Starts a real Haven, puts a patient and an assigned first-aider in one emergency, and has the
 * first-aider move N times (one at a time) while the patient's socket counts every frame and byte
 * that arrives between the move and the moment the patient sees it; it prints the median.
 * The figure is the WebSocket payload (the binary state patch); the 2-byte WebSocket frame header
 * is added separately. For comparison it prints the same update as a JSON document.
 */
import { OPS, login, scenario, startHaven, waitFor } from "../test/harness.ts";

const UPDATES = Number(process.env.UPDATES ?? 200);

const h = await startHaven({ HAVEN_MAX_MESSAGES_PER_SECOND: "1000" });
try {
  const ops = await login(h, OPS.email, OPS.password);
  const s = await scenario(h, ops, { lat: -1.2864, lng: 36.8172 });
  const recipient = s.pRoom;
  const conn = recipient.connection as unknown as { events: { onmessage: (ev: { data: ArrayBuffer }) => void } };
  let frames = 0;
  let bytes = 0; // reset before each update
  const original = conn.events.onmessage;
  conn.events.onmessage = (ev) => {
    frames++;
    bytes += (ev.data as ArrayBuffer).byteLength;
    original(ev);
  };

  const measure = async (label: string, payload: (i: number) => Record<string, number>) => {
    const perUpdate: number[] = [];
    let json = 0;
    let framesTotal = 0;
    for (let i = 1; i <= UPDATES; i++) {
      const p = payload(i);
      frames = 0;
      bytes = 0;
      await s.faRoom.request("position", p);
      await waitFor(recipient, (st) => st.firstAiders.get(s.fa.acc.id)?.lat === p.lat, 2000, "update seen");
      perUpdate.push(bytes);
      framesTotal += frames;
      json += Buffer.byteLength(JSON.stringify({ type: "position", party: s.fa.acc.id, ...p, updatedAt: Date.now() }));
    }
    perUpdate.sort((a, b) => a - b);
    const median = perUpdate[Math.floor(perUpdate.length / 2)];
    const mean = perUpdate.reduce((a, b) => a + b, 0) / perUpdate.length;
    console.log(`${label}: median ${median} B per update (mean ${mean.toFixed(1)}, min ${perUpdate[0]}, max ${perUpdate.at(-1)}) in ${(framesTotal / UPDATES).toFixed(2)} frames (+2 B WebSocket header per frame); as JSON: ${(json / UPDATES).toFixed(0)} B (${(json / UPDATES / median).toFixed(1)}x larger)`);
  };

  console.log(`transport: ${h.transport}; ${UPDATES} updates per case; recipient: the patient's socket`);
  // let the dispatch of the scenario settle, so that only position patches are counted
  await new Promise((r) => setTimeout(r, 500));
  const base = { lat: -1.2864, lng: 36.8172 };
  await measure("lat+lng only          ", (i) => ({ lat: base.lat + i * 1e-6, lng: base.lng + i * 1e-6 }));
  await measure("lat+lng+accuracy+heading+speed", (i) => ({ lat: base.lat - i * 1e-6, lng: base.lng - i * 1e-6, accuracy: 5 + (i % 7), heading: (i * 3) % 360, speed: 1 + (i % 5) }));
  // leave before the server stops, or the clients would keep trying to reconnect (4010)
  await Promise.all([s.pRoom, s.faRoom, s.crewRoom, s.fa.duty, s.crew.duty].map((r) => r.leave()));
} finally {
  await h.stop();
}
