// Soak: emergencies open and close for DURATION. Each of VUS cells (a patient and a first-aider
// and an ambulance crew near them, somewhere in Nairobi) goes round and round: the responders go
// on duty, the patient alerts, the responders accept, the patient follows the emergency on its
// socket and moves for HOLD, then cancels it (a socket request), and everyone leaves.
//
//   k6 run -e HAVEN_URL=http://127.0.0.1:2567 -e HAVEN_OPS_EMAIL=… -e HAVEN_OPS_PASSWORD=… \
//          -e VUS=50 -e DURATION=2h -e HOLD=30s load-tests/k6/soak.js
//
// Access tokens live 15 minutes: each VU refreshes its own cell's sessions as they near expiry
// (lib/haven.js, token). Watch the server's memory and /metrics alongside; the thresholds here
// catch errors and latency that drift over the run.

import { check } from "k6";
import { setInterval, clearInterval } from "k6/timers";
import {
  envInt, envSeconds, opsSession, cells, goOnDuty, accept, join, api, token, offset, uuid, wait,
  alertToOffer, countError,
} from "./lib/haven.js";
import { Counter } from "k6/metrics";

const VUS = envInt("VUS", 2);
const DURATION_S = envSeconds("DURATION", 20);
const HOLD_S = envSeconds("HOLD", 2);
const SPREAD_M = envInt("SPREAD_M", 9000);

const closed = new Counter("haven_emergencies_closed");

export const options = {
  scenarios: {
    soak: {
      executor: "constant-vus",
      vus: VUS,
      duration: `${DURATION_S}s`,
      gracefulStop: `${Math.ceil(HOLD_S) + 20}s`,
    },
  },
  setupTimeout: `${60 + VUS * 3}s`,
  thresholds: {
    haven_alert_to_offer_ms: ["p(95)<1000", "p(99)<2000"],
    "haven_request_ms{type:cancel}": ["p(95)<1000"],
    haven_emergencies_closed: ["count>0"],
    haven_errors: ["count<1"],
    checks: ["rate>0.99"],
  },
  summaryTrendStats: ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "count"],
};

export function setup() {
  return { cells: cells(VUS, SPREAD_M, opsSession()) };
}

export default async function (data) {
  const cell = data.cells[(__VU - 1) % data.cells.length];
  const scene = offset(cell.at, 11 * (__ITER % 40), 7 * (__ITER % 40));
  const state = { emergencyId: null };
  const declineOthers = (getDuty) => (offer) => {
    if (offer.emergencyId === state.emergencyId) return;
    getDuty().room.request("decline_offer", { offerId: offer.offerId, reason: "attending another emergency" }).catch((e) => {
      const code = e.reason && e.reason.code;
      if (code !== "OFFER_NOT_FOUND" && code !== "CLOSE_4000") countError(code, { call: "decline_offer" });
    });
  };
  let fa = null;
  let crew = null;
  fa = await goOnDuty(cell.firstAider, offset(scene, 120), { onOffer: declineOthers(() => fa) });
  crew = await goOnDuty(cell.crew, offset(scene, 1200), { onOffer: declineOthers(() => crew) });

  const sentAt = Date.now();
  const alert = api("POST", "/api/emergency/alert", { lat: scene.lat, lng: scene.lng, accuracy: 20 }, token(cell.patient), { name: "POST /api/emergency/alert" });
  state.emergencyId = alert.body.emergencyId;
  check(alert, { "alert raised": (r) => r.status === 201 && r.body.created === true });

  for (const [role, duty] of [["first_aider", fa], ["ambulance_crew", crew]]) {
    try {
      const offer = await duty.waitOffer(state.emergencyId, 10000);
      alertToOffer.add(Math.max(0, offer.t - sentAt), { role });
      const accepted = await accept(duty, offer);
      check(accepted, { "offer accepted": (a) => a.ok === true });
    } catch (error) {
      countError((error.reason && error.reason.code) || "NO_OFFER", { role });
      check(null, { "offer accepted": () => false });
    }
  }

  // the patient follows the emergency and moves, then cancels it on the socket
  // 4410: the emergency closed its sockets after the cancel (HAVEN_CLOSE_GRACE_MS) before we left
  const room = await join(cell.patient, state.emergencyId, { kind: "emergency", expectClose: [4410] });
  let n = 0;
  const moving = setInterval(() => {
    n++;
    const to = offset(scene, 3 * n, 0);
    room.send("position", { lat: to.lat, lng: to.lng, accuracy: 12 });
  }, 1000);
  await wait(HOLD_S * 1000);
  clearInterval(moving);
  const cancelling = Date.now();
  try {
    const answer = await room.request("cancel", { reason: "false_alarm", idempotencyKey: uuid() });
    if (check(answer, { "cancelled on the socket": (a) => a.ok === true && a.status === "cancelled" })) closed.add(1);
  } catch (error) {
    countError((error.reason && error.reason.code) || "CANCEL_FAILED", { call: "cancel" });
    check(null, { "cancelled on the socket": () => false });
  }
  await room.leave();
  await fa.patchSince(cancelling, 2000);
  await crew.patchSince(cancelling, 2000);
  await fa.room.leave();
  await crew.room.leave();
}
