import { matchMaker } from "@colyseus/core";
import type { Logger } from "../log.ts";
import type { Membership } from "./membership.ts";
import type { EmergencyRegistry } from "../emergencies.ts";
import type { DutyIndex } from "../domain/duty.ts";

export interface FailoverOptions {
  membership: Membership;
  emergencies: EmergencyRegistry;
  duty: DutyIndex;
  /** Opens every hospital's wallboard room that no live node holds. */
  ensureWallboards: () => Promise<void>;
  log: Logger;
  /** How often this node looks for dead nodes. */
  checkIntervalMs: number;
  /** How often this node looks for emergencies nobody holds (a backstop for anything missed). */
  sweepIntervalMs: number;
}

/**
 * Makes a dead node a non-event: every node watches the others; when one dies (its Redis
 * subscription is gone, or its heartbeat lapsed), one survivor wins the right to reap it, drops
 * its room listings and on-duty entries, and brings its emergencies back on the least busy live
 * nodes from Postgres. The parties, whose sockets dropped, rejoin by emergency id and land
 * wherever each emergency now lives; a rejoin that arrives first restores the emergency itself.
 */
export class Failover {
  private readonly o: FailoverOptions;
  private checkTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private busy = false;

  constructor(o: FailoverOptions) {
    this.o = o;
  }

  start(): void {
    if (!this.o.membership.clustered) return;
    this.checkTimer = setInterval(() => void this.check(), this.o.checkIntervalMs);
    this.sweepTimer = setInterval(() => void this.sweep(), this.o.sweepIntervalMs);
    this.checkTimer.unref();
    this.sweepTimer.unref();
  }

  stop(): void {
    clearInterval(this.checkTimer);
    clearInterval(this.sweepTimer);
  }

  private async check(): Promise<void> {
    const m = this.o.membership;
    if (this.busy || !m.settled()) return;
    this.busy = true;
    try {
      const dead = await m.deadOnes(await m.members());
      for (const pid of dead) {
        if (await m.lockReap(pid)) await this.reap(pid);
      }
    } catch (error) {
      this.o.log.debug({ err: error }, "failover check skipped (redis away)");
    } finally {
      this.busy = false;
    }
  }

  /** Takes over after dead process `pid`. A step that fails leaves it listed, and it is reaped again. */
  async reap(pid: string): Promise<void> {
    const { log, membership, duty, emergencies } = this.o;
    const started = Date.now();
    // looked at once more: a node that was only slow keeps its rooms
    if ((await membership.alive([pid])).has(pid)) return;
    log.warn({ processId: pid }, "a node is dead: taking its emergencies over");
    await matchMaker.stats.excludeProcess(pid);
    await matchMaker.driver.cleanup?.(pid);
    // should it be alive after all, Colyseus on that node puts its room listings back (its swept check)
    await matchMaker.presence.setex(`swept:${pid}`, "1", 600);
    const responders = await duty.forgetProcess(pid);
    const restored = await emergencies.sweep(log);
    await this.o.ensureWallboards();
    await membership.forget(pid);
    log.warn({ processId: pid, restored, respondersOffDuty: responders, ms: Date.now() - started }, "dead node reaped: its emergencies live on other nodes now");
  }

  private async sweep(): Promise<void> {
    if (this.busy || !this.o.membership.settled()) return;
    this.busy = true;
    try {
      await this.o.emergencies.sweep(this.o.log);
      await this.o.ensureWallboards();
    } catch (error) {
      this.o.log.debug({ err: error }, "orphan sweep skipped");
    } finally {
      this.busy = false;
    }
  }
}
