import { schema, t, type SchemaType } from "@colyseus/schema";

/** A node of the cluster and its load, as it last reported to the desk. */
export const OpsNode = schema({
  id: t.string(),
  name: t.string(),
  /** The node's heartbeat is fresh. */
  alive: t.boolean().default(false),
  /** When its last report was made (0: none yet), epoch ms. */
  reportedAt: t.float64().default(0),
  emergencies: t.uint32().default(0),
  rooms: t.uint32().default(0),
  clients: t.uint32().default(0),
  rssMb: t.uint32().default(0),
  cpuPercent: t.uint16().default(0),
}, "OpsNode");
export type OpsNode = SchemaType<typeof OpsNode>;

/** An open emergency on the desk (no medical detail). */
export const OpsEmergency = schema({
  id: t.string(),
  /** The name of the node holding it. */
  node: t.string(),
  status: t.string(),
  priority: t.string(),
  createdAt: t.float64(),
  /** Seconds since the alert, at the desk's last refresh. */
  ageSeconds: t.uint32().default(0),
  lat: t.float64(),
  lng: t.float64(),
  firstAiders: t.array("string"),
  ambulance: t.array("string"),
  offersOut: t.uint8().default(0),
  searching: t.boolean().default(false),
  hospitalId: t.string().default(""),
  /** none | notified | acknowledged */
  hospitalStatus: t.string().default("none"),
  notifiedAt: t.float64().default(0),
  acknowledgedAt: t.float64().default(0),
  etaSeconds: t.int32().default(-1),
  /** Nobody accepted it yet, past `acceptWaitMs` after the alert: highlight. */
  waitingAccept: t.boolean().default(false),
  /** The notified hospital has not acknowledged, past `ackWaitMs` after it was notified: highlight. */
  waitingAck: t.boolean().default(false),
}, "OpsEmergency");
export type OpsEmergency = SchemaType<typeof OpsEmergency>;

/** An on-duty first-aider or ambulance crew on the unit board. */
export const OpsUnit = schema({
  id: t.string(),
  /** first_aider | ambulance_crew */
  kind: t.string(),
  name: t.string(),
  node: t.string(),
  /** assigned | offered | available | unavailable */
  status: t.string(),
  available: t.boolean().default(false),
  online: t.boolean().default(false),
  offers: t.uint8().default(0),
  assignedTo: t.string().default(""),
  lat: t.float64(),
  lng: t.float64(),
  updatedAt: t.float64().default(0),
}, "OpsUnit");
export type OpsUnit = SchemaType<typeof OpsUnit>;

/** A hospital with its capacity and divert, and how many open emergencies are bound for it. */
export const OpsHospital = schema({
  id: t.string(),
  name: t.string(),
  lat: t.float64(),
  lng: t.float64(),
  emergencyBeds: t.uint16(),
  icuBeds: t.uint16(),
  accepting: t.boolean(),
  divertActive: t.boolean().default(false),
  divertSpecialties: t.array("string"),
  divertReason: t.string().default(""),
  divertUntil: t.float64().default(0),
  incoming: t.uint16().default(0),
}, "OpsHospital");
export type OpsHospital = SchemaType<typeof OpsHospital>;

export const OpsState = schema({
  /** When the picture was last refreshed, epoch ms. */
  refreshedAt: t.float64().default(0),
  /** The thresholds the highlights use (HAVEN_OPS_ACCEPT_WAIT_MS, HAVEN_OPS_ACK_WAIT_MS). */
  acceptWaitMs: t.uint32(),
  ackWaitMs: t.uint32(),
  nodes: t.map(OpsNode),
  emergencies: t.map(OpsEmergency),
  units: t.map(OpsUnit),
  hospitals: t.map(OpsHospital),
}, "OpsState");
export type OpsState = SchemaType<typeof OpsState>;
