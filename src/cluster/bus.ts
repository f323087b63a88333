import type { Presence } from "@colyseus/core";
import type { Divert } from "../domain/divert.ts";
import type { NoticeRegion } from "../domain/ops.ts";
import type { Logger } from "../log.ts";

/** What the nodes of a cluster tell each other (through presence pub/sub; one process hears itself). */
export type ClusterEvent =
  | { type: "wallboard_opened"; hospitalId: string }
  | { type: "hospital_availability"; hospitalId: string; emergencyBeds: number; icuBeds: number; accepting: boolean }
  | { type: "hospital_approved"; hospitalId: string }
  | { type: "hospital_divert"; hospitalId: string; divert: Divert | null }
  | { type: "ops_notice"; notice: { id: string; text: string; at: number; region: NoticeRegion | null } };

const CHANNEL = "haven:cluster";

/**
 * Cluster-wide notices over presence pub/sub: a reopened wallboard (the emergencies bound for it
 * show on it again), a hospital's new capacity or divert and a newly approved hospital (every node matches
 * against the same directory), and the operations desk's notices (each node delivers them to its own rooms). Redis is Haven's control plane, so what arrives here is trusted
 * as far as its shape.
 */
export class ClusterBus {
  private readonly presence: Presence;
  private readonly log: Logger;

  constructor(presence: Presence, log: Logger) {
    this.presence = presence;
    this.log = log;
  }

  async publish(event: ClusterEvent): Promise<void> {
    try {
      await this.presence.publish(CHANNEL, event);
    } catch (error) {
      this.log.warn({ err: error, event: event.type }, "cluster notice not sent (redis away)");
    }
  }

  async subscribe(handler: (event: ClusterEvent) => void | Promise<void>): Promise<void> {
    await this.presence.subscribe(CHANNEL, (event: ClusterEvent) => {
      if (!event || typeof event !== "object" || typeof event.type !== "string") return;
      Promise.resolve(handler(event)).catch((error) => this.log.warn({ err: error, event: event.type }, "cluster notice not applied"));
    });
  }
}
