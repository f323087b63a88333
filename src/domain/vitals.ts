/**
 * Vital signs streamed into an emergency: which vitals there are, and when one is out of range.
 * Pure rules over plain numbers (the thresholds come from src/config.ts).
 */

/** The vitals a sample may carry, in the order they are reported. */
export const VITALS = ["heartRate", "systolic", "diastolic", "spo2", "temperature", "respiratoryRate"] as const;
export type Vital = (typeof VITALS)[number];

/** A vital is abnormal below `low` or above `high` (a value equal to a bound is normal). */
export interface Range { low: number; high: number }
export type VitalThresholds = Record<Vital, Range>;

/** Out of range, and which way: "low", "high", or "" when normal. */
export function vitalOutOfRange(value: number, range: Range): "low" | "high" | "" {
  if (value < range.low) return "low";
  if (value > range.high) return "high";
  return "";
}

/** How a vital out of range is named (timeline, wallboard): the vital and its direction, never its value. */
export function vitalAlertName(vital: Vital, direction: "low" | "high"): string {
  return `${vital}:${direction}`;
}
