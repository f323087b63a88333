import { matchMaker } from "@colyseus/core";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { services } from "../services.ts";

/** Event-loop delay, sampled every 10 ms; read and reset by each scrape. */
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

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
  ];
  loopDelay.reset();
  return lines.join("\n") + "\n";
}

/** Histogram nanoseconds as seconds (0 before the first sample). */
function seconds(ns: number): number {
  return Number.isFinite(ns) && ns > 0 ? ns / 1e9 : 0;
}
