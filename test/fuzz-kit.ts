import fc from "fast-check";
import { Packr, Unpackr } from "msgpackr";
import { encode } from "@colyseus/schema";
import type { Room } from "@colyseus/sdk";
import { metric, sleep, type Haven } from "./harness.ts";

/**
 * Shared parts of the property-based tests (test/fuzz-*.test.ts): the seed, a model of every
 * payload schema written from docs/protocol.md (not from src/protocol/validate.ts, so that the
 * two are checked against each other), generators of valid, nearly valid and hostile payloads,
 * and the checks every case ends with.
 *
 * Reproduce a failure with the seed it prints: HAVEN_FUZZ_SEED=<seed> (and HAVEN_FUZZ_RUNS to
 * change the number of cases per property).
 */
export const SEED = Number(process.env.HAVEN_FUZZ_SEED ?? 20_261_202);
export const RUNS = Number(process.env.HAVEN_FUZZ_RUNS ?? 250);

/** fast-check parameters: seeded, and the seed printed with any counterexample. */
export function params(numRuns = RUNS): fc.Parameters<unknown> {
  return { seed: SEED, numRuns, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true };
}

// ------------------------------------------------------------------ error codes (docs/protocol.md §6)

export const DOCUMENTED_CODES: Record<string, number> = {
  INVALID_PAYLOAD: 400, MALFORMED_FRAME: 400, UNKNOWN_MESSAGE: 400, FRAME_TOO_LARGE: 413, BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415, NOT_FOUND: 404, METHOD_NOT_ALLOWED: 405, RATE_LIMITED: 429, UNAUTHENTICATED: 401,
  TOKEN_INVALID: 401, TOKEN_EXPIRED: 401, INVALID_CREDENTIALS: 401, REFRESH_TOKEN_INVALID: 401, FORBIDDEN: 403,
  NOT_ENTITLED: 403, BYPASS_USED: 403, NOT_VERIFIED: 403, NOT_RECEIVING_HOSPITAL: 403, EMAIL_TAKEN: 409,
  EMERGENCY_CLOSED: 409, INVALID_TRANSITION: 409, OFFER_EXPIRED: 409, ALREADY_ASSIGNED: 409, EMERGENCY_NOT_FOUND: 404,
  ROOM_NOT_FOUND: 404, OFFER_NOT_FOUND: 404, HOSPITAL_NOT_FOUND: 404, HOSPITAL_EXISTS: 409, PROFILE_NOT_FOUND: 404,
  PROFILE_EXISTS: 409, RESPONDER_NOT_ON_DUTY: 409, UNAVAILABLE: 503, INTERNAL: 500,
};

// ------------------------------------------------------------------ the schema model and its oracle

export type Spec =
  | { t: "num"; min: number; max: number; int?: boolean; opt?: boolean }
  | { t: "str"; min?: number; max: number; pattern?: RegExp; gen?: fc.Arbitrary<string>; opt?: boolean }
  | { t: "email"; max: number; opt?: boolean }
  | { t: "enum"; values: readonly unknown[]; opt?: boolean }
  | { t: "bool"; opt?: boolean }
  | { t: "arr"; min?: number; max: number; items: Spec; unique?: boolean; opt?: boolean }
  | { t: "obj"; props: Record<string, Spec>; opt?: boolean };

export const opt = <S extends Spec>(s: S): S => ({ ...s, opt: true });
const ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const fromChars = (chars: string, min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...chars.split("")), minLength: min, maxLength: max });
export const idSpec: Spec = { t: "str", min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/, gen: fromChars(ID_CHARS, 1, 64) };
export const idemSpec: Spec = opt({ t: "str", min: 8, max: 64, pattern: /^[A-Za-z0-9_-]+$/, gen: fromChars(ID_CHARS, 8, 64) });
export const text = (max: number, optional = true): Spec => ({ t: "str", max, opt: optional });
const lat: Spec = { t: "num", min: -90, max: 90 };
const lng: Spec = { t: "num", min: -180, max: 180 };
const SPECIALTIES = ["trauma", "cardiac", "stroke", "pediatric", "maternity", "burns", "respiratory", "general"];
const PRIORITIES = ["critical", "high", "medium"];
const CANCEL_REASONS = ["false_alarm", "resolved_on_scene", "patient_declined", "transported_otherwise", "duplicate", "other"];
const phone: Spec = opt({ t: "str", max: 20, pattern: /^\+?[0-9]{7,15}$/, gen: fc.tuple(fc.boolean(), fromChars("0123456789", 6, 16)).map(([p, d]) => (p ? "+" : "") + d) });
const obj = (props: Record<string, Spec>): Spec & { t: "obj" } => ({ t: "obj", props });
/** Text with at least one non-space character (a chat message, a notice, an ops action's reason). */
const notBlank = (max: number): Spec => ({ t: "str", min: 1, max, pattern: /\S/ });
const reason = notBlank(200);
const chatText = notBlank(2000);
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const url: Spec = {
  t: "str", min: 12, max: 500, pattern: /^https?:\/\/[^\s]+$/,
  gen: fc.tuple(fc.constantFrom("https://push.example.org/", "http://127.0.0.1:9/", "https://hooks.example.com/h/"), fromChars(ID_CHARS + "/.?=&%", 0, 60)).map(([a, b]) => a + b),
};
/** Phone numbers as a gateway sends them: mostly Kenyan, some not numbers at all. */
const gatewayPhone = fc.oneof(
  fc.tuple(fc.constantFrom("+2547", "07", "+2541", "+1"), fromChars("0123456789", 7, 9)).map(([a, b]) => a + b),
  fromChars("0123456789+", 3, 20),
);
const smsText = fc.oneof(fc.constantFrom("HELP", "help accident at Kencom", "STATUS", "hali", "msaada Mombasa", "hello"), fc.string({ maxLength: 480 }));

export const SCHEMAS = {
  position: obj({ lat, lng, accuracy: opt({ t: "num", min: 0, max: 100_000 }), heading: opt({ t: "num", min: 0, max: 360 }), speed: opt({ t: "num", min: 0, max: 150 }) }),
  status: obj({ step: { t: "enum", values: ["en_route", "on_scene", "left_scene", "at_hospital"] }, idempotencyKey: idemSpec }),
  assessment: obj({
    idempotencyKey: idemSpec,
    age: opt({ t: "num", int: true, min: 0, max: 130 }),
    timeOfIncident: opt({ t: "num", int: true, min: 1e12, max: 9_999_999_999_999 }),
    mechanism: text(500, false),
    injuries: { t: "arr", max: 20, items: { t: "str", min: 1, max: 200 } },
    treatment: { t: "arr", max: 20, items: { t: "str", min: 1, max: 200 } },
    signs: opt(obj({
      heartRate: opt({ t: "num", int: true, min: 0, max: 300 }), respiratoryRate: opt({ t: "num", int: true, min: 0, max: 80 }),
      systolic: opt({ t: "num", int: true, min: 0, max: 300 }), diastolic: opt({ t: "num", int: true, min: 0, max: 200 }),
      spo2: opt({ t: "num", int: true, min: 0, max: 100 }), gcs: opt({ t: "num", int: true, min: 3, max: 15 }),
      temperature: opt({ t: "num", min: 25, max: 45 }), avpu: opt({ t: "enum", values: ["alert", "voice", "pain", "unresponsive"] }),
    })),
    priority: opt({ t: "enum", values: PRIORITIES }),
    suspected: opt({ t: "arr", max: 8, unique: true, items: { t: "enum", values: SPECIALTIES } }),
  }),
  vitals: obj({
    heartRate: opt({ t: "num", int: true, min: 0, max: 300 }), systolic: opt({ t: "num", int: true, min: 0, max: 300 }),
    diastolic: opt({ t: "num", int: true, min: 0, max: 200 }), spo2: opt({ t: "num", int: true, min: 0, max: 100 }),
    temperature: opt({ t: "num", min: 25, max: 45 }), respiratoryRate: opt({ t: "num", int: true, min: 0, max: 80 }),
    device: opt(obj({ battery: { t: "num", int: true, min: 0, max: 100 }, signal: { t: "num", int: true, min: 0, max: 100 } })),
    at: opt({ t: "num", int: true, min: 1e12, max: 9_999_999_999_999 }),
  }),
  cancel: obj({ reason: { t: "enum", values: CANCEL_REASONS }, note: text(200), idempotencyKey: idemSpec }),
  availability: obj({ available: { t: "bool" } }),
  acceptOffer: obj({ offerId: idSpec }),
  declineOffer: obj({ offerId: idSpec, reason: text(200) }),
  acknowledge: obj({ emergencyId: idSpec, idempotencyKey: idemSpec }),
  decline: obj({ emergencyId: idSpec, reason: text(200, false), idempotencyKey: idemSpec }),
  readiness: obj({
    emergencyId: idSpec,
    key: { t: "str", min: 1, max: 40, pattern: /^[a-z0-9_]+$/, gen: fromChars("abcdefghijklmnopqrstuvwxyz0123456789_", 1, 40) },
    label: text(80), ready: { t: "bool" }, idempotencyKey: idemSpec,
  }),
  capacity: obj({ emergencyBeds: { t: "num", int: true, min: 0, max: 10_000 }, icuBeds: opt({ t: "num", int: true, min: 0, max: 10_000 }), accepting: { t: "bool" } }),
  handover: obj({ emergencyId: idSpec, notes: text(1000), idempotencyKey: idemSpec }),
  // ---- chat (docs/protocol.md §12): the emergency room's, and the wallboard's
  chat: obj({ text: chatText, clientId: idemSpec }),
  hospitalChat: obj({ emergencyId: idSpec, text: chatText, clientId: idemSpec }),
  // ---- the ops room (docs/protocol.md §11): every action carries a reason
  opsOpen: obj({ emergencyId: idSpec, reason }),
  opsReassignHospital: obj({ emergencyId: idSpec, hospitalId: idSpec, reason, idempotencyKey: idemSpec }),
  opsAssignResponder: obj({ emergencyId: idSpec, responderId: idSpec, reason, idempotencyKey: idemSpec }),
  opsCancel: obj({ emergencyId: idSpec, cancelReason: { t: "enum", values: CANCEL_REASONS }, reason, idempotencyKey: idemSpec }),
  opsNotice: obj({
    text: { t: "str", min: 1, max: 500, pattern: /\S/ }, reason,
    region: opt(obj({ lat, lng, radiusM: { t: "num", min: 1, max: 1_000_000 } })),
  }),
  // ---- HTTP bodies (docs/protocol.md §8)
  register: obj({
    email: { t: "email", max: 254 }, password: { t: "str", min: 12, max: 128 }, name: { t: "str", min: 1, max: 120 }, phone,
    role: { t: "enum", values: ["patient", "first_aider", "ambulance_crew", "hospital_staff", "hospital_admin", "ops_admin"] },
    hospitalId: opt(idSpec),
  }),
  login: obj({ email: { t: "email", max: 254 }, password: { t: "str", min: 1, max: 128 } }),
  refreshToken: obj({ refreshToken: { t: "str", min: 20, max: 200 } }),
  bypass: obj({
    deviceId: { t: "str", min: 8, max: 128, pattern: /^[A-Za-z0-9_.:-]+$/, gen: fromChars(ID_CHARS + ".:", 8, 128) },
    phone, name: text(120),
  }),
  alert: obj({ lat, lng, accuracy: opt({ t: "num", min: 0, max: 100_000 }), priority: opt({ t: "enum", values: PRIORITIES }), note: text(500) }),
  restCancel: obj({ reason: { t: "enum", values: CANCEL_REASONS }, note: text(200), idempotencyKey: idemSpec }),
  availabilityUpdate: obj({ emergencyBeds: { t: "num", int: true, min: 0, max: 10_000 }, icuBeds: opt({ t: "num", int: true, min: 0, max: 10_000 }), accepting: { t: "bool" } }),
  empty: obj({}),
  reconnect: obj({ reconnectionToken: { t: "str", min: 1, max: 128 } }),
  hospitalRegistration: obj({
    id: { t: "str", min: 2, max: 64, pattern: /^[a-z0-9][a-z0-9-]*$/, gen: fromChars("abcdefghijklmnopqrstuvwxyz0123456789-", 2, 64) },
    name: { t: "str", min: 1, max: 200 }, lat, lng,
    specialties: { t: "arr", min: 1, max: 8, unique: true, items: { t: "enum", values: SPECIALTIES } },
    emergencyBeds: { t: "num", int: true, min: 0, max: 10_000 }, icuBeds: { t: "num", int: true, min: 0, max: 10_000 }, accepting: { t: "bool" },
  }),
  hospitalApproval: obj({ approved: { t: "enum", values: [true] } }),
  verifyResponder: obj({ verified: { t: "bool" } }),
  medicalProfile: obj({
    bloodType: { t: "enum", values: ["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-", "unknown"] },
    allergies: { t: "arr", max: 50, items: obj({ substance: { t: "str", min: 1, max: 100 }, reaction: opt({ t: "str", min: 1, max: 200 }), severity: opt({ t: "enum", values: ["mild", "moderate", "severe", "life_threatening"] }) }) },
    conditions: { t: "arr", max: 50, items: { t: "str", min: 1, max: 200 } },
    medications: { t: "arr", max: 50, items: obj({ name: { t: "str", min: 1, max: 100 }, dose: opt({ t: "str", min: 1, max: 100 }), frequency: opt({ t: "str", min: 1, max: 100 }) }) },
    emergencyContacts: { t: "arr", max: 5, items: obj({ name: { t: "str", min: 1, max: 120 }, relation: opt({ t: "str", min: 1, max: 60 }), phone: { t: "str", max: 16, pattern: /^\+?[0-9]{7,15}$/, gen: fromChars("0123456789", 7, 15) } }) },
    insurance: opt(obj({ provider: { t: "str", min: 1, max: 120 }, memberNumber: { t: "str", min: 1, max: 64 } })),
    consent: obj({ shareInEmergency: { t: "bool" }, version: { t: "num", int: true, min: 1, max: 10_000 } }),
  }),
  // ---- notifications (docs/protocol.md §8)
  notificationPreferences: obj({
    language: { t: "enum", values: ["en", "sw"] },
    channels: { t: "arr", min: 1, max: 2, unique: true, items: { t: "enum", values: ["push", "sms"] } },
  }),
  pushSubscription: obj({
    endpoint: url,
    expirationTime: opt({ t: "num", int: true, min: 0, max: Number.MAX_VALUE }),
    keys: obj({
      p256dh: { t: "str", min: 80, max: 100, pattern: /^[A-Za-z0-9_-]+=*$/, gen: fromChars(B64URL, 80, 100) },
      auth: { t: "str", min: 16, max: 32, pattern: /^[A-Za-z0-9_-]+=*$/, gen: fromChars(B64URL, 16, 32) },
    }),
  }),
  hospitalContact: obj({ dutyPhone: phone, webhookUrl: opt(url) }),
  // ---- the SMS gateway's callbacks: form fields (docs/protocol.md §8, inbound SMS and USSD)
  smsCallback: obj({
    from: { t: "str", min: 3, max: 20, gen: gatewayPhone }, to: { t: "str", max: 20 }, text: { t: "str", max: 480, gen: smsText },
    date: opt({ t: "str", max: 40 }), id: { t: "str", min: 1, max: 100, pattern: /^[A-Za-z0-9_.:-]+$/, gen: fromChars(ID_CHARS + ".:", 1, 100) },
    linkId: opt({ t: "str", max: 100 }), networkCode: opt({ t: "str", max: 10 }), cost: opt({ t: "str", max: 40 }),
  }),
  ussdCallback: obj({
    sessionId: { t: "str", min: 1, max: 100, pattern: /^[A-Za-z0-9_.:-]+$/, gen: fromChars(ID_CHARS + ".:", 1, 100) },
    serviceCode: { t: "str", max: 40 }, phoneNumber: { t: "str", min: 3, max: 20, gen: gatewayPhone }, networkCode: opt({ t: "str", max: 10 }),
    text: { t: "str", max: 400, gen: fc.array(fc.constantFrom("1", "2", "0", "3", "9", "Kencom"), { maxLength: 5 }).map((a) => a.join("*")) },
  }),
} satisfies Record<string, Spec & { t: "obj" }>;

export type SchemaKey = keyof typeof SCHEMAS;

const cleanText = (s: string) => s.isWellFormed() && !s.includes("\0");
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && [Object.prototype, null].includes(Object.getPrototypeOf(v));

/**
 * Whether `value` (as the server decodes it) is a valid payload for `spec`, by the rules of
 * docs/protocol.md §3: strict objects, no conversion, clean text, finite numbers, and an optional
 * field may be left out, not sent as null.
 */
export function accepts(spec: Spec, value: unknown): boolean {
  switch (spec.t) {
    case "num": return typeof value === "number" && Number.isFinite(value) && value >= spec.min && value <= spec.max && (!spec.int || Number.isInteger(value));
    case "str": return typeof value === "string" && cleanText(value) && value.length >= (spec.min ?? 0) && value.length <= spec.max && (!spec.pattern || spec.pattern.test(value));
    case "email": return typeof value === "string" && cleanText(value) && value.length <= spec.max && /^\S+@\S+\.\S+$/.test(value);
    case "enum": return spec.values.includes(value);
    case "bool": return typeof value === "boolean";
    case "arr": return Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype && value.length >= (spec.min ?? 0) && value.length <= spec.max
      && value.every((x) => accepts(spec.items, x)) && (!spec.unique || new Set(value).size === value.length);
    case "obj": {
      if (!isPlainObject(value) || Object.getOwnPropertySymbols(value).length > 0) return false;
      for (const key of Object.keys(value)) if (!Object.hasOwn(spec.props, key)) return false;
      return Object.entries(spec.props).every(([key, s]) => (Object.hasOwn(value, key) ? accepts(s, value[key]) : s.opt === true));
    }
  }
}

// ------------------------------------------------------------------ generators

/** Long strings: above every text limit, below the transport's hard frame limit once encoded. */
const longString = fc.oneof(
  fc.integer({ min: 201, max: 1200 }).map((n) => "x".repeat(n)),
  fc.integer({ min: 8200, max: 14_000 }).map((n) => "y".repeat(n)),
  fc.integer({ min: 50, max: 3000 }).map((n) => "🚑".repeat(n)),
);

/** Unicode that is easy to get wrong: lone surrogates, NUL, bidi overrides, combining marks, emoji. */
export const nastyString = fc.oneof(
  fc.constantFrom(
    "", " ", "\0", "a\u0000b", "\uD800", "x\uDC00", "\uDBFF\uDFFF", "\uFEFF", "\u202Eevil", "e\u0301", "👨‍👩‍👧‍👦", "\u2028\u2029",
    "__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "$where", "' OR '1'='1", "\"; drop table users; --",
    "${7*7}", "{{7*7}}", "<script>alert(1)</script>", "../../../etc/passwd", "%00", "\r\nSet-Cookie: x=1", "NaN", "Infinity", "-0", "null", "true",
  ),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 3 }),
  longString,
);

export const nastyNumber = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, -1, 1, 0.5, 1e-300, 5e-324, 1e308, -1e308, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 1e12, 9_999_999_999_999, 1e13),
  fc.double(),
  fc.integer(),
);

/** Deeply nested arrays or objects. */
const deep = fc.tuple(fc.integer({ min: 5, max: 60 }), fc.boolean()).map(([depth, arrays]) => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = arrays ? [v] : { a: v };
  return v;
});

/** Wide objects and long arrays (past the 512-value cap). */
const wide = fc.integer({ min: 30, max: 700 }).chain((n) => fc.constantFrom(
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])),
  Array.from({ length: n }, (_, i) => i),
));

const protoKeys = fc.constantFrom(
  JSON.parse('{"__proto__":{"admin":true}}'), JSON.parse('{"constructor":{"prototype":{"admin":true}}}'), { prototype: 1 }, Object.create(null),
);

/** Any value, weighted towards the hostile. `depth` bounds the recursion. */
export function hostile(depth = 2): fc.Arbitrary<unknown> {
  const leaf = fc.oneof(
    nastyString, nastyNumber, fc.boolean(), fc.constant(null), fc.constant(undefined),
    fc.constantFrom(2n ** 63n - 1n, -(2n ** 63n), 7n),
    fc.constantFrom(new Date(0), new Set([1]), new Map([["a", 1]]), /x/g, new Uint8Array([1, 2, 3]), new Error("e")),
    deep, wide, protoKeys,
  );
  if (depth <= 0) return leaf;
  return fc.oneof(
    { weight: 4, arbitrary: leaf },
    { weight: 1, arbitrary: fc.array(hostile(depth - 1), { maxLength: 4 }) },
    { weight: 1, arbitrary: fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), nastyString.filter((s) => s.length < 50)), hostile(depth - 1), { maxKeys: 4 }) },
  );
}

/** Valid values for `spec`, boundaries included. */
export function valid(spec: Spec): fc.Arbitrary<unknown> {
  switch (spec.t) {
    case "num": {
      const bounds = fc.constantFrom(spec.min, spec.max, spec.min === 0 ? -0 : spec.min);
      return spec.int
        ? fc.oneof(bounds, spec.max < 2 ** 31 ? fc.integer({ min: spec.min, max: spec.max }) : fc.double({ min: spec.min, max: spec.max, noNaN: true }).map(Math.floor))
        : fc.oneof(bounds, fc.double({ min: spec.min, max: spec.max, noNaN: true }));
    }
    case "str": {
      if (spec.gen) return spec.gen;
      const min = spec.min ?? 0;
      return fc.oneof(
        fc.string({ minLength: min, maxLength: Math.min(spec.max, 30) }),
        fc.string({ unit: "grapheme", minLength: min, maxLength: Math.min(spec.max, 20) }).map((s) => (s.length > spec.max ? s.slice(0, spec.max) : s)),
        fc.constant("z".repeat(spec.max)),
        fc.constant("a".repeat(Math.max(min, 1))),
      );
    }
    case "email": return fc.tuple(fromChars("abcxyz019._+-", 1, 20), fromChars("abcxyz", 1, 10)).map(([a, b]) => `${a}@${b}.test`);
    case "enum": return fc.constantFrom(...spec.values);
    case "bool": return fc.boolean();
    case "arr": {
      const arr = fc.array(valid(spec.items), { minLength: spec.min ?? 0, maxLength: Math.min(spec.max, 6) });
      return spec.unique ? arr.map((a) => [...new Set(a)]).filter((a) => a.length >= (spec.min ?? 0)) : arr;
    }
    case "obj": {
      const required: Record<string, fc.Arbitrary<unknown>> = {};
      const optional: string[] = [];
      for (const [k, s] of Object.entries(spec.props)) {
        required[k] = valid(s);
        if (s.opt) optional.push(k);
      }
      return fc.record(required, { requiredKeys: Object.keys(spec.props).filter((k) => !optional.includes(k)) });
    }
  }
}

/** A value that breaks `spec` in one place, or as a whole. */
function broken(spec: Spec): fc.Arbitrary<unknown> {
  switch (spec.t) {
    case "num": return fc.oneof(nastyNumber, fc.constantFrom(spec.min - 1e-9, spec.max + 1e-9, spec.min - 1, spec.max + 1, String(spec.min), `${spec.max}`, null, true, [spec.min], { value: spec.min }), ...(spec.int ? [fc.constant(spec.min + 0.5)] : []));
    case "str": case "email": return fc.oneof(nastyString, fc.constantFrom("x".repeat(spec.max + 1), 42, null, false, ["a"], { s: "a" }), ...(spec.t === "str" && spec.min ? [fc.constant("")] : []));
    case "enum": return fc.oneof(nastyString, fc.constantFrom(...spec.values.map((v) => typeof v === "string" ? v.toUpperCase() : String(v)), ...spec.values.map((v) => typeof v === "string" ? ` ${v}` : 1), null, [spec.values[0]]));
    case "bool": return fc.constantFrom(0, 1, "true", "false", null, [], {}, "yes");
    case "arr": return fc.oneof(
      fc.array(valid(spec.items), { minLength: spec.max + 1, maxLength: spec.max + 3 }),
      fc.tuple(valid(spec.items), broken(spec.items)).map(([a, b]) => [a, b]),
      ...(spec.unique ? [valid(spec.items).map((x) => [x, x])] : []),
      fc.constantFrom("a", {}, 1, null, { length: 1, 0: "a" }), deep, wide,
    );
    case "obj": return mutate(spec, valid(spec));
  }
}

/** A valid payload of `spec` with one field broken, removed, or one key added. */
function mutate(spec: Spec & { t: "obj" }, base: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  const keys = Object.keys(spec.props);
  const required = keys.filter((k) => !spec.props[k].opt);
  const options: fc.Arbitrary<unknown>[] = [
    fc.tuple(base, fc.oneof(fc.constantFrom("extra", "__proto__", "constructor", "Lat", "lat ", "", "\0"), nastyString.filter((s) => s.length < 60)), hostile(1))
      .map(([b, k, v]) => (Object.hasOwn(spec.props, k) ? b : Object.defineProperty({ ...(b as object) }, k, { value: v, enumerable: true, writable: true, configurable: true }))),
  ];
  if (keys.length > 0) {
    options.push(fc.constantFrom(...keys).chain((k) => fc.tuple(base, fc.constant(k), fc.oneof(broken(spec.props[k]), hostile(1))))
      .map(([b, k, v]) => ({ ...(b as object), [k]: v })));
    options.push(fc.tuple(base, fc.constantFrom(...keys)).map(([b, k]) => ({ ...(b as object), [k]: null })));
  }
  if (required.length > 0) {
    options.push(fc.tuple(base, fc.constantFrom(...required)).map(([b, k]) => { const c = { ...(b as Record<string, unknown>) }; delete c[k]; return c; }));
  }
  return fc.oneof(...options);
}

/**
 * Payloads for a message or body: valid ones (boundaries included), valid ones broken in one
 * place, and hostile values in place of the whole payload.
 */
export function payloads(spec: Spec & { t: "obj" }): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 3, arbitrary: valid(spec) },
    { weight: 6, arbitrary: mutate(spec, valid(spec)) },
    { weight: 2, arbitrary: hostile(3) },
  );
}

// ------------------------------------------------------------------ frames as the server sees them

/** The SDK's encoder (it packs payloads with a default `Packr`). */
const sdkPackr = new Packr();
/** The server's decoder (src/protocol/frames.ts). */
const serverUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false, moreTypes: false, int64AsType: "number" });

export type Wire = { encodable: false } | { encodable: true; bytes: number; decodes: true; decoded: unknown } | { encodable: true; bytes: number; decodes: false };

/** What the server receives when the SDK sends `payload` as a request of `type`. */
export function onTheWire(type: string, payload: unknown): Wire {
  let packed: Uint8Array;
  try {
    packed = sdkPackr.pack(payload);
  } catch {
    return { encodable: false };
  }
  const head: number[] = [21];
  const it = { offset: 1 };
  encode.number(head as never, 2 ** 31 - 1, it);
  encode.string(head as never, type, it);
  const bytes = it.offset + packed.byteLength;
  try {
    return { encodable: true, bytes, decodes: true, decoded: serverUnpackr.unpack(packed) };
  } catch {
    return { encodable: true, bytes, decodes: false };
  }
}

// ------------------------------------------------------------------ sockets

/** Pace of messages per socket: the server allows HAVEN_MAX_MESSAGES_PER_SECOND (1000 in these tests) in a fixed window. */
export class Pace {
  private stamps: number[] = [];
  private readonly perSecond: number;
  constructor(perSecond = 400) { this.perSecond = perSecond; }
  async take(): Promise<void> {
    for (;;) {
      const now = Date.now();
      while (this.stamps.length > 0 && now - this.stamps[0] >= 1000) this.stamps.shift();
      if (this.stamps.length < this.perSecond) { this.stamps.push(now); return; }
      await sleep(1000 - (now - this.stamps[0]) + 1);
    }
  }
}

const paces = new WeakMap<object, Pace>();
export const paceOf = (room: object) => { let p = paces.get(room); if (!p) paces.set(room, (p = new Pace())); return p; };

export type Outcome = { ok: true; value: any } | { ok: false; code: string; message: string; details?: unknown };

/** A request through the SDK, its outcome either way; a timeout or close is an outcome of its own. */
export async function ask(room: Room<any, any>, type: string, payload: unknown, timeoutMs = 5000): Promise<Outcome> {
  await paceOf(room).take();
  let timer: NodeJS.Timeout | undefined;
  try {
    const value = await Promise.race([
      room.request(type, payload as never),
      new Promise((_, reject) => { timer = setTimeout(() => reject(Object.assign(new Error("no answer"), { hang: true })), timeoutMs); }),
    ]);
    return { ok: true, value };
  } catch (error: any) {
    if (error?.reason && typeof error.reason === "object") return { ok: false, ...error.reason };
    return { ok: false, code: error?.hang ? "<no answer>" : `<${error?.name ?? "error"}: ${error?.message}>`, message: String(error?.message) };
  } finally {
    clearTimeout(timer);
  }
}

/** What another party sees: the state as JSON. */
export const view = (room: Room<any, any>) => JSON.stringify(room.state.toJSON());

/**
 * Waits until every patch caused by what was already answered has reached `observer`: patches
 * go out on the server's next event-loop turn after a change, so the answer to a request sent
 * after that arrives behind them on the same socket.
 */
export async function fence(observer: Room<any, any>): Promise<void> {
  const r = await ask(observer, "fence", {});
  if (r.ok || r.code !== "UNKNOWN_MESSAGE") throw new Error(`fence answered ${JSON.stringify(r)}`);
}

/** The process is alive and answers its health route. */
export async function alive(h: Haven): Promise<void> {
  if (h.proc.exitCode !== null) throw new Error(`the server exited with ${h.proc.exitCode}:\n${h.logs.join("").slice(-3000)}`);
  const r = await fetch(`${h.url}/health`);
  if (r.status !== 200) throw new Error(`/health answered ${r.status}`);
}

/** Heap in use, after the server had a moment to collect. */
export async function heap(h: Haven): Promise<number> {
  await sleep(50);
  return metric(h, "haven_process_heap_used_bytes");
}

/** Heap growth over a batch that the server should shed: generous, but a leak per case would pass it. */
export const HEAP_GROWTH_LIMIT = 64 * 1024 * 1024;

/** Lines the server logged at error level, or that mention an uncaught failure. */
export function serverErrors(h: Haven, since: number): string[] {
  return h.logs.join("").slice(since).split("\n").filter((l) => /"level":(50|60)|uncaught|unhandled/i.test(l));
}
