import { HavenError } from "../protocol/errors.ts";
import { check, compileSchema, isPlainData } from "../protocol/validate.ts";

/**
 * The medical profile a patient keeps for emergencies: the body of `POST/PUT /api/medical-profile`,
 * validated here, then sealed by src/medical/crypto.ts. The schema is a literal, compiled once at
 * start and never built from data; every object is strict, every string and array has a `max`,
 * nothing is converted, and `isPlainData` runs first so a Date, Set, RegExp, class instance or
 * cycle never reaches the compiled check.
 *
 * Error messages and details name fields and rules only — never the submitted values.
 */

export const BLOOD_TYPES = ["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-", "unknown"] as const;
export const ALLERGY_SEVERITIES = ["mild", "moderate", "severe", "life_threatening"] as const;

export type BloodType = (typeof BLOOD_TYPES)[number];
export type AllergySeverity = (typeof ALLERGY_SEVERITIES)[number];

export interface MedicalProfile {
  bloodType: BloodType;
  allergies: { substance: string; reaction?: string; severity?: AllergySeverity }[];
  conditions: string[];
  medications: { name: string; dose?: string; frequency?: string }[];
  emergencyContacts: { name: string; relation?: string; phone: string }[];
  insurance?: { provider: string; memberNumber: string };
  /** The consent record: whether the profile may be shared with responders in an emergency, and
   * which version of the consent text the patient agreed to. */
  consent: { shareInEmergency: boolean; version: number };
}


const text = (max: number, optional = false) => ({ type: "string", min: 1, max, optional, trim: false }) as const;

const medicalProfile = {
  $$strict: true,
  bloodType: { type: "enum", values: BLOOD_TYPES },
  allergies: {
    type: "array", max: 50,
    items: {
      type: "object", strict: true,
      props: {
        substance: text(100),
        reaction: text(200, true),
        severity: { type: "enum", values: ALLERGY_SEVERITIES, optional: true },
      },
    },
  },
  conditions: { type: "array", max: 50, items: text(200) },
  medications: {
    type: "array", max: 50,
    items: {
      type: "object", strict: true,
      props: { name: text(100), dose: text(100, true), frequency: text(100, true) },
    },
  },
  emergencyContacts: {
    type: "array", max: 5,
    items: {
      type: "object", strict: true,
      props: {
        name: text(120),
        relation: text(60, true),
        phone: { type: "string", max: 16, pattern: /^\+?[0-9]{7,15}$/ },
      },
    },
  },
  insurance: {
    type: "object", strict: true, optional: true,
    props: { provider: text(120), memberNumber: text(64) },
  },
  consent: {
    type: "object", strict: true,
    props: {
      shareInEmergency: { type: "boolean" },
      version: { type: "number", integer: true, min: 1, max: 10_000 },
    },
  },
} as const;

const checkProfile = compileSchema(medicalProfile);

/** Validates a medical profile body; throws INVALID_PAYLOAD naming each bad field (at most 8). */
export function validateProfile(body: unknown): MedicalProfile {
  if (typeof body !== "object" || body === null || Array.isArray(body) || !isPlainData(body)) {
    throw new HavenError("INVALID_PAYLOAD", "the medical profile must be a plain object");
  }
  check(checkProfile, body);
  return body as MedicalProfile;
}

export interface EmergencySummary {
  bloodType: BloodType;
  allergies: string[];
  conditions: string[];
  medications: string[];
}

/** The profile fields an emergency summary discloses: list these in the audit record of a read. */
export const EMERGENCY_SUMMARY_FIELDS = ["bloodType", "allergies", "conditions", "medications"] as const;

// An allergy of unrecorded severity ranks below severe but above moderate: unknown is not mild.
const SEVERITY_ORDER: Record<AllergySeverity, number> = { life_threatening: 0, severe: 1, moderate: 3, mild: 4 };
const SEVERITY_LABEL: Record<AllergySeverity, string> = {
  life_threatening: "LIFE-THREATENING", severe: "severe", moderate: "moderate", mild: "mild",
};

/**
 * What a responder needs at the scene, as short strings for the emergency room's medical view:
 * blood type, allergies (most severe first), conditions and medications. Emergency contacts,
 * insurance and the consent record are never included (data minimisation).
 *
 * Whether the summary may be shown at all — consent or vital interest, party to the patient's
 * active emergency, break-glass — is the caller's decision, and every disclosure is audited with
 * EMERGENCY_SUMMARY_FIELDS.
 */
export function emergencySummary(profile: MedicalProfile): EmergencySummary {
  const allergies = profile.allergies
    .map((a, index) => ({ a, index }))
    .sort((x, y) => rank(x.a.severity) - rank(y.a.severity) || x.index - y.index)
    .map(({ a }) => {
      const details = [a.severity === undefined ? undefined : SEVERITY_LABEL[a.severity], a.reaction].filter(Boolean);
      return details.length > 0 ? `${a.substance} (${details.join(": ")})` : a.substance;
    });
  const medications = profile.medications.map((m) => [m.name, m.dose, m.frequency].filter(Boolean).join(" "));
  return {
    bloodType: profile.bloodType,
    allergies,
    conditions: [...profile.conditions],
    medications,
  };
}

function rank(severity: AllergySeverity | undefined): number {
  return severity === undefined ? 2 : SEVERITY_ORDER[severity];
}
