import { distanceM, type LatLng } from "./geo.ts";
import { divertApplies } from "./divert.ts";
import type { Hospital, Specialty } from "./hospitals.ts";

/**
 * Hospital matching: every accepting hospital is scored by distance (40 %), capacity (30 %) and
 * specialty (30 %), each part in [0, 1]; the best score wins, and the ranking is kept so the next
 * hospital takes over when one declines or does not acknowledge in time. A hospital on divert
 * for every patient, or for a specialty the patient needs, is not matched. The parts travel with
 * the decision so ops and the hospital can see why it was chosen.
 */
export const MATCH_WEIGHTS = { distance: 0.4, capacity: 0.3, specialty: 0.3 } as const;

/** Beds at which the capacity part saturates. */
const FULL_CAPACITY_BEDS = 10;

export interface HospitalScore {
  hospitalId: string;
  name: string;
  distanceM: number;
  score: number;
  distanceScore: number;
  capacityScore: number;
  specialtyScore: number;
}

export interface MatchRequest {
  at: LatLng;
  /** Specialties the assessment suggests; empty means any emergency department will do. */
  needs: Specialty[];
  critical: boolean;
  /** Hospitals that already declined or timed out for this emergency. */
  exclude: ReadonlySet<string>;
  maxDistanceM: number;
  /** The time at which diverts are judged (an expired divert is off). */
  now: number;
}

export function rankHospitals(hospitals: readonly Hospital[], req: MatchRequest): HospitalScore[] {
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return hospitals
    .filter((h) => h.accepting && h.emergencyBeds > 0 && !req.exclude.has(h.id) && !divertApplies(h.divert, req.needs, req.now))
    .map((h) => {
      const d = distanceM(req.at, h);
      const distanceScore = Math.max(0, 1 - d / req.maxDistanceM);
      const beds = req.critical ? Math.min(h.emergencyBeds, h.icuBeds * 2) : h.emergencyBeds;
      const capacityScore = Math.min(1, beds / FULL_CAPACITY_BEDS);
      const specialtyScore = req.needs.length === 0
        ? 1
        : req.needs.filter((s) => h.specialties.includes(s)).length / req.needs.length;
      const score = MATCH_WEIGHTS.distance * distanceScore + MATCH_WEIGHTS.capacity * capacityScore + MATCH_WEIGHTS.specialty * specialtyScore;
      return {
        hospitalId: h.id, name: h.name, distanceM: Math.round(d),
        score: round(score), distanceScore: round(distanceScore), capacityScore: round(capacityScore), specialtyScore: round(specialtyScore),
      };
    })
    .filter((s) => s.distanceM <= req.maxDistanceM)
    .sort((a, b) => b.score - a.score || a.distanceM - b.distanceM);
}

/** Specialties implied by an assessment: what the responder suspects, plus pediatrics for a child. */
export function neededSpecialties(suspected: readonly Specialty[] | undefined, age: number | undefined): Specialty[] {
  const needs = new Set<Specialty>((suspected ?? []).filter((s) => s !== "general"));
  if (age !== undefined && age < 16) needs.add("pediatric");
  return [...needs];
}
