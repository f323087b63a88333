import { describe, expect, it } from "vitest";
import { Escalation } from "../../rooms/emergency/escalation.ts";
import { Party } from "../../rooms/schema/common.ts";
import { fakeEmergency, settle } from "./fakes.ts";

const NO_RESPONDER_MS = 180_000;
const NO_ACK_MS = 300_000;
const IDLE_MS = 4 * 3600_000;

function harness(expire?: (reason: string) => Promise<void>) {
  const e = fakeEmergency();
  const audits: string[] = [];
  const expiries: string[] = [];
  const escalation = new Escalation({
    ctx: e.ctx,
    config: { noResponderMs: NO_RESPONDER_MS, noAcknowledgementMs: NO_ACK_MS, idleExpiryMs: IDLE_MS },
    audit: (action, reason) => audits.push(`${action} ${reason}`),
    expire: expire ?? (async (reason) => { expiries.push(reason); e.state.status = "expired"; }),
  });
  return { ...e, escalation, audits, expiries };
}

describe("escalation and idle expiry on the room clock", () => {
  it("alerts operations once when a role has no accepted responder in time after the alert", () => {
    const h = harness();
    h.escalation.arm();
    h.clock.advance(NO_RESPONDER_MS - 1);
    expect(h.types()).not.toContain("escalated");
    h.clock.advance(1);
    expect(h.events.filter((e) => e.type === "escalated").map((e) => e.detail))
      .toEqual(["no_responder: no first_aider or ambulance_crew accepted within 3 min of the alert"]);
    expect(h.audits).toEqual(["emergency.escalated no_responder"]);
    // armed again (an assessment, an undone change): the same reason is not raised twice
    h.escalation.arm();
    h.clock.advance(NO_RESPONDER_MS);
    expect(h.types().filter((t) => t === "escalated")).toHaveLength(1);
  });

  it("does not alert when both roles were assigned in time, nor for a reason raised before a restore", () => {
    const h = harness();
    h.state.firstAiders.set("fa", new Party());
    h.state.ambulance.set("crew", new Party());
    h.escalation.arm();
    h.clock.advance(NO_RESPONDER_MS);
    expect(h.types()).not.toContain("escalated");

    const restored = harness();
    restored.escalation.restore([{ type: "escalated", detail: "no_responder: no first_aider accepted within 3 min of the alert" }]);
    restored.escalation.arm();
    restored.clock.advance(NO_RESPONDER_MS);
    expect(restored.types()).not.toContain("escalated");
  });

  it("alerts once when no hospital acknowledged in time after the assessment, and not once one did", () => {
    const h = harness();
    h.state.firstAiders.set("fa", new Party());
    h.state.ambulance.set("crew", new Party());
    h.state.medical.assessed = true;
    h.state.medical.assessedAt = h.clock.now();
    h.escalation.arm();
    h.clock.advance(NO_ACK_MS);
    expect(h.events.filter((e) => e.type === "escalated").map((e) => e.detail)).toEqual(["no_acknowledgement: no hospital acknowledged within 5 min of the assessment"]);
    // escalation ends with a human: operations' duty phone and webhook, through the outbox
    expect(h.notices.map((n) => n.key)).toEqual(["ops:e-1:no_acknowledgement:sms", "ops:e-1:no_acknowledgement:webhook"]);
    expect(h.notices[0]).toMatchObject({ recipient: "ops", event: "ops_escalation", payload: { params: { reason: "no hospital acknowledged within 5 min of the assessment" } } });

    const acked = harness();
    acked.state.medical.assessed = true;
    acked.state.medical.assessedAt = acked.clock.now();
    acked.state.hospital.status = "acknowledged";
    acked.escalation.arm();
    acked.clock.advance(NO_ACK_MS);
    expect(acked.events.filter((e) => e.detail.startsWith("no_acknowledgement"))).toHaveLength(0);
    expect(acked.notices.filter((n) => n.key.includes("no_acknowledgement"))).toHaveLength(0);
  });

  it("expires an emergency idle for the bound, and activity postpones it", async () => {
    const h = harness();
    h.escalation.arm();
    h.clock.advance(IDLE_MS / 2);
    h.escalation.touch();
    h.clock.advance(IDLE_MS / 2);
    await settle();
    expect(h.expiries).toEqual([]);
    h.clock.advance(IDLE_MS / 2 - 1);
    await settle();
    expect(h.expiries).toEqual([]);
    h.clock.advance(1);
    await settle();
    expect(h.expiries).toEqual(["no activity for 240 min"]);
  });

  it("tries an expiry that could not be committed again shortly, and nothing fires once cleared", async () => {
    let attempts = 0;
    const h = harness(async () => { attempts++; throw new Error("database away"); });
    h.escalation.arm();
    h.clock.advance(IDLE_MS);
    await settle();
    expect(attempts).toBe(1);
    h.clock.advance(2000);
    await settle();
    expect(attempts).toBe(2);
    h.escalation.clear();
    h.clock.advance(IDLE_MS);
    await settle();
    expect(attempts).toBe(2);
  });
});
