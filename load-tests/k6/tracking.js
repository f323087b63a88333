// Steady tracking: EMERGENCIES live emergencies, each with five parties on their own sockets —
// the patient, the first-aider and the ambulance crew (who each send their position RATE_HZ
// times a second) and the receiving hospital's staff and an ops admin (who watch) — for DURATION.
//
//   k6 run -e HAVEN_URL=http://127.0.0.1:2567 -e HAVEN_OPS_EMAIL=… -e HAVEN_OPS_PASSWORD=… \
//          -e EMERGENCIES=50 -e DURATION=5m load-tests/k6/tracking.js
//
// setup() makes each emergency through the real lifecycle (accounts, ops verification, duty,
// alert, offers accepted, on scene, assessment, hospital matched and acknowledged), one VU per
// emergency then joins its five parties and streams.
//
// Fan-out latency (haven_fanout_ms): a sender stamps the time of each position it sends; every
// other party times the first state patch (frame byte 15) it receives after that stamp. k6
// cannot decode Colyseus schema patches, so the patch is not checked to carry that position;
// the senders of an emergency are staggered over the period (patches are sent as soon as the
// state changes), so the first patch after a send is the one it caused unless a patch is slower
// than the stagger (1000 / RATE_HZ / 3 ms). A send whose patch has not reached a party before
// the next send of that emergency is counted in haven_errors as NO_PATCH.

import { check } from "k6";
import { setInterval, clearInterval, setTimeout } from "k6/timers";
import {
  envInt, envSeconds, opsSession, account, current, hospital, join, dispatchedEmergency, offset, fanout, countError, wait,
} from "./lib/haven.js";

const EMERGENCIES = envInt("EMERGENCIES", 2);
const DURATION_S = envSeconds("DURATION", 10);
const RATE_HZ = parseFloat(__ENV.RATE_HZ || "1");
const HOSPITAL = __ENV.HOSPITAL || "aga-khan";

export const options = {
  scenarios: {
    tracking: {
      executor: "per-vu-iterations",
      vus: EMERGENCIES,
      iterations: 1,
      maxDuration: `${Math.ceil(DURATION_S) + 60}s`,
      gracefulStop: "10s",
    },
  },
  setupTimeout: `${60 + EMERGENCIES * 10}s`,
  thresholds: {
    haven_fanout_ms: ["p(95)<250", "p(99)<500"],
    haven_update_bytes: ["p(95)<256"],
    haven_join_ms: ["p(95)<2000"],
    haven_errors: ["count<1"],
    checks: ["rate>0.99"],
  },
  summaryTrendStats: ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "count"],
};

export async function setup() {
  const ops = opsSession();
  const h = hospital(HOSPITAL, ops);
  const staff = account("hospital_staff", { by: ops, hospitalId: h.id, shared: true });
  const board = await join(staff, `hospital-${h.id}`, { kind: "hospital" });
  const emergencies = [];
  for (let i = 0; i < EMERGENCIES; i++) {
    // a few hundred metres from the hospital, so that the assessment matches it
    const scene = offset(h, 120 * Math.cos(i), 150 + 15 * (i % 20));
    emergencies.push(await dispatchedEmergency(ops, scene, { assess: true, hospitalId: h.id, wallboard: board }));
  }
  await board.leave();
  return { ops: current(ops), staff: current(staff), emergencies };
}

export default async function (data) {
  const e = data.emergencies[(__VU - 1) % data.emergencies.length];
  const parties = [
    { role: "patient", session: e.patient, from: e.scene },
    { role: "first_aider", session: e.firstAider, from: offset(e.scene, 25) },
    { role: "ambulance_crew", session: e.crew, from: offset(e.scene, 650) },
    { role: "hospital_staff", session: data.staff },
    { role: "ops_admin", session: data.ops },
  ];
  let last = null; // the latest send: { sender, at, waiting: { role: true } }

  for (const p of parties) {
    p.room = await join(p.session, e.id, {
      kind: "emergency",
      onPatch: (bytes, t) => {
        const s = last;
        if (!s || !s.waiting[p.role] || t < s.at) return;
        delete s.waiting[p.role];
        fanout.add(t - s.at, { receiver: p.role, sender: s.sender });
      },
    });
  }
  check(parties, { "five parties joined": (ps) => ps.every((p) => p.room.joined && !p.room.closed) });

  const senders = parties.filter((p) => p.from);
  const period = 1000 / RATE_HZ;
  const intervals = [];
  await new Promise((resolve) => {
    senders.forEach((p, i) => {
      setTimeout(() => {
        let n = 0;
        intervals.push(setInterval(() => {
          n++;
          if (last) for (const role of Object.keys(last.waiting)) countError("NO_PATCH", { receiver: role });
          const to = offset(p.from, 2 * (n % 50), 1.5 * (n % 50));
          last = { sender: p.role, at: Date.now(), waiting: {} };
          for (const q of parties) if (q !== p) last.waiting[q.role] = true;
          p.room.send("position", { lat: to.lat, lng: to.lng, accuracy: 8, heading: 45, speed: 1.4 });
        }, period));
      }, (i * period) / senders.length);
    });
    setTimeout(resolve, DURATION_S * 1000);
  });
  for (const id of intervals) clearInterval(id);
  await wait(Math.min(500, period));
  for (const p of parties) await p.room.leave();
  check(parties, { "every party left cleanly": (ps) => ps.every((p) => p.room.closeCode === 4000) });
}
