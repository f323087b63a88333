import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, account, join, login, scenario, sleep, startHaven, until, waitFor, type Account, type Haven } from "./harness.ts";

/**
 * A client too slow to keep up is disconnected at the backpressure limit, the room and its other
 * parties carry on, and on rejoining the client gets the whole current state: never a silent gap.
 * The slow client is a raw WebSocket that stops reading from its TCP socket.
 */
let h: Haven;
let ops: Account;
beforeAll(async () => {
  h = await startHaven({ HAVEN_MAX_BACKPRESSURE_BYTES: "65536", HAVEN_MAX_MESSAGES_PER_SECOND: "1000", HAVEN_CRITICAL_CHANGES_PER_10S: "10000" });
  ops = await login(h, OPS.email, OPS.password);
});
afterAll(async () => { await h?.stop(); });

interface RawClient { socket: Socket; received: () => Buffer; closed: Promise<void>; isClosed: () => boolean; ping: () => void }

/** Joins a room over a raw WebSocket and acknowledges the join, as the SDK would. */
async function rawJoin(token: string, roomId: string): Promise<RawClient> {
  const seat = await h.http("POST", `/matchmake/joinById/${roomId}`, {}, token);
  expect(seat.status).toBe(200);
  const socket = connect(h.port, "127.0.0.1");
  const path = `/${seat.body.processId}/${roomId}?sessionId=${seat.body.sessionId}&_authToken=${token}`;
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n\r\n`);
  const chunks: Buffer[] = [];
  let closed = false;
  const closedP = new Promise<void>((r) => socket.once("close", () => { closed = true; r(); }));
  socket.on("error", () => {});
  socket.on("data", (d) => chunks.push(d));
  const received = () => Buffer.concat(chunks);
  await until(() => received().includes("\r\n\r\n"), 3000, "upgrade response");
  expect(received().toString("latin1", 0, 12)).toBe("HTTP/1.1 101");
  // the server's JOIN_ROOM frame arrives first; acknowledge it with a masked [JOIN_ROOM] frame
  await until(() => received().length > received().indexOf("\r\n\r\n") + 6, 3000, "join frame");
  const mask = randomBytes(4);
  socket.write(Buffer.from([0x82, 0x80 | 1, ...mask, 10 ^ mask[0]]));
  const ping = () => {
    const m = randomBytes(4);
    if (!closed) socket.write(Buffer.from([0x89, 0x80, ...m]));
  };
  return { socket, received, closed: closedP, isClosed: () => closed, ping };
}

const bigAssessment = (marker: string) => ({
  mechanism: `fall from height ${marker}`,
  injuries: Array.from({ length: 16 }, (_, i) => `${marker} injury ${i} `.padEnd(190, "x")),
  treatment: Array.from({ length: 16 }, (_, i) => `${marker} treatment ${i} `.padEnd(190, "y")),
});

describe("backpressure", () => {
  it("disconnects a client that stops reading once its unsent bytes pass the limit; others carry on; rejoining resyncs the full state", async () => {
    // ten emergencies bound for one hospital: its wallboard carries ten handover summaries
    const KNH = { lat: -1.3007, lng: 36.8065 };
    const staff = await account(h, "hospital_staff", { hospitalId: "knh", by: ops });
    const board = await join(h, staff.token, "hospital-knh");
    const scenes = [];
    for (let i = 0; i < 10; i++) {
      const sc = await scenario(h, ops, { lat: KNH.lat + i * 1e-4, lng: KNH.lng });
      await sc.faRoom.request("assessment", bigAssessment("MARK0"));
      scenes.push(sc);
    }
    await waitFor(board, (st) => st.incoming.size === 10, 3000, "ten incoming");

    // a second wallboard socket of the same staff member stops reading
    const slow = await rawJoin(staff.token, "hospital-knh");
    await until(() => slow.received().includes("MARK0"), 3000, "full state");
    slow.socket.pause();

    let n = 0;
    const started = Date.now();
    const deadline = started + 20_000;
    while (!slow.isClosed() && Date.now() < deadline) {
      n++;
      const marker = `MARK${n}`;
      await Promise.all(scenes.map((sc) => sc.faRoom.request("assessment", bigAssessment(marker))));
      await sleep(20);
      // a paused socket only learns that the server closed it when it writes: ping now and then
      if (n % 5 === 0) slow.ping();
    }
    expect(slow.isClosed(), `still open after ${n} rounds`).toBe(true);
    console.log(`[haven] slow wallboard cut off after ${n} rounds of 10 assessments, ${((Date.now() - started) / 1000).toFixed(1)} s, on the ${h.transport} transport`);

    // the room and its other parties are unaffected
    const last = `MARK${n}`;
    await waitFor(board, (st) => [...st.incoming.values()].every((e: any) => e.handoverSummary.includes(last)), 3000, "the healthy wallboard is current");
    await scenes[0].pRoom.request("position", { lat: -1.29211, lng: 36.82191 });
    await waitFor(scenes[0].faRoom, (st) => st.patient.lat === -1.29211, 1000, "others keep streaming");

    // rejoining: the full state carries the newest summaries
    const again = await rawJoin(staff.token, "hospital-knh");
    await until(() => again.received().includes(`${last} injury 0`), 3000, "newest summary in the resync");
    again.socket.destroy();
    await board.leave();
  });
});
