import type { Config } from "../../src/config.ts";
import { idleText, missingRoles, noAcknowledgementText, noResponderText, raisedReasons, type EscalationReason } from "../../src/domain/escalation.ts";
import { isClosed } from "../../src/domain/status.ts";
import { opsEscalation } from "../../src/notify/who.ts";
import type { EmergencyContext, Timer } from "./context.ts";

/** An expiry that could not be committed is tried again after this. */
const EXPIRY_RETRY_MS = 2000;

export interface EscalationDeps {
  ctx: EmergencyContext;
  config: Config["escalation"];
  /** An audit record of a decision the emergency made by itself. */
  audit(action: string, reason: string): void;
  /** Closes the emergency as expired (a critical change); rejects when it could not be committed. */
  expire(reason: string): Promise<void>;
}

/**
 * The bounds of an emergency: operations is alerted (timeline `escalated`, an error-level log
 * line, the audit log, and an SMS and a webhook to its duty phone and URL) when a role has no accepted responder in time after the alert, or no
 * hospital acknowledged in time after the assessment — each reason once; an emergency with no
 * activity (no party message, join or change) for the idle bound is closed as expired.
 */
export class Escalation {
  private readonly d: EscalationDeps;
  private timers: Timer[] = [];
  /** Why operations was alerted already (each reason once). */
  private readonly escalated = new Set<string>();
  /** The last party message, join or critical change. */
  lastActivityAt: number;

  constructor(deps: EscalationDeps) {
    this.d = deps;
    this.lastActivityAt = deps.ctx.clock.now();
  }

  /** Something happened in the emergency: its idle bound starts again. */
  touch(): void {
    this.lastActivityAt = this.d.ctx.clock.now();
  }

  /** Reads back which reasons were raised already (after a restore). */
  restore(timeline: Iterable<{ type: string; detail: string }>): void {
    for (const reason of raisedReasons(timeline)) this.escalated.add(reason);
  }

  /**
   * Arms the bounds from the state (after a create, a restore, an assessment or an undone
   * change). Dispatch and re-alerts go on regardless.
   */
  arm(): void {
    this.clear();
    const { ctx, config } = this.d;
    const state = ctx.state;
    if (isClosed(state.status)) return;
    const now = ctx.clock.now();
    const at = (when: number, fn: () => void) => this.timers.push(ctx.clock.setTimeout(fn, Math.max(0, when - now)));
    if (!this.escalated.has("no_responder")) {
      at(state.createdAt + config.noResponderMs, () => {
        const missing = missingRoles(state.firstAiders.size, state.ambulance.size);
        if (missing.length > 0) this.escalate("no_responder", noResponderText(missing, config.noResponderMs));
      });
    }
    if (state.medical.assessed && !this.escalated.has("no_acknowledgement")) {
      at(state.medical.assessedAt + config.noAcknowledgementMs, () => {
        if (state.hospital.status !== "acknowledged") this.escalate("no_acknowledgement", noAcknowledgementText(config.noAcknowledgementMs));
      });
    }
    at(this.lastActivityAt + config.idleExpiryMs, () => this.expireIfIdle());
  }

  clear(): void {
    for (const t of this.timers) t.clear();
    this.timers = [];
  }

  /** Operations is alerted, once per reason: on the timeline, in the log at error level, and in the audit log. */
  private escalate(reason: EscalationReason, text: string): void {
    const { ctx } = this.d;
    const state = ctx.state;
    if (isClosed(state.status) || ctx.isRelinquished() || this.escalated.has(reason)) return;
    this.escalated.add(reason);
    ctx.event("escalated", "system", `${reason}: ${text}`);
    ctx.log.error({ emergencyId: ctx.roomId, priority: state.priority, status: state.status, reason }, `emergency escalated to operations: ${text}`);
    this.d.audit("emergency.escalated", reason);
    // escalation ends with a human: the operations duty phone and webhook are told through the outbox
    for (const m of opsEscalation({ emergencyId: ctx.roomId, reason, priority: state.priority, text })) ctx.notify(m);
  }

  /**
   * Operations is told of a decision the emergency made by itself that they must see now (its
   * receiving hospital went on divert): an error-level log line and the audit log; the timeline
   * event is the caller's.
   */
  notifyOperations(action: string, text: string): void {
    const { ctx } = this.d;
    ctx.log.error({ emergencyId: ctx.roomId, priority: ctx.state.priority, status: ctx.state.status, action }, `operations: ${text}`);
    this.d.audit(action, text.slice(0, 500));
  }

  /** Closes the emergency as expired if nothing happened in it for the idle bound; otherwise looks again when it could be. */
  private expireIfIdle(): void {
    const { ctx, config } = this.d;
    if (isClosed(ctx.state.status) || ctx.isRelinquished()) return;
    const idle = ctx.clock.now() - this.lastActivityAt;
    if (idle < config.idleExpiryMs) {
      this.timers.push(ctx.clock.setTimeout(() => this.expireIfIdle(), config.idleExpiryMs - idle));
      return;
    }
    this.d.expire(idleText(config.idleExpiryMs)).catch((error) => {
      ctx.log.warn({ err: error, emergencyId: ctx.roomId }, "an idle emergency could not be closed as expired yet; trying again");
      this.timers.push(ctx.clock.setTimeout(() => this.expireIfIdle(), EXPIRY_RETRY_MS));
    });
  }
}
