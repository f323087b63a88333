import { distanceM, type LatLng } from "./geo.ts";

/**
 * Estimated time of arrival. The default assumes a constant road speed over the straight-line
 * distance stretched by a detour factor; a traffic-aware routing provider implements the same
 * interface and replaces it.
 */
export interface EtaProvider {
  /**
   * Seconds from `from` to `to`. Synchronous: it runs inside the room actor on every position
   * change, so a provider that asks a routing service refreshes its answers in the background
   * and answers here from what it has.
   */
  etaSeconds(from: LatLng, to: LatLng): number;
}

export class ConstantSpeedEta implements EtaProvider {
  private readonly metresPerSecond: number;
  private readonly detourFactor: number;

  constructor(speedKmh: number, detourFactor = 1.3) {
    this.metresPerSecond = (speedKmh * 1000) / 3600;
    this.detourFactor = detourFactor;
  }

  etaSeconds(from: LatLng, to: LatLng): number {
    return Math.round((distanceM(from, to) * this.detourFactor) / this.metresPerSecond);
  }
}
