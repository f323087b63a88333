// Wallboard fan-out: one hospital's wallboard (the `hospital-<id>` room, on SCREENS screens)
// follows EMERGENCIES incoming emergencies whose ambulance crews report their position once a
// second for DURATION; every position changes the emergency's ETA, which the emergency's room
// pushes to the hospital room, which patches every screen.
//
//   k6 run -e HAVEN_URL=http://127.0.0.1:2567 -e HAVEN_OPS_EMAIL=… -e HAVEN_OPS_PASSWORD=… \
//          -e EMERGENCIES=40 -e SCREENS=4 -e DURATION=5m load-tests/k6/wallboard.js
//
// One VU holds every socket (the crews' and the screens'), so that it knows when each position
// was sent. The crews' sends are spread evenly over the second; each screen times the first
// patch (frame byte 15) it receives after a send (haven_fanout_ms, receiver "wallboard"), and
// haven_update_bytes (room "hospital") is the size of each wallboard patch. As in tracking.js the
// patch is not decoded: the first patch after a send is taken to be the one it caused, which
// holds while the wallboard's latency is below the spacing of the sends (1000 / EMERGENCIES ms).
// Haven sends one emergency's wallboard updates at most once a second, so a position that comes
// less than a second after the previous update of its emergency reaches the wallboard when that
// second is over: the threshold allows for it.

import { check } from "k6";
import { setInterval, clearInterval, setTimeout } from "k6/timers";
import {
  envInt, envSeconds, opsSession, account, current, hospital, join, dispatchedEmergency, offset, fanout, wait,
} from "./lib/haven.js";

const EMERGENCIES = envInt("EMERGENCIES", 3);
const SCREENS = envInt("SCREENS", 2);
const DURATION_S = envSeconds("DURATION", 10);
const HOSPITAL = __ENV.HOSPITAL || "aga-khan";

export const options = {
  scenarios: {
    wallboard: {
      executor: "shared-iterations",
      vus: 1,
      iterations: 1,
      maxDuration: `${Math.ceil(DURATION_S) + 60}s`,
      gracefulStop: "10s",
    },
  },
  setupTimeout: `${60 + EMERGENCIES * 10}s`,
  thresholds: {
    "haven_fanout_ms{receiver:wallboard}": ["p(95)<1200", "p(99)<1500"],
    "haven_update_bytes{room:hospital}": ["p(95)<1024"],
    haven_errors: ["count<1"],
    checks: ["rate>0.99"],
  },
  summaryTrendStats: ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "count"],
};

export async function setup() {
  const ops = opsSession();
  const h = hospital(HOSPITAL, ops);
  const staff = [];
  for (let i = 0; i < SCREENS; i++) staff.push(account("hospital_staff", { by: ops, hospitalId: h.id }));
  const board = await join(staff[0], `hospital-${h.id}`, { kind: "hospital" });
  const emergencies = [];
  for (let i = 0; i < EMERGENCIES; i++) {
    const scene = offset(h, 150 * Math.sin(i), 200 + 10 * (i % 30));
    emergencies.push(await dispatchedEmergency(ops, scene, { assess: true, hospitalId: h.id, wallboard: board }));
  }
  await board.leave();
  return { hospitalId: h.id, staff: staff.map(current), emergencies };
}

export default async function (data) {
  let last = null; // the latest send: { at, waiting: { screen: true } }
  const screens = [];
  for (let i = 0; i < data.staff.length; i++) {
    const name = `screen-${i + 1}`;
    screens.push(await join(data.staff[i], `hospital-${data.hospitalId}`, {
      kind: "hospital",
      onPatch: (bytes, t) => {
        const s = last;
        if (!s || !s.waiting[name] || t < s.at) return;
        delete s.waiting[name];
        fanout.add(t - s.at, { receiver: "wallboard", sender: "ambulance_crew" });
      },
    }));
  }
  const crews = [];
  for (const e of data.emergencies) crews.push({ e, room: await join(e.crew, e.id, { kind: "emergency" }) });
  check(screens.concat(crews.map((c) => c.room)), { "screens and crews joined": (rooms) => rooms.every((r) => r.joined && !r.closed) });

  const intervals = [];
  await new Promise((resolve) => {
    crews.forEach((c, i) => {
      setTimeout(() => {
        let n = 0;
        intervals.push(setInterval(() => {
          n++;
          // back and forth 600 m north of the patient: every step changes the ETA by seconds
          const to = offset(c.e.scene, 600 - 30 * (n % 20));
          last = { at: Date.now(), waiting: {} };
          for (let k = 0; k < screens.length; k++) last.waiting[`screen-${k + 1}`] = true;
          c.room.send("position", { lat: to.lat, lng: to.lng, accuracy: 10, heading: 180, speed: 11 });
        }, 1000));
      }, (i * 1000) / crews.length);
    });
    setTimeout(resolve, DURATION_S * 1000);
  });
  for (const id of intervals) clearInterval(id);
  await wait(1200);
  for (const r of screens.concat(crews.map((c) => c.room))) await r.leave();
}
