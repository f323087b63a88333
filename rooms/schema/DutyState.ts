import { schema, t, type SchemaType } from "@colyseus/schema";

/** An offer to attend an emergency, as the responder's duty socket sees it. */
export const Offer = schema({
  id: t.string(),
  emergencyId: t.string(),
  priority: t.string(),
  lat: t.float64(),
  lng: t.float64(),
  distanceM: t.uint32(),
  expiresAt: t.float64(),
}, "Offer");
export type Offer = SchemaType<typeof Offer>;

export const DutyState = schema({
  responderId: t.string(),
  kind: t.string(),
  available: t.boolean().default(true),
  lat: t.float64(),
  lng: t.float64(),
  updatedAt: t.float64().default(0),
  /** The emergency this responder is assigned to, or "". */
  assignedTo: t.string().default(""),
  offers: t.map(Offer),
}, "DutyState");
export type DutyState = SchemaType<typeof DutyState>;
