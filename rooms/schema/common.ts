import { schema, t, type SchemaType } from "@colyseus/schema";

/**
 * A party on the map. Coordinates are float64 (schema's "number" would round them to float32,
 * up to ~0.85 m off); accuracy, heading and speed need no more than float32.
 */
export const Party = schema({
  id: t.string(),
  role: t.string(),
  name: t.string(),
  lat: t.float64(),
  lng: t.float64(),
  accuracy: t.float32(),
  heading: t.float32(),
  speed: t.float32(),
  updatedAt: t.float64(),
  online: t.boolean().default(false),
}, "Party");
export type Party = SchemaType<typeof Party>;

export const ReadinessItem = schema({
  key: t.string(),
  label: t.string(),
  ready: t.boolean().default(false),
  updatedAt: t.float64(),
}, "ReadinessItem");
export type ReadinessItem = SchemaType<typeof ReadinessItem>;
