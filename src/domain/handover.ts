/** The parts of an assessment the handover summary reads (the room's `medical` state satisfies it). */
export interface Assessment {
  assessed: boolean;
  /** -1: unknown. */
  age: number;
  /** Epoch milliseconds; 0: unknown. */
  timeOfIncident: number;
  mechanism: string;
  injuries: { join(separator: string): string };
  treatment: { join(separator: string): string };
  /** Each -1 when not recorded. */
  signs: { heartRate: number; systolic: number; diastolic: number; respiratoryRate: number; spo2: number; temperature: number; gcs: number; avpu: string };
}

/**
 * The handover summary the receiving team reads on the wallboard: ATMIST (Age, Time, Mechanism,
 * Injuries, Signs, Treatment) in one line; empty before the assessment.
 */
export function handoverSummary(m: Assessment): string {
  if (!m.assessed) return "";
  const s = m.signs;
  const signs = [
    s.heartRate >= 0 ? `HR ${s.heartRate}` : "", s.systolic >= 0 ? `BP ${s.systolic}/${s.diastolic >= 0 ? s.diastolic : "?"}` : "",
    s.respiratoryRate >= 0 ? `RR ${s.respiratoryRate}` : "", s.spo2 >= 0 ? `SpO2 ${s.spo2}%` : "",
    s.temperature >= 0 ? `T ${s.temperature.toFixed(1)}` : "", s.gcs >= 0 ? `GCS ${s.gcs}` : "", s.avpu ? `AVPU ${s.avpu}` : "",
  ].filter(Boolean).join(", ");
  return [
    `A: ${m.age >= 0 ? m.age : "unknown"}`,
    `T: ${m.timeOfIncident > 0 ? new Date(m.timeOfIncident).toISOString() : "unknown"}`,
    `M: ${m.mechanism}`,
    `I: ${m.injuries.join("; ") || "none recorded"}`,
    `S: ${signs || "none recorded"}`,
    `T: ${m.treatment.join("; ") || "none"}`,
  ].join(" | ");
}

