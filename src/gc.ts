import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";

/**
 * Node flags Haven runs with (`npm start`, the Docker image, the cluster launcher, the tests).
 *
 * `--single-threaded-gc`: V8 normally collects garbage with helper threads beside the main one.
 * A process with one CPU (pinned to a core, or held to one by its container) has nowhere to run
 * them but instead of the main thread: while a full collection marks, the event loop gets a
 * fraction of the core for a quarter of a second and every room's patches queue behind it. Seen
 * at 1,500 emergencies on one core: p99 fan-out 210 ms, with a full collection every ~10 s;
 * collecting on the main thread in small incremental steps instead: 28 ms. On more cores it costs
 * the main thread the marking work (a few ms per second at that load).
 */
export const NODE_FLAGS = ["--single-threaded-gc"] as const;

/** Whether this process runs with the flags above. */
export function runsWithHavenFlags(): boolean {
  return NODE_FLAGS.every((f) => process.execArgv.includes(f));
}

/** CPUs this process may use: its affinity, and its cgroup's CPU quota when there is one. */
export function cpusAvailable(): number {
  let cpus = availableParallelism();
  try {
    const [quota, period] = readFileSync("/sys/fs/cgroup/cpu.max", "utf8").trim().split(/\s+/);
    if (quota !== "max" && Number(period) > 0) cpus = Math.min(cpus, Number(quota) / Number(period));
  } catch {
    // no cgroup v2 CPU controller here
  }
  return cpus;
}
