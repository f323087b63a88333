/**
 * When operations is alerted about an emergency and when an idle one expires, on plain values.
 * Each reason is raised once per emergency.
 */
export type EscalationReason = "no_responder" | "no_acknowledgement";

/** The roles still without an accepted responder, in the order they are named. */
export function missingRoles(firstAiders: number, ambulance: number): ("first_aider" | "ambulance_crew")[] {
  const missing: ("first_aider" | "ambulance_crew")[] = [];
  if (firstAiders === 0) missing.push("first_aider");
  if (ambulance === 0) missing.push("ambulance_crew");
  return missing;
}

/** The text of a `no_responder` escalation. */
export function noResponderText(missing: readonly string[], boundMs: number): string {
  return `no ${missing.join(" or ")} accepted within ${readableDuration(boundMs)} of the alert`;
}

/** The text of a `no_acknowledgement` escalation. */
export function noAcknowledgementText(boundMs: number): string {
  return `no hospital acknowledged within ${readableDuration(boundMs)} of the assessment`;
}

/** The reason an idle emergency expired. */
export function idleText(boundMs: number): string {
  return `no activity for ${readableDuration(boundMs)}`;
}

/** The reasons already raised, read back from the timeline's `escalated` events ("reason: text"). */
export function raisedReasons(timeline: Iterable<{ type: string; detail: string }>): Set<string> {
  const raised = new Set<string>();
  for (const e of timeline) if (e.type === "escalated") raised.add(e.detail.slice(0, e.detail.indexOf(":")));
  return raised;
}

/** A duration as people read it. */
export function readableDuration(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}
