/**
 * A latency histogram in milliseconds: 10 µs buckets up to 10 ms, 100 µs up to 100 ms, 1 ms up
 * to 10 s, and one bucket beyond. Percentiles answer the bucket's upper edge (never optimistic).
 * Histograms of several generator processes merge by adding their counts.
 */
const FINE = 1000; // 0–10 ms by 0.01
const MID = 900; // 10–100 ms by 0.1
const COARSE = 9900; // 100–10000 ms by 1
const SIZE = FINE + MID + COARSE + 1;

function bucketOf(ms: number): number {
  if (!(ms >= 0)) return 0;
  if (ms < 10) return Math.floor(ms * 100);
  if (ms < 100) return FINE + Math.floor((ms - 10) * 10);
  if (ms < 10_000) return FINE + MID + Math.floor(ms - 100);
  return SIZE - 1;
}

function upperEdge(i: number): number {
  if (i < FINE) return (i + 1) / 100;
  if (i < FINE + MID) return 10 + (i - FINE + 1) / 10;
  if (i < SIZE - 1) return 100 + (i - FINE - MID + 1);
  return Number.POSITIVE_INFINITY;
}

export type SparseHistogram = [number, number][];

export class Histogram {
  readonly counts = new Uint32Array(SIZE);
  count = 0;
  max = 0;
  sum = 0;
  beyond = 0;

  add(ms: number): void {
    this.counts[bucketOf(ms)]++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** `k` samples beyond every bucket (lost: never arrived); they count in percentiles only. */
  addBeyond(k: number): void {
    this.counts[SIZE - 1] += k;
    this.count += k;
    this.beyond += k;
  }

  /** The value below which a fraction `p` (0–1) of the samples lie (a bucket's upper edge). */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN;
    if (this.beyond > 0 && p * this.count > this.count - this.beyond) return Number.POSITIVE_INFINITY;
    const rank = Math.max(1, Math.ceil(p * this.count));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(upperEdge(i), this.max);
    }
    return this.max;
  }

  mean(): number {
    const n = this.count - this.beyond;
    return n ? this.sum / n : Number.NaN;
  }

  toJSON(): { sparse: SparseHistogram; count: number; max: number; sum: number; beyond?: number } {
    const sparse: SparseHistogram = [];
    for (let i = 0; i < SIZE; i++) if (this.counts[i]) sparse.push([i, this.counts[i]]);
    return { sparse, count: this.count, max: this.max, sum: this.sum, beyond: this.beyond };
  }

  merge(other: { sparse: SparseHistogram; count: number; max: number; sum: number; beyond?: number }): this {
    for (const [i, c] of other.sparse) this.counts[i] += c;
    this.count += other.count;
    this.beyond += other.beyond ?? 0;
    this.sum += other.sum;
    if (other.max > this.max) this.max = other.max;
    return this;
  }

  summary(): { count: number; p50: number; p99: number; p999: number; max: number; mean: number } {
    return { count: this.count, p50: this.percentile(0.5), p99: this.percentile(0.99), p999: this.percentile(0.999), max: this.max, mean: this.mean() };
  }
}
