/**
 * The knee search: the largest N (emergencies) whose p99 fan-out latency is within the limit on a
 * valid run. Coarse to fine: from `start`, doubling while steps pass, then bisection between the
 * largest pass and the smallest failure until the bracket is within `precision`, in at most
 * `steps` steps and `budgetS` seconds. A step that failed because something else used core 0 is
 * run once more.
 */
import { trackingStep, type StepResult, type TrackingOptions } from "./tracking.ts";
import type { Variant } from "./variants.ts";
import type { Log } from "./trees.ts";

export interface KneeResult {
  variant: string;
  /** Largest passing N (0: none passed). */
  knee: number;
  /** Smallest failing N above it, if any. */
  failedAt?: number;
  /** Why the search stopped. */
  stopped: string;
  /** The knee was bounded by the load generator (its step above was invalid), not by the server. */
  generatorBound: boolean;
  steps: StepResult[];
  /** The step at the knee. */
  atKnee?: StepResult;
  errors: string[];
}

const roundN = (n: number) => (n >= 1000 ? Math.round(n / 50) * 50 : Math.round(n / 10) * 10);

export async function kneeSearch(
  v: Variant, o: TrackingOptions & { start: number; steps: number; precision: number; budgetS: number; max: number; maxServer: number },
  log: Log,
): Promise<KneeResult> {
  const started = performance.now();
  const steps: StepResult[] = [];
  const errors: string[] = [];
  let lo = 0;
  let hi = Number.POSITIVE_INFINITY;
  let n = Math.min(o.start, o.max, o.maxServer);
  let stopped = "";
  for (let i = 0; ; i++) {
    if (i >= o.steps) { stopped = `at most ${o.steps} step${o.steps === 1 ? "" : "s"}`; break; }
    if ((performance.now() - started) / 1000 > o.budgetS) { stopped = `time budget (${o.budgetS} s)`; break; }
    log(`${v.id}: step ${i + 1}, ${n} emergencies (${n * 5} sockets)`);
    let r: StepResult | undefined;
    let disturbed = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        r = await trackingStep(v, n, o, log, `${v.id}-${n}${attempt ? `-again${attempt}` : ""}`);
      } catch (error) {
        const message = String((error as Error).message ?? error).split("\n").slice(0, 6).join(" | ");
        errors.push(`${n}: ${message}`);
        log(`  step failed: ${message}`);
        r = undefined;
      }
      disturbed = Boolean(r && !r.valid && r.invalidReasons.every((x) => x.startsWith("core 0")));
      if (!disturbed) break;
      steps.push(r!);
      if (attempt < 2) log("  core 0 was busy with other work during the window: this step runs again");
    }
    if (disturbed) {
      stopped = "core 0 stayed busy with other work (another process on the machine): no conclusion at this N";
      break;
    }
    if (r) steps.push(r);
    const pass = r?.pass ?? false;
    if (pass) lo = Math.max(lo, n);
    else hi = Math.min(hi, n);
    let next: number;
    if (hi === Number.POSITIVE_INFINITY) {
      if (n >= Math.min(o.max, o.maxServer)) { stopped = `reached the largest N allowed (${n})`; break; }
      next = Math.min(n * 2, o.max, o.maxServer);
    } else if (lo === 0) {
      if (n <= 25) { stopped = "nothing passed"; break; }
      next = roundN(n / 2);
    } else {
      if ((hi - lo) / lo <= o.precision) { stopped = `bracketed within ${Math.round(((hi - lo) / lo) * 100)} %`; break; }
      next = roundN((lo + hi) / 2);
      if (next <= lo || next >= hi) { stopped = "bracket too narrow to split"; break; }
    }
    n = next;
  }
  const atKnee = steps.filter((s) => s.pass && s.emergencies === lo).at(-1);
  // bound by the generator only if the smallest failure above the knee was an invalid run
  const above = steps.filter((s) => s.emergencies === hi).at(-1);
  const generatorBound = Boolean(above && !above.valid && above.invalidReasons.some((x) => x.startsWith("generator")));
  log(`${v.id}: knee ${lo || "none"}${hi < Number.POSITIVE_INFINITY ? ` (fails at ${hi}${generatorBound ? ", where the generator was the limit" : ""})` : ""}; stopped: ${stopped}`);
  return { variant: v.id, knee: lo, failedAt: hi < Number.POSITIVE_INFINITY ? hi : undefined, stopped, generatorBound, steps, atKnee, errors };
}
