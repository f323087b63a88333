import type { ClaimedMessage, NotifyChannel, OutboxStore, OutboxStatus } from "../../persistence/stores.ts";
import type { NotifyConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Worker } from "../workers.ts";
import { backoffMs } from "./backoff.ts";
import { DeliveryError, type Channel } from "./channels.ts";
import { resolveRecipient, type NotifyDirectory } from "./recipients.ts";
import { isTemplateEvent, render } from "./templates.ts";

/** What this node's worker did since it started, by channel and outcome (for /metrics). */
export const notifyStats = {
  /** `${channel} ${outcome}` → count; outcome: delivered, failed (an attempt to retry), dead, skipped. */
  attempts: new Map<string, number>(),
  /** Waiting and dead-lettered messages cluster-wide, as last read. */
  backlog: [] as { status: OutboxStatus; channel: string; n: number }[],
};

function count(channel: string, outcome: string): void {
  const k = `${channel} ${outcome}`;
  notifyStats.attempts.set(k, (notifyStats.attempts.get(k) ?? 0) + 1);
}

export interface OutboxWorkerDeps {
  store: OutboxStore;
  directory: NotifyDirectory;
  channels: Partial<Record<NotifyChannel, Channel>>;
  config: NotifyConfig;
  /** The node's process id (recorded on what it claims). */
  node: string;
  log: Logger;
}

/**
 * Delivers the outbox, on every node: claims due messages (each by one node only), resolves and
 * renders each, sends it on its channel, and records the outcome — delivered; tried again after
 * an exponential backoff with jitter; dead-lettered once the attempt limit is reached or the far
 * end refused it for good; skipped when the recipient has no address on that channel. A node that
 * dies mid-send leaves its claims to run out: they are due again after the lease (at least once;
 * the delivery key rides along so that a receiver drops a repeat).
 *
 * It runs a batch at a time, never two at once; every database call goes through the deadline
 * wrapper of the node's pool, and each send has its own timeout.
 */
export class OutboxWorker implements Worker {
  readonly name = "outbox";
  private readonly d: OutboxWorkerDeps;
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private countedAt = 0;

  constructor(deps: OutboxWorkerDeps) {
    this.d = deps;
  }

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => this.kick(), this.d.config.worker.pollMs);
    this.timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.soon);
    await this.running;
  }

  /** Something was queued on this node: look now rather than at the next poll. */
  nudge(): void {
    if (this.stopped || this.soon) return;
    this.soon = setTimeout(() => { this.soon = undefined; this.kick(); }, 5);
  }

  private kick(): void {
    if (this.stopped || this.running) return;
    this.running = this.drain().catch((error) => this.d.log.warn({ err: error }, "the outbox could not be read; the next poll tries again"))
      .finally(() => { this.running = undefined; });
  }

  /** Claims and delivers batches until none is full (then waits for the next poll or nudge). */
  private async drain(): Promise<void> {
    const { store, config, node } = this.d;
    for (let rounds = 0; rounds < 50 && !this.stopped; rounds++) {
      const batch = await store.claim(node, config.worker.batch, config.worker.leaseMs);
      await Promise.all(batch.map((m) => this.deliver(m)));
      if (batch.length < config.worker.batch) break;
      await new Promise((r) => setImmediate(r)); // let sockets run between batches
    }
    // the backlog gauge: read at most every ten polls (at most every 10 s)
    if (Date.now() - this.countedAt >= Math.min(10_000, config.worker.pollMs * 10)) {
      this.countedAt = Date.now();
      notifyStats.backlog = await store.counts();
    }
  }

  private async deliver(m: ClaimedMessage): Promise<void> {
    const { store, config, node, log } = this.d;
    const w = config.worker;
    let outcome: Parameters<OutboxStore["finish"]>[2];
    try {
      const channel = this.d.channels[m.channel];
      if (!channel) throw Object.assign(new Error(`the ${m.channel} channel is not configured`), { skip: true });
      if (!isTemplateEvent(m.event)) throw new DeliveryError(`no template ${m.event}`, true);
      const to = await resolveRecipient(m, this.d.directory, config);
      if ("skip" in to) throw Object.assign(new Error(to.skip), { skip: true });
      const text = render(m.event, to.language, m.payload.params ?? {});
      await channel.send(to.address, { key: m.key, event: m.event, emergencyId: m.emergencyId, text }, AbortSignal.timeout(w.sendTimeoutMs));
      outcome = { status: "delivered" };
    } catch (error) {
      const message = (error as Error).message ?? String(error);
      if ((error as { skip?: boolean }).skip) outcome = { status: "skipped", error: message };
      else if ((error instanceof DeliveryError && error.permanent) || m.attempts >= w.maxAttempts) outcome = { status: "dead", error: message };
      else outcome = { status: "pending", retryInMs: backoffMs(m.attempts, w.backoffBaseMs, w.backoffMaxMs), error: message };
    }
    count(m.channel, outcome.status === "pending" ? "failed" : outcome.status);
    if (outcome.status === "dead") log.error({ key: m.key, channel: m.channel, event: m.event, emergencyId: m.emergencyId, attempts: m.attempts, error: outcome.error }, "a notification was dead-lettered");
    else if (outcome.status !== "delivered") log.info({ key: m.key, channel: m.channel, attempts: m.attempts, outcome: outcome.status, error: outcome.error }, "a notification was not delivered");
    try {
      await store.finish(m, node, outcome);
    } catch (error) {
      // the lease runs out and the message is tried again (a delivered one once more: the key tells the receiver)
      log.warn({ err: error, key: m.key }, "a notification's outcome could not be recorded; it will be tried again after its lease");
    }
  }
}
