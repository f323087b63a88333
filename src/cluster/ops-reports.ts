import type { Presence } from "@colyseus/core";
import type { EmergencySummary, NodeReport, UnitSummary } from "../domain/ops.ts";

/** Set by the ops room while it runs: nodes report only while someone is watching. */
const WATCHING = "haven:ops:watching";
const REPORT = (processId: string) => `haven:ops:report:${processId}`;
/** A report or the watch flag not renewed for this long has lapsed. */
const TTL_SECONDS = 5;

export interface ReporterSources {
  processId: string;
  nodeName: string;
  emergencies(): EmergencySummary[];
  units(): UnitSummary[];
  rooms(): { rooms: number; clients: number };
}

/**
 * The node side of the operations desk. On the desk's interval each node reads one key (is an
 * ops room open anywhere?) and, only then, writes one report of what it holds — its open
 * emergencies, its on-duty responders and its load — under a key that lapses by itself. Nothing
 * is done per position message: the desk costs each node one read per interval while nobody
 * watches, and one read and one write while someone does.
 */
export class OpsReporter {
  private readonly presence: Presence;
  private readonly src: ReporterSources;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();

  constructor(presence: Presence, sources: ReporterSources) {
    this.presence = presence;
    this.src = sources;
  }

  /** One interval's work; with Redis away it does nothing (the desk keeps its last picture). */
  async tick(): Promise<void> {
    try {
      if (!(await this.presence.get(WATCHING))) return;
      await this.presence.setex(REPORT(this.src.processId), JSON.stringify(this.report()), TTL_SECONDS);
    } catch {
      // Redis away: nothing to report to; the next interval tries again
    }
  }

  report(): NodeReport {
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const elapsedMs = Math.max(1, now - this.lastAt);
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    const emergencies = this.src.emergencies();
    return {
      processId: this.src.processId,
      name: this.src.nodeName,
      reportedAt: Date.now(),
      load: {
        emergencies: emergencies.length,
        ...this.src.rooms(),
        rssMb: Math.round(process.memoryUsage.rss() / 1_048_576),
        cpuPercent: Math.min(1000, Math.round(((cpu.user + cpu.system) / 1000 / elapsedMs) * 100)),
      },
      emergencies,
      units: this.src.units(),
    };
  }
}

/** The desk side: says it is watching, and reads every node's latest report. */
export class OpsReports {
  private readonly presence: Presence;

  constructor(presence: Presence) {
    this.presence = presence;
  }

  async watch(): Promise<void> {
    await this.presence.setex(WATCHING, "1", TTL_SECONDS);
  }

  /** The latest report of each of these processes (a node that has not reported is left out). */
  async read(processIds: readonly string[]): Promise<Map<string, NodeReport>> {
    const out = new Map<string, NodeReport>();
    await Promise.all(processIds.map(async (pid) => {
      const raw = await this.presence.get(REPORT(pid));
      if (typeof raw !== "string") return;
      try {
        const report = JSON.parse(raw) as NodeReport;
        if (report && report.processId === pid) out.set(pid, report);
      } catch {
        // a malformed report is skipped; the node writes a new one on the next interval
      }
    }));
    return out;
  }
}
