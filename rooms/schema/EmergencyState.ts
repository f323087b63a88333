import { schema, t, type SchemaType } from "@colyseus/schema";
import { Party, ReadinessItem } from "./common.ts";

/** Vital signs as the responder recorded them. */
export const Signs = schema({
  heartRate: t.int16().default(-1),
  respiratoryRate: t.int16().default(-1),
  systolic: t.int16().default(-1),
  diastolic: t.int16().default(-1),
  spo2: t.int16().default(-1),
  temperature: t.float32().default(-1),
  gcs: t.int16().default(-1),
  avpu: t.string().default(""),
}, "Signs");
export type Signs = SchemaType<typeof Signs>;

/**
 * The latest vitals sample one responder (or their device) streamed, keyed by the sender's id in
 * `Medical.vitals`. -1 for a vital the sender never reported; each sample overwrites only the
 * vitals it carries.
 */
export const VitalsSample = schema({
  heartRate: t.int16().default(-1),
  systolic: t.int16().default(-1),
  diastolic: t.int16().default(-1),
  spo2: t.int16().default(-1),
  temperature: t.float32().default(-1),
  respiratoryRate: t.int16().default(-1),
  /** The device's battery, percent; -1 when no device reported it. */
  battery: t.int16().default(-1),
  /** The device's signal strength, percent (0–100); -1 when no device reported it. */
  signal: t.int16().default(-1),
  /** When the sample was taken (the device's `at`, or when it arrived), epoch ms. */
  at: t.float64().default(0),
  /** When the server received it, epoch ms. */
  receivedAt: t.float64().default(0),
}, "VitalsSample");
export type VitalsSample = SchemaType<typeof VitalsSample>;

/** The patient's own medical profile, as much as a responder needs, when the patient consented. */
export const ProfileSummary = schema({
  shared: t.boolean().default(false),
  bloodType: t.string().default(""),
  allergies: t.array("string"),
  conditions: t.array("string"),
  medications: t.array("string"),
}, "ProfileSummary");
export type ProfileSummary = SchemaType<typeof ProfileSummary>;

/**
 * Medical details (the patient's profile summary, the ATMIST assessment and the streamed vitals). Tagged `.view()` on the state: only clients whose
 * StateView holds it — the assigned responders and the receiving hospital — ever receive it.
 */
export const Medical = schema({
  assessed: t.boolean().default(false),
  age: t.int16().default(-1),
  timeOfIncident: t.float64().default(0),
  mechanism: t.string().default(""),
  injuries: t.array("string"),
  signs: Signs,
  treatment: t.array("string"),
  suspected: t.array("string"),
  assessedBy: t.string().default(""),
  assessedAt: t.float64().default(0),
  profile: ProfileSummary,
  /** The latest vitals sample of each sender, by the sender's id. */
  vitals: t.map(VitalsSample),
  /** The vitals out of range now, as `vital:low` / `vital:high` (from the latest sample carrying each). */
  vitalsAlerts: t.array("string"),
}, "Medical");
export type Medical = SchemaType<typeof Medical>;

/** The receiving hospital, why it was chosen, and how ready it is. */
export const HospitalLink = schema({
  id: t.string().default(""),
  name: t.string().default(""),
  lat: t.float64(),
  lng: t.float64(),
  /** none | notified | acknowledged */
  status: t.string().default("none"),
  notifiedAt: t.float64().default(0),
  acknowledgedAt: t.float64().default(0),
  alerts: t.uint16().default(0),
  etaSeconds: t.int32().default(-1),
  score: t.float32(),
  distanceScore: t.float32(),
  capacityScore: t.float32(),
  specialtyScore: t.float32(),
  distanceM: t.uint32(),
  readiness: t.map(ReadinessItem),
  /** Hospitals that declined or did not acknowledge in time, in order. */
  passedOver: t.array("string"),
  /** The last hospital that went on divert while this patient was bound for it ("" never), why and when. */
  divertedFrom: t.string().default(""),
  divertReason: t.string().default(""),
  divertedAt: t.float64().default(0),
}, "HospitalLink");
export type HospitalLink = SchemaType<typeof HospitalLink>;

/** The EMS intervals (NEMSIS v3 eTimes); 0 until the moment happens. Epoch milliseconds. */
export const Times = schema({
  callReceivedAt: t.float64().default(0),     // eTimes.01
  responderNotifiedAt: t.float64().default(0), // eTimes.03
  enRouteAt: t.float64().default(0),          // eTimes.05
  onSceneAt: t.float64().default(0),          // eTimes.06
  leftSceneAt: t.float64().default(0),        // eTimes.09
  atHospitalAt: t.float64().default(0),       // eTimes.11
  handedOverAt: t.float64().default(0),       // eTimes.12
}, "Times");
export type Times = SchemaType<typeof Times>;

export const TimelineEvent = schema({
  seq: t.uint32(),
  type: t.string(),
  at: t.float64(),
  actor: t.string(),
  detail: t.string().default(""),
}, "TimelineEvent");
export type TimelineEvent = SchemaType<typeof TimelineEvent>;

/**
 * A chat message between the emergency's parties and its receiving hospital. `seq` is its place in
 * the emergency's timeline, where it is kept (its text sealed at rest).
 */
export const ChatMessage = schema({
  seq: t.uint32(),
  at: t.float64(),
  /** `<role>:<userId>` of the sender. */
  from: t.string(),
  role: t.string(),
  name: t.string().default(""),
  text: t.string(),
  /** The sender's own id for the message ("" none), to recognise a resend. */
  clientId: t.string().default(""),
}, "ChatMessage");
export type ChatMessage = SchemaType<typeof ChatMessage>;

/**
 * The view tag of the chat: a client's StateView holds it with this tag (the patient's view holds
 * only the chat; the medical view of responders and hospital staff holds both).
 */
export const CHAT_VIEW = 2;
/**
 * The view tag of the medical record: only the medical view holds it. A tag of its own (not the
 * default) keeps it out of a view that holds only the chat.
 */
export const MEDICAL_VIEW = 1;

/** The emergency's chat, as far as the live state keeps it. */
export const Chat = schema({
  /** The newest messages, oldest first (HAVEN_CHAT_KEEP). */
  messages: t.array(ChatMessage),
}, "Chat");
export type Chat = SchemaType<typeof Chat>;

export const Dispatch = schema({
  firstAiderRadiusM: t.uint32().default(0),
  ambulanceRadiusM: t.uint32().default(0),
  offersOut: t.uint8().default(0),
  searching: t.boolean().default(false),
}, "Dispatch");
export type Dispatch = SchemaType<typeof Dispatch>;

export const EmergencyState = schema({
  id: t.string(),
  /** alerted | dispatched | on_scene | transporting | at_hospital | handed_over | cancelled */
  status: t.string().default("alerted"),
  /** critical | high | medium */
  priority: t.string().default("high"),
  bypass: t.boolean().default(false),
  createdAt: t.float64(),
  patient: Party,
  firstAiders: t.map(Party),
  ambulance: t.map(Party),
  hospital: HospitalLink,
  times: Times,
  dispatch: Dispatch,
  timeline: t.array(TimelineEvent),
  medical: t.ref(Medical).view(MEDICAL_VIEW),
  /** The chat (its newest messages). Tagged `.view()`: only the chat's parties receive it. */
  chat: t.ref(Chat).view(CHAT_VIEW),
}, "EmergencyState");
export type EmergencyState = SchemaType<typeof EmergencyState>;
