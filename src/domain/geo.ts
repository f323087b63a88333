/** Coordinates are WGS84 degrees as float64; distances are metres along the great circle. */
export interface LatLng {
  lat: number;
  lng: number;
}

const EARTH_RADIUS_M = 6_371_008.8;
const rad = (deg: number) => (deg * Math.PI) / 180;

export function distanceM(a: LatLng, b: LatLng): number {
  const dLat = rad(b.lat - a.lat);
  const dLng = rad(b.lng - a.lng);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLng / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

export interface Circle extends LatLng {
  name: string;
  radiusM: number;
}

/** Whether a point lies in one of the configured urban areas (decides the first dispatch radius). */
export function isUrban(point: LatLng, areas: readonly Circle[]): boolean {
  return areas.some((area) => distanceM(point, area) <= area.radiusM);
}
