import type { SPECIALTIES } from "../protocol/validate.ts";

type Specialty = (typeof SPECIALTIES)[number];

/**
 * A hospital on divert: it asks not to be sent patients, all of them (`specialties` empty) or
 * those needing one of the named specialties, for a reason, until a time. Past `until` a divert
 * is off by itself, on every node, whatever was announced.
 */
export interface Divert {
  /** Empty: every patient. */
  specialties: Specialty[];
  reason: string;
  /** Epoch ms at which the divert ends by itself. */
  until: number;
  /** `<role>:<userId>` of who declared it, and when. */
  setBy: string;
  setAt: number;
}

/** A divert may be declared at most this far ahead. */
export const MAX_DIVERT_MS = 24 * 60 * 60_000;

/** Whether the divert is in force at `now`. */
export function divertActive(d: Divert | undefined, now: number): d is Divert {
  return d !== undefined && d.until > now;
}

/** Whether a patient needing `needs` must not be sent to a hospital with this divert at `now`. */
export function divertApplies(d: Divert | undefined, needs: readonly Specialty[], now: number): boolean {
  if (!divertActive(d, now)) return false;
  return d.specialties.length === 0 || needs.some((s) => d.specialties.includes(s));
}

/** Why a requested divert is refused (undefined: acceptable): `until` in the future, at most 24 h ahead. */
export function divertUntilProblem(until: number | undefined, now: number): string | undefined {
  if (until === undefined) return "until is required to go on divert";
  if (until <= now) return "until must be in the future";
  if (until > now + MAX_DIVERT_MS) return "until must be at most 24 h ahead";
  return undefined;
}

/** A divert as clients see it (an expired one is off). */
export function divertView(d: Divert | undefined, now: number): { active: boolean; specialties: Specialty[]; reason: string; until: number } {
  return divertActive(d, now)
    ? { active: true, specialties: [...d.specialties], reason: d.reason, until: d.until }
    : { active: false, specialties: [], reason: "", until: 0 };
}
