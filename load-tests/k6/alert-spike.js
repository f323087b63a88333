// Alert spike: ALERTS patients across Nairobi raise an alert in the same instant, each with a
// first-aider and an ambulance crew on duty nearby; the responders accept the offers of their
// own patient's emergency (and decline any other they are offered), then the patient cancels.
// ROUNDS bursts, one every iteration of each VU.
//
//   k6 run -e HAVEN_URL=http://127.0.0.1:2567 -e HAVEN_OPS_EMAIL=… -e HAVEN_OPS_PASSWORD=… \
//          -e ALERTS=200 -e ROUNDS=3 load-tests/k6/alert-spike.js
//
// Alert→offer latency (haven_alert_to_offer_ms, tagged role): from the moment the alert request
// is sent to the moment the offer's patch frame reached the responder's duty socket (k6 stamps
// each frame when it is read). It is measured from the request rather than from its answer
// because Haven sends the offers before it answers the alert: the offer is usually on the
// responder's socket before the patient's app has the emergency id. The offer is recognised in
// the duty room's patch bytes (lib/haven.js, offersIn).

import { check } from "k6";
import {
  envInt, envSeconds, opsSession, cells, goOnDuty, accept, api, token, offset, uuid, wait,
  alertToOffer, countError,
} from "./lib/haven.js";

const ALERTS = envInt("ALERTS", 4);
const ROUNDS = envInt("ROUNDS", 1);
const SPREAD_M = envInt("SPREAD_M", 9000);
/** Every VU alerts at the next multiple of this many milliseconds of the clock, so that the alerts arrive together. */
const ALIGN_MS = envInt("ALIGN_MS", 2000);
const OFFER_WAIT_S = envSeconds("OFFER_WAIT", 10);

export const options = {
  scenarios: {
    spike: {
      executor: "per-vu-iterations",
      vus: ALERTS,
      iterations: ROUNDS,
      maxDuration: `${ROUNDS * (Math.ceil(OFFER_WAIT_S) + 15) + 60}s`,
      gracefulStop: "15s",
    },
  },
  setupTimeout: `${60 + ALERTS * 3}s`,
  thresholds: {
    haven_alert_to_offer_ms: ["p(95)<1000", "p(99)<2000"],
    "http_req_duration{name:POST /api/emergency/alert}": ["p(95)<1000"],
    haven_errors: ["count<1"],
    checks: ["rate>0.99"],
  },
  summaryTrendStats: ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)", "count"],
};

export function setup() {
  return { cells: cells(ALERTS, SPREAD_M, opsSession()) };
}

/** Declines offers of other patients' emergencies (one withdrawn or taken meanwhile answers OFFER_EXPIRED or OFFER_NOT_FOUND: fine). */
function declineOthers(state, getDuty) {
  return (offer) => {
    if (offer.emergencyId === state.emergencyId) return;
    getDuty().room.request("decline_offer", { offerId: offer.offerId, reason: "attending another emergency" }).catch((e) => {
      const code = e.reason && e.reason.code;
      if (code !== "OFFER_NOT_FOUND" && code !== "OFFER_EXPIRED" && code !== "CLOSE_4000") countError(code, { call: "decline_offer" });
    });
  };
}

export default async function (data) {
  const cell = data.cells[(__VU - 1) % data.cells.length];
  const scene = offset(cell.at, 37 * __ITER, 23 * __ITER);
  const state = { emergencyId: null };
  let fa = null;
  let crew = null;
  fa = await goOnDuty(cell.firstAider, offset(scene, 90), { onOffer: declineOthers(state, () => fa) });
  crew = await goOnDuty(cell.crew, offset(scene, 900), { onOffer: declineOthers(state, () => crew) });

  await wait(ALIGN_MS - (Date.now() % ALIGN_MS));
  const sentAt = Date.now();
  const alert = api("POST", "/api/emergency/alert", { lat: scene.lat, lng: scene.lng, accuracy: 20, priority: "high" }, token(cell.patient), { name: "POST /api/emergency/alert" });
  state.emergencyId = alert.body.emergencyId;
  check(alert, { "alert raised": (r) => r.status === 201 && r.body.created === true });

  for (const [role, duty] of [["first_aider", fa], ["ambulance_crew", crew]]) {
    try {
      const offer = await duty.waitOffer(state.emergencyId, OFFER_WAIT_S * 1000);
      alertToOffer.add(Math.max(0, offer.t - sentAt), { role });
      const accepted = await accept(duty, offer);
      check(accepted, { "offer accepted": (a) => a.ok === true && a.emergencyId === state.emergencyId });
    } catch (error) {
      countError((error.reason && error.reason.code) || "NO_OFFER", { role });
      check(null, { "offer accepted": () => false });
    }
  }

  const cancelling = Date.now();
  const cancelled = api("POST", `/api/emergency/${state.emergencyId}/cancel`, { reason: "false_alarm", idempotencyKey: uuid() }, token(cell.patient), { name: "POST /api/emergency/{id}/cancel" });
  check(cancelled, { "emergency cancelled": (r) => r.body.status === "cancelled" });
  // the responders are released (their duty state changes) before they go off duty
  await fa.patchSince(cancelling, 2000);
  await crew.patchSince(cancelling, 2000);
  await fa.room.leave();
  await crew.room.leave();
}
