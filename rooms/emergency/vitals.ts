import type { Principal } from "../../src/auth/tokens.ts";
import { VITALS, vitalAlertName, vitalOutOfRange, type Vital, type VitalThresholds } from "../../src/domain/vitals.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import { VitalsSample, type EmergencyState } from "../schema/EmergencyState.ts";
import { actor } from "./changes.ts";
import type { EmergencyContext } from "./context.ts";
import type { ReceivingHospital } from "./hospital-link.ts";

/** A vitals sample as a responder or their device sends it (the `vitals` message). */
export type VitalsMessage = Partial<Record<Vital, number>> & { device?: { battery: number; signal: number }; at?: number };

export interface VitalsDeps {
  ctx: EmergencyContext;
  config: { minIntervalMs: number; thresholds: VitalThresholds };
  hospital: Pick<ReceivingHospital, "sync">;
  /** A sample changed the medical part: the next snapshot seals it again. */
  changed(): void;
}

/**
 * The vitals stream of an emergency. Each sample overwrites its sender's latest sample in the
 * medical part of the state (seen only through the medical view, sealed in snapshots); it is not a
 * critical change and writes nothing by itself. Only a vital crossing its threshold (normal to
 * out of range, back, or from low to high) is: `alertChange` runs inside the transaction engine,
 * records the timeline event, raises the priority to critical and marks the wallboard entry.
 */
export class VitalsStream {
  private readonly d: VitalsDeps;

  constructor(deps: VitalsDeps) {
    this.d = deps;
  }

  /**
   * Stores `s` as the sender's latest sample (or refuses it: RATE_LIMITED when it comes sooner than
   * the bound after their last one). True when a vital in it crossed its threshold: the caller then
   * runs `alertChange` as a critical change.
   */
  sample(p: Principal, s: VitalsMessage, now: number): boolean {
    const { ctx, config } = this.d;
    const medical = ctx.state.medical;
    let latest = medical.vitals.get(p.sub);
    if (latest && now - latest.receivedAt < config.minIntervalMs) {
      throw new HavenError("RATE_LIMITED", `at most one vitals sample every ${config.minIntervalMs} ms per sender`, { retryAfterSeconds: 1 });
    }
    if (!latest) {
      latest = new VitalsSample();
      medical.vitals.set(p.sub, latest);
    }
    let crossed = false;
    for (const vital of VITALS) {
      const value = s[vital];
      if (value === undefined) continue;
      latest[vital] = value;
      if (vitalOutOfRange(value, config.thresholds[vital]) !== alertOf(ctx.state, vital)) crossed = true;
    }
    if (s.device) {
      latest.battery = s.device.battery;
      latest.signal = s.device.signal;
    }
    latest.at = s.at ?? now;
    latest.receivedAt = now;
    this.d.changed();
    return crossed;
  }

  /**
   * Inside a critical change: each vital of `s` whose state changed is recorded (`vitals_alert`
   * naming the vital and its direction, `vitals_normal` when it is back in range — never a value),
   * the priority is raised to critical on an alert, and the wallboard entry follows.
   */
  alertChange(p: Principal, s: VitalsMessage): { alerts: string[] } {
    const { ctx, config } = this.d;
    const state = ctx.state;
    const list = state.medical.vitalsAlerts;
    let changed = false;
    let raised = false;
    const now = ctx.clock.now();
    for (const vital of VITALS) {
      const value = s[vital];
      if (value === undefined) continue;
      const direction = vitalOutOfRange(value, config.thresholds[vital]);
      const before = alertOf(state, vital);
      if (direction === before) continue;
      changed = true;
      const at = list.findIndex((a) => a.startsWith(`${vital}:`));
      if (at >= 0) list.splice(at, 1);
      if (direction === "") {
        ctx.event("vitals_normal", actor(p), vital, now);
      } else {
        list.push(vitalAlertName(vital, direction));
        ctx.event("vitals_alert", actor(p), `${vital} ${direction}`, now);
        raised = true;
      }
    }
    if (raised && state.priority !== "critical") {
      ctx.event("priority_changed", actor(p), `${state.priority} -> critical (vitals)`, now);
      state.priority = "critical";
    }
    if (changed) {
      this.d.changed();
      this.d.hospital.sync(true);
    }
    return { alerts: [...list] };
  }
}

/** The direction `vital` is out of range now for this emergency, or "" when it is not. */
function alertOf(state: EmergencyState, vital: Vital): "low" | "high" | "" {
  for (const a of state.medical.vitalsAlerts) {
    if (a.length > vital.length && a.charCodeAt(vital.length) === 58 /* : */ && a.startsWith(vital)) return a.slice(vital.length + 1) as "low" | "high";
  }
  return "";
}
