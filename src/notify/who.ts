import type { OutboxMessage } from "../../persistence/stores.ts";

/**
 * Who is told what, on plain values: the outbox messages each moment of an emergency causes,
 * with their delivery keys. A key names the moment, so a moment recorded twice (a retried
 * change, a restored room) queues its messages once.
 */

/** Emergency contacts a profile holds at most (src/medical/profile.ts). */
export const MAX_CONTACTS = 5;

/** The short reference people read in a message: the emergency id's first 8 characters. */
export const ref = (emergencyId: string): string => emergencyId.slice(0, 8);

const minutes = (etaSeconds: number): string | number => etaSeconds >= 0 ? Math.max(1, Math.round(etaSeconds / 60)) : "";

/** The key of the SMS to a hospital's duty phone, due when its wallboard has not acknowledged. */
export function hospitalFallbackKey(emergencyId: string, hospitalId: string, notifiedAt: number): string {
  return `hospital-sms:${emergencyId}:${hospitalId}:${notifiedAt}`;
}

/**
 * An emergency was routed to a hospital: its webhook now, and its duty phone by SMS after
 * `fallbackMs` unless the wallboard acknowledged first (the acknowledgement cancels it).
 */
export function hospitalRouted(o: { emergencyId: string; hospitalId: string; hospitalName: string; priority: string; etaSeconds: number; notifiedAt: number; fallbackMs: number }): OutboxMessage[] {
  const params = { priority: o.priority, hospital: o.hospitalName, eta: minutes(o.etaSeconds), ref: ref(o.emergencyId) };
  return [
    { key: `hospital-routed:${o.emergencyId}:${o.hospitalId}:${o.notifiedAt}`, channel: "webhook", recipient: `hospital:${o.hospitalId}`, event: "hospital_routed", emergencyId: o.emergencyId, payload: { params } },
    { key: hospitalFallbackKey(o.emergencyId, o.hospitalId, o.notifiedAt), channel: "sms", recipient: `hospital:${o.hospitalId}`, event: "hospital_unacknowledged", emergencyId: o.emergencyId, payload: { params }, notBefore: o.notifiedAt + o.fallbackMs },
  ];
}

/**
 * The patient's `count` emergency contacts (as many as the profile held when the alert was
 * raised; each resolved, with consent, when sent; none for a bypass caller): no medical detail.
 */
export function contactsTold(o: { emergencyId: string; patientId: string; patientName: string; count: number; moment: "alert" | "handover"; hospitalName?: string }): OutboxMessage[] {
  return Array.from({ length: Math.min(MAX_CONTACTS, o.count) }, (_, n) => ({
    key: `contact-${o.moment}:${o.emergencyId}:${n}`, channel: "sms" as const, recipient: `contact:${o.patientId}:${n}`,
    event: o.moment === "alert" ? "contact_alert" : "contact_handover", emergencyId: o.emergencyId,
    payload: { params: { name: o.patientName.slice(0, 40), hospital: o.hospitalName ?? "" } },
  }));
}

/** The key of the SMS that follows an offer's push to an away responder. */
export const offerSmsKey = (offerId: string): string => `offer:${offerId}:sms`;

/** An offer waits for a responder whose app is away: a push now (unless `push` is false: they chose SMS only), an SMS after `smsDelayMs` unless the offer is settled first. */
export function offerToAwayResponder(o: { offerId: string; responderId: string; emergencyId: string; distanceM: number; now: number; smsDelayMs: number; push?: boolean }): OutboxMessage[] {
  const params = { distance: Math.round(o.distanceM) };
  return [
    ...(o.push === false ? [] : [{ key: `offer:${o.offerId}:push`, channel: "push" as const, recipient: `user:${o.responderId}`, event: "responder_offer", emergencyId: o.emergencyId, payload: { params } }]),
    { key: offerSmsKey(o.offerId), channel: "sms", recipient: `user:${o.responderId}`, event: "responder_offer", emergencyId: o.emergencyId, payload: { params }, notBefore: o.now + o.smsDelayMs },
  ];
}

/** Operations must act (an escalation): its duty phone and its webhook, each once per emergency and reason. */
export function opsEscalation(o: { emergencyId: string; reason: string; priority: string; text: string }): OutboxMessage[] {
  const params = { ref: ref(o.emergencyId), priority: o.priority, reason: o.text.slice(0, 120) };
  return (["sms", "webhook"] as const).map((channel) => ({
    key: `ops:${o.emergencyId}:${o.reason}:${channel}`, channel, recipient: "ops", event: "ops_escalation", emergencyId: o.emergencyId, payload: { params },
  }));
}

/** A patient who alerted by SMS or USSD hears how things stand, by SMS, at each moment that changes it (a responder assigned, a hospital chosen). */
export function statusToPatient(o: { emergencyId: string; replyTo: string; moment: string; params: Record<string, string | number> }): OutboxMessage {
  return { key: `status:${o.emergencyId}:${o.moment}`, channel: "sms", recipient: o.replyTo, event: "status_update", emergencyId: o.emergencyId, payload: { params: o.params } };
}
