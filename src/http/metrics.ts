import { matchMaker } from "@colyseus/core";
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { services, servicesReady } from "../services.ts";
import { limitStats } from "../limits/requests.ts";
import { notifyStats } from "../notify/worker.ts";

/** Event-loop delay, sampled every 10 ms; read and reset by each scrape. */
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

/** A collection pausing the event loop this long is logged. */
const LONG_GC_MS = 100;

/** Garbage-collection pauses since the previous scrape: the longest, the longest full (major) one, and the total. */
const gc = { maxMs: 0, majorMaxMs: 0, totalMs: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gc.totalMs += e.duration;
    gc.maxMs = Math.max(gc.maxMs, e.duration);
    if (e.duration >= LONG_GC_MS && servicesReady()) services().log.warn({ ms: Math.round(e.duration), kind: (e as { detail?: { kind?: number } }).detail?.kind }, "long garbage-collection pause");
    if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      gc.majorMaxMs = Math.max(gc.majorMaxMs, e.duration);
    }
  }
}).observe({ entryTypes: ["gc"] });

/** Prometheus text exposition of what an operator watches first. */
export function metricsText(transport: string): string {
  const s = services();
  const mem = process.memoryUsage();
  const lines = [
    "# HELP haven_info Build and transport of this node.",
    "# TYPE haven_info gauge",
    `haven_info{transport="${transport}"} 1`,
    "# HELP haven_rooms Room actors on this node.",
    "# TYPE haven_rooms gauge",
    `haven_rooms ${matchMaker.stats.local.roomCount}`,
    "# HELP haven_clients Connected sockets on this node.",
    "# TYPE haven_clients gauge",
    `haven_clients ${matchMaker.stats.local.ccu}`,
    "# HELP haven_emergencies_active Emergencies not yet handed over or cancelled.",
    "# TYPE haven_emergencies_active gauge",
    `haven_emergencies_active ${s.emergencies.activeCount()}`,
    "# HELP haven_emergency_rooms Emergency room actors held on this node (open or closing).",
    "# TYPE haven_emergency_rooms gauge",
    `haven_emergency_rooms ${s.emergencies.liveRooms().length}`,
    "# HELP haven_redis_up 1 while this node is connected to Redis (cluster mode), 0 while it is not.",
    "# TYPE haven_redis_up gauge",
    `haven_redis_up ${s.membership.connected() ? 1 : 0}`,
    "# HELP haven_requests_limited_total Requests refused with 429 RATE_LIMITED by this node since it started.",
    "# TYPE haven_requests_limited_total counter",
    ...Object.entries(limitStats.refused).map(([action, n]) => `haven_requests_limited_total{action="${action}"} ${n}`),
    "# HELP haven_new_device_passes_total Alerts and bypass tokens let through a spent address budget as a new device.",
    "# TYPE haven_new_device_passes_total counter",
    `haven_new_device_passes_total ${limitStats.newDevices}`,
    "# HELP haven_limiter_memory_keys Keys held by this node's in-memory request counters (each capped at HAVEN_LIMITER_MAX_KEYS).",
    "# TYPE haven_limiter_memory_keys gauge",
    `haven_limiter_memory_keys ${limitStats.memoryKeys()}`,
    "# HELP haven_notifications_total Delivery attempts by this node's outbox worker, by channel and outcome (delivered, failed: to be retried, dead, skipped).",
    "# TYPE haven_notifications_total counter",
    ...[...notifyStats.attempts].map(([k, n]) => {
      const [channel, outcome] = k.split(" ");
      return `haven_notifications_total{channel="${channel}",outcome="${outcome}"} ${n}`;
    }),
    "# HELP haven_outbox_messages Notifications waiting (pending) and dead-lettered (dead), cluster-wide, as this node's worker last read them.",
    "# TYPE haven_outbox_messages gauge",
    ...["pending", "dead"].flatMap((status) => ["sms", "webhook", "push"].map((channel) =>
      `haven_outbox_messages{status="${status}",channel="${channel}"} ${notifyStats.backlog.find((b) => b.status === status && b.channel === channel)?.n ?? 0}`)),
    "# HELP haven_process_resident_memory_bytes Resident set size.",
    "# TYPE haven_process_resident_memory_bytes gauge",
    `haven_process_resident_memory_bytes ${mem.rss}`,
    "# HELP haven_process_heap_used_bytes V8 heap in use.",
    "# TYPE haven_process_heap_used_bytes gauge",
    `haven_process_heap_used_bytes ${mem.heapUsed}`,
    "# HELP haven_event_loop_stall_max_seconds Longest event-loop delay since the previous scrape.",
    "# TYPE haven_event_loop_stall_max_seconds gauge",
    `haven_event_loop_stall_max_seconds ${seconds(loopDelay.max)}`,
    "# HELP haven_event_loop_delay_p99_seconds 99th percentile of event-loop delay since the previous scrape.",
    "# TYPE haven_event_loop_delay_p99_seconds gauge",
    `haven_event_loop_delay_p99_seconds ${seconds(loopDelay.percentile(99))}`,
    "# HELP haven_gc_pause_max_seconds Longest garbage-collection pause since the previous scrape.",
    "# TYPE haven_gc_pause_max_seconds gauge",
    `haven_gc_pause_max_seconds ${gc.maxMs / 1000}`,
    "# HELP haven_gc_major_pause_max_seconds Longest full (mark-compact) garbage-collection pause since the previous scrape.",
    "# TYPE haven_gc_major_pause_max_seconds gauge",
    `haven_gc_major_pause_max_seconds ${gc.majorMaxMs / 1000}`,
    "# HELP haven_gc_pause_seconds_total Garbage-collection pauses since the previous scrape, summed.",
    "# TYPE haven_gc_pause_seconds_total gauge",
    `haven_gc_pause_seconds_total ${gc.totalMs / 1000}`,
  ];
  loopDelay.reset();
  Object.assign(gc, { maxMs: 0, majorMaxMs: 0, totalMs: 0 });
  return lines.join("\n") + "\n";
}

/** Histogram nanoseconds as seconds (0 before the first sample). */
function seconds(ns: number): number {
  return Number.isFinite(ns) && ns > 0 ? ns / 1e9 : 0;
}
