import { schema, t, type SchemaType } from "@colyseus/schema";
import { ReadinessItem } from "./common.ts";

/** One emergency on its way to this hospital, as the wallboard shows it. */
export const Incoming = schema({
  emergencyId: t.string(),
  priority: t.string(),
  status: t.string(),
  /** notified | acknowledged | handed_over | cancelled (a declined or withdrawn one leaves the board) */
  hospitalStatus: t.string(),
  notifiedAt: t.float64(),
  acknowledgedAt: t.float64().default(0),
  etaSeconds: t.int32().default(-1),
  updatedAt: t.float64(),
  /** Assessment summary for the receiving team (ATMIST in one paragraph). */
  handoverSummary: t.string().default(""),
  score: t.float32(),
  distanceScore: t.float32(),
  capacityScore: t.float32(),
  specialtyScore: t.float32(),
  readiness: t.map(ReadinessItem),
  /** Vitals out of range now, as `vital:low` / `vital:high` (names and directions, never values); empty when none. */
  vitalsAlerts: t.array("string"),
  handedOverAt: t.float64().default(0),
}, "Incoming");
export type Incoming = SchemaType<typeof Incoming>;

export const HospitalState = schema({
  id: t.string(),
  name: t.string(),
  emergencyBeds: t.uint16(),
  icuBeds: t.uint16(),
  accepting: t.boolean(),
  incoming: t.map(Incoming),
  /** On divert now (cleared by itself at `divertUntil`); `divertSpecialties` empty: every patient. */
  divertActive: t.boolean().default(false),
  divertSpecialties: t.array("string"),
  divertReason: t.string().default(""),
  divertUntil: t.float64().default(0),
}, "HospitalState");
export type HospitalState = SchemaType<typeof HospitalState>;
