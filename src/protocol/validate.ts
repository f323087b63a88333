import FastestValidator from "fastest-validator";

// CommonJS package: at run time the default import is the class itself.
const Validator = FastestValidator as unknown as typeof FastestValidator.default;
import { HavenError } from "./errors.ts";

/**
 * Every socket message and HTTP body passes one of these compiled schemas before it touches
 * state. The schemas are literals, compiled once at start and never built from data; every object
 * is `$$strict`, every string and array has a `max`, and nothing is converted (conversion would
 * mutate the input).
 */

const v = new Validator({ haltOnFirstError: false, useNewCustomCheckerFunction: true });

const lat = { type: "number", min: -90, max: 90 } as const;
const lng = { type: "number", min: -180, max: 180 } as const;
const id = { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/ } as const;
const idempotencyKey = { type: "string", min: 8, max: 64, pattern: /^[A-Za-z0-9_-]+$/, optional: true } as const;
const shortText = (max: number, optional = true) => ({ type: "string", max, optional, trim: false }) as const;
export const SPECIALTIES = ["trauma", "cardiac", "stroke", "pediatric", "maternity", "burns", "respiratory", "general"] as const;
export const PRIORITIES = ["critical", "high", "medium"] as const;
export const CANCEL_REASONS = ["false_alarm", "resolved_on_scene", "patient_declined", "transported_otherwise", "duplicate", "other"] as const;

/** Why an operations action was taken: required, recorded in the audit log. */
const reason = { type: "string", min: 1, max: 200, pattern: /\S/, trim: false } as const;
/** A chat message's text (its length is bounded again by HAVEN_CHAT_MAX_CHARS). */
const chatText = { type: "string", min: 1, max: 2000, pattern: /\S/, trim: false } as const;

const position = {
  $$strict: true,
  lat, lng,
  accuracy: { type: "number", min: 0, max: 100_000, optional: true },
  heading: { type: "number", min: 0, max: 360, optional: true },
  speed: { type: "number", min: 0, max: 150, optional: true },
} as const;

const signs = {
  type: "object", strict: true, optional: true,
  props: {
    heartRate: { type: "number", integer: true, min: 0, max: 300, optional: true },
    respiratoryRate: { type: "number", integer: true, min: 0, max: 80, optional: true },
    systolic: { type: "number", integer: true, min: 0, max: 300, optional: true },
    diastolic: { type: "number", integer: true, min: 0, max: 200, optional: true },
    spo2: { type: "number", integer: true, min: 0, max: 100, optional: true },
    temperature: { type: "number", min: 25, max: 45, optional: true },
    gcs: { type: "number", integer: true, min: 3, max: 15, optional: true },
    avpu: { type: "enum", values: ["alert", "voice", "pain", "unresponsive"], optional: true },
  },
} as const;

/** A hospital going on divert (or off it): `until` is checked against the clock by the handler (future, ≤ 24 h). */
const divert = {
  $$strict: true,
  active: { type: "boolean" },
  specialties: { type: "array", max: SPECIALTIES.length, unique: true, items: { type: "enum", values: SPECIALTIES }, optional: true },
  reason: { type: "string", min: 1, max: 200, trim: false },
  until: { type: "number", integer: true, min: 1_000_000_000_000, max: 9_999_999_999_999, optional: true },
} as const;

/** One vitals sample (the `vitals` message): physiological bounds, a device's battery and signal in percent. */
const vitals = {
  $$strict: true,
  heartRate: { type: "number", integer: true, min: 0, max: 300, optional: true },
  systolic: { type: "number", integer: true, min: 0, max: 300, optional: true },
  diastolic: { type: "number", integer: true, min: 0, max: 200, optional: true },
  spo2: { type: "number", integer: true, min: 0, max: 100, optional: true },
  temperature: { type: "number", min: 25, max: 45, optional: true },
  respiratoryRate: { type: "number", integer: true, min: 0, max: 80, optional: true },
  device: {
    type: "object", strict: true, optional: true,
    props: {
      battery: { type: "number", integer: true, min: 0, max: 100 },
      signal: { type: "number", integer: true, min: 0, max: 100 },
    },
  },
  at: { type: "number", integer: true, min: 1_000_000_000_000, max: 9_999_999_999_999, optional: true },
} as const;

const schemas = {
  // ---- emergency room
  position,
  vitals,
  responderStatus: { $$strict: true, step: { type: "enum", values: ["en_route", "on_scene", "left_scene", "at_hospital"] }, idempotencyKey },
  assessment: {
    $$strict: true,
    idempotencyKey,
    age: { type: "number", integer: true, min: 0, max: 130, optional: true },
    timeOfIncident: { type: "number", integer: true, min: 1_000_000_000_000, max: 9_999_999_999_999, optional: true },
    mechanism: shortText(500, false),
    injuries: { type: "array", max: 20, items: { type: "string", min: 1, max: 200 } },
    signs,
    treatment: { type: "array", max: 20, items: { type: "string", min: 1, max: 200 } },
    priority: { type: "enum", values: PRIORITIES, optional: true },
    suspected: { type: "array", max: SPECIALTIES.length, unique: true, items: { type: "enum", values: SPECIALTIES }, optional: true },
  },
  cancel: { $$strict: true, reason: { type: "enum", values: CANCEL_REASONS }, note: shortText(200), idempotencyKey },

  // ---- duty room
  availability: { $$strict: true, available: { type: "boolean" } },
  acceptOffer: { $$strict: true, offerId: id },
  declineOffer: { $$strict: true, offerId: id, reason: shortText(200) },

  // ---- hospital room
  hospitalAck: { $$strict: true, emergencyId: id, idempotencyKey },
  hospitalDecline: { $$strict: true, emergencyId: id, reason: shortText(200, false), idempotencyKey },
  readiness: {
    $$strict: true,
    emergencyId: id,
    key: { type: "string", min: 1, max: 40, pattern: /^[a-z0-9_]+$/ },
    label: shortText(80),
    ready: { type: "boolean" },
    idempotencyKey,
  },
  capacity: {
    $$strict: true,
    emergencyBeds: { type: "number", integer: true, min: 0, max: 10_000 },
    icuBeds: { type: "number", integer: true, min: 0, max: 10_000, optional: true },
    accepting: { type: "boolean" },
  },
  handover: { $$strict: true, emergencyId: id, notes: shortText(1000), idempotencyKey },
  divert,
  hospitalChat: { $$strict: true, emergencyId: id, text: chatText, clientId: idempotencyKey },

  // ---- emergency room: chat
  chat: { $$strict: true, text: chatText, clientId: idempotencyKey },

  // ---- ops room (every action of the desk carries why it was taken)
  opsOpen: { $$strict: true, emergencyId: id, reason },
  opsReassignHospital: { $$strict: true, emergencyId: id, hospitalId: id, reason, idempotencyKey },
  opsAssignResponder: { $$strict: true, emergencyId: id, responderId: id, reason, idempotencyKey },
  opsCancel: { $$strict: true, emergencyId: id, cancelReason: { type: "enum", values: CANCEL_REASONS }, reason, idempotencyKey },
  opsNotice: {
    $$strict: true,
    text: { type: "string", min: 1, max: 500, pattern: /\S/, trim: false },
    reason,
    region: {
      type: "object", strict: true, optional: true,
      props: { lat, lng, radiusM: { type: "number", min: 1, max: 1_000_000 } },
    },
  },

  // ---- HTTP bodies
  register: {
    $$strict: true,
    email: { type: "email", max: 254 },
    password: { type: "string", min: 12, max: 128 },
    name: { type: "string", min: 1, max: 120 },
    phone: { type: "string", max: 20, pattern: /^\+?[0-9]{7,15}$/, optional: true },
    role: { type: "enum", values: ["patient", "first_aider", "ambulance_crew", "hospital_staff", "hospital_admin", "ops_admin"] },
    hospitalId: { ...id, optional: true },
  },
  login: { $$strict: true, email: { type: "email", max: 254 }, password: { type: "string", min: 1, max: 128 } },
  refresh: { $$strict: true, refreshToken: { type: "string", min: 20, max: 200 } },
  logout: { $$strict: true, refreshToken: { type: "string", min: 20, max: 200 } },
  bypass: {
    $$strict: true,
    deviceId: { type: "string", min: 8, max: 128, pattern: /^[A-Za-z0-9_.:-]+$/ },
    phone: { type: "string", max: 20, pattern: /^\+?[0-9]{7,15}$/, optional: true },
    name: shortText(120),
  },
  alert: {
    $$strict: true,
    lat, lng,
    accuracy: { type: "number", min: 0, max: 100_000, optional: true },
    priority: { type: "enum", values: PRIORITIES, optional: true },
    note: shortText(500),
  },
  location: position,
  restCancel: { $$strict: true, reason: { type: "enum", values: CANCEL_REASONS }, note: shortText(200), idempotencyKey },
  availabilityUpdate: {
    $$strict: true,
    emergencyBeds: { type: "number", integer: true, min: 0, max: 10_000 },
    icuBeds: { type: "number", integer: true, min: 0, max: 10_000, optional: true },
    accepting: { type: "boolean" },
  },
  dutyStart: { $$strict: true },
  bypassRenew: { $$strict: true },
  hospitalRegistration: {
    $$strict: true,
    id: { type: "string", min: 2, max: 64, pattern: /^[a-z0-9][a-z0-9-]*$/ },
    name: { type: "string", min: 1, max: 200 },
    lat, lng,
    specialties: { type: "array", min: 1, max: SPECIALTIES.length, unique: true, items: { type: "enum", values: SPECIALTIES } },
    emergencyBeds: { type: "number", integer: true, min: 0, max: 10_000 },
    icuBeds: { type: "number", integer: true, min: 0, max: 10_000 },
    accepting: { type: "boolean" },
  },
  divertUpdate: divert,
  hospitalApproval: { $$strict: true, approved: { type: "enum", values: [true] } },
  verifyResponder: { $$strict: true, verified: { type: "boolean" } },
  notificationPreferences: {
    $$strict: true,
    language: { type: "enum", values: ["en", "sw"] },
    channels: { type: "array", min: 1, max: 2, unique: true, items: { type: "enum", values: ["push", "sms"] } },
  },
  pushSubscription: {
    $$strict: true,
    endpoint: { type: "string", min: 12, max: 500, pattern: /^https?:\/\/[^\s]+$/ },
    expirationTime: { type: "number", integer: true, min: 0, optional: true },
    keys: {
      type: "object", strict: true,
      props: {
        p256dh: { type: "string", min: 80, max: 100, pattern: /^[A-Za-z0-9_-]+=*$/ },
        auth: { type: "string", min: 16, max: 32, pattern: /^[A-Za-z0-9_-]+=*$/ },
      },
    },
  },
  outboxRetry: { $$strict: true },
  hospitalContact: {
    $$strict: true,
    dutyPhone: { type: "string", max: 20, pattern: /^\+?[0-9]{7,15}$/, optional: true },
    webhookUrl: { type: "string", min: 12, max: 500, pattern: /^https?:\/\/[^\s]+$/, optional: true },
  },
  joinOptions: { $$strict: true },
  reconnectOptions: { $$strict: true, reconnectionToken: { type: "string", min: 1, max: 128 } },
} as const;

export type SchemaName = keyof typeof schemas;

/** A compiled schema: true, or what is wrong (field and rule names, never the values). */
export type Check = (value: unknown) => true | { type: string; field?: string; message?: string }[];

/** Compiles a literal schema with Haven's validator settings (every schema of Haven goes through here). */
export function compileSchema(schema: object): Check {
  return v.compile(schema as never) as unknown as Check;
}

/** Runs a compiled check; throws INVALID_PAYLOAD naming each bad field (at most 8). */
export function check(compiledCheck: Check, value: unknown): void {
  const result = compiledCheck(value);
  if (result === true) return;
  const problems = result.slice(0, 8).map((e) => ({ field: e.field, rule: e.type, message: e.message }));
  throw new HavenError("INVALID_PAYLOAD", problems.map((p) => p.message).join("; "), problems);
}

const compiled = Object.fromEntries(
  Object.entries(schemas).map(([name, schema]) => [name, compileSchema(schema)]),
) as Record<SchemaName, Check>;

const MAX_DEPTH = 6;
const MAX_NODES = 512;

/**
 * True when `value` is built only of plain objects, arrays, strings, finite numbers, booleans
 * and null — what JSON and a restricted msgpack decode can produce. Anything else (Set, Map,
 * RegExp, Date, Error, typed arrays, cycles, class instances) is hostile here.
 */
export function isPlainData(value: unknown): boolean {
  return plainDataProblem(value) === undefined;
}

/** Text Haven stores or shows: well-formed Unicode (no lone surrogate) and no NUL character. */
export function isCleanText(x: string): boolean {
  return x.isWellFormed() && !x.includes("\0");
}

/** What makes `value` not plain data (see `isPlainData`), or undefined when it is. */
export function plainDataProblem(value: unknown): string | undefined {
  walked = 0;
  badText = false;
  sawNull = false;
  if (walkPlain(value, 0)) return undefined;
  return badText ? "text must be well-formed Unicode without NUL characters" : "the payload must be a plain object";
}

// The walk runs on every message: it allocates nothing (no closures, key arrays or visited set;
// a cycle or a blown-up shared structure runs into the depth or node bound instead).
let walked = 0;
let badText = false;
let sawNull = false;

function cleanText(x: string): boolean {
  if (isCleanText(x)) return true;
  badText = true;
  return false;
}

function walkPlain(x: unknown, depth: number): boolean {
  if (++walked > MAX_NODES || depth > MAX_DEPTH) return false;
  if (x === null) {
    sawNull = true;
    return true;
  }
  switch (typeof x) {
    case "string": return cleanText(x);
    case "boolean": return true;
    case "number": return Number.isFinite(x);
    case "object": {
      if (Array.isArray(x)) {
        if (Object.getPrototypeOf(x) !== Array.prototype) return false;
        for (let i = 0; i < x.length; i++) if (!walkPlain(x[i], depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(x);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in x) {
        if (!Object.hasOwn(x, key)) continue; // own keys only, as JSON and msgpack make them
        if (key === "__proto__" || key === "constructor" || key === "prototype") return false;
        if (!cleanText(key)) return false;
        if (!walkPlain((x as Record<string, unknown>)[key], depth + 1)) return false;
      }
      return Object.getOwnPropertySymbols(x).length === 0;
    }
    default: return false;
  }
}

/**
 * Refuses a null anywhere in a payload. fastest-validator lets null through every optional field,
 * where Haven's handlers would write it into the state (a schema field then vanishes for every
 * client); no schema has a nullable field, so an optional field is left out, never null.
 */
export function rejectNulls(value: unknown, path = ""): void {
  if (value === null) {
    const field = path || "payload";
    throw new HavenError("INVALID_PAYLOAD", `'${field}' must not be null: leave an optional field out`, [{ field, rule: "nullable", message: `'${field}' must not be null` }]);
  }
  if (typeof value !== "object") return;
  if (Array.isArray(value)) value.forEach((x, i) => rejectNulls(x, `${path}[${i}]`));
  else for (const [k, x] of Object.entries(value)) rejectNulls(x, path ? `${path}.${k}` : k);
}

/** Validates `value` against a named schema; throws INVALID_PAYLOAD naming each bad field. */
export function validate<T = Record<string, unknown>>(name: SchemaName, value: unknown): T {
  if (value === undefined) value = {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HavenError("INVALID_PAYLOAD", "the payload must be a plain object");
  }
  const problem = plainDataProblem(value);
  if (problem !== undefined) throw new HavenError("INVALID_PAYLOAD", problem);
  if (sawNull) rejectNulls(value); // names the field; plain data: bounded in depth and size
  check(compiled[name], value);
  return value as T;
}
