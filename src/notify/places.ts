/**
 * Where a caller without GPS is: a place they name (a town or a hospital they are near) or the
 * cell location the gateway adds. An alert whose place is not recognised is still raised — at
 * the first town, with an accuracy that says it is unknown, and the caller's words in its note
 * for the people who act on it.
 */
export interface Place { name: string; lat: number; lng: number; accuracyM: number }

/** The accuracy of an alert whose place was not recognised. */
export const UNKNOWN_PLACE_ACCURACY_M = 50_000;

/** The first place whose name (or a word of it of 4+ letters) the text contains. */
export function findPlace(text: string, places: readonly Place[]): Place | undefined {
  const t = ` ${text.toLowerCase().replace(/[^a-z0-9 ]/g, " ").replace(/\s+/g, " ")} `;
  const full = places.find((p) => t.includes(` ${p.name.toLowerCase()} `));
  if (full) return full;
  return places.find((p) => p.name.toLowerCase().split(/[^a-z0-9]+/).some((w) => w.length >= 4 && !GENERIC.has(w) && t.includes(` ${w} `)));
}

const GENERIC = new Set(["hospital", "national", "referral", "teaching", "county", "level", "children", "health", "centre", "center"]);

/** A place from what the caller said, else the first town at an accuracy that says it is unknown. */
export function placeOf(text: string, places: readonly Place[]): { place: Place; known: boolean } {
  const found = findPlace(text, places);
  if (found) return { place: found, known: true };
  return { place: { ...places[0], accuracyM: UNKNOWN_PLACE_ACCURACY_M }, known: false };
}
