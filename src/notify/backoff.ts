/**
 * When a failed delivery is tried again: exponential backoff with "equal jitter" — half of the
 * exponential delay fixed, half random — so that delays grow attempt after attempt while nodes
 * that failed together do not retry together.
 *
 * `attempt` counts from 1 (the attempt that just failed); the delay is at most `maxMs`.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  return Math.round(exponential / 2 + random() * (exponential / 2));
}
