import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, REDIS_URL, account, holderOf, join, login, onDuty, sleep, startCluster, waitFor, type Account, type Cluster, type Haven } from "./harness.ts";

/**
 * The operations desk on a three-node cluster, on Redis database 11 of its own (test/cluster.test.ts
 * uses 9, test/deploy.test.ts 12, test/request-limits.test.ts 13; each empties its database first).
 */
let c: Cluster;
let ops: Account;
beforeAll(async () => {
  c = await startCluster(3, { HAVEN_OPS_REFRESH_MS: "200" }, { url: REDIS_URL, db: 11 });
  ops = await login(c.nodes[0], OPS.email, OPS.password);
}, 60_000);
afterAll(async () => { await c?.stop(); });

const nameOf = (n: Haven) => `node-${c.nodes.indexOf(n) + 1}`;

/** An alert at `at` through node `via`: its emergency lives on whichever node the cluster chose. */
async function alert(via: Haven, at: { lat: number; lng: number }): Promise<{ id: string; patient: Account; holder: Haven }> {
  const patient = await account(via, "patient");
  const r = await via.http("POST", "/api/emergency/alert", at, patient.token);
  expect(r.status).toBe(201);
  const id = r.body.emergencyId as string;
  return { id, patient, holder: await holderOf(c, id) };
}

/** Joins `roomId` through the first live node that answers (as an app with a list of node addresses does). */
async function rejoin(nodes: Haven[], token: string, roomId: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    try {
      return await join(nodes[i % nodes.length], token, roomId);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

describe("the ops room in a cluster", () => {
  it("shows the emergencies of every node, acts on emergencies held by other nodes, and comes back on another node when its node is killed", async () => {
    // emergencies until every node holds at least one (each new room goes to the least busy node,
    // and the first node opened the eight wallboards)
    const emergencies: { id: string; patient: Account; holder: Haven }[] = [];
    for (let i = 0; i < 40 && new Set(emergencies.map((e) => e.holder)).size < 3; i++) {
      emergencies.push(await alert(c.nodes[i % 3], { lat: -1.28 + (i % 10) * 0.01, lng: 36.82 + Math.floor(i / 10) * 0.01 }));
    }
    expect(new Set(emergencies.map((e) => e.holder)).size).toBe(3);

    const desk = await join(c.nodes[0], ops.token, "ops");
    const deskNode = await holderOf(c, "ops");
    await waitFor(desk, (st) => emergencies.every((e) => st.emergencies.has(e.id)), 5000, "every node's emergencies on the desk");
    for (const e of emergencies) expect(desk.state.emergencies.get(e.id).node).toBe(nameOf(e.holder));
    await waitFor(desk, (st) => st.nodes.size === 3 && [...st.nodes.values()].every((n: any) => n.alive && n.reportedAt > 0), 3000, "three live nodes reporting");
    expect([...desk.state.nodes.values()].map((n: any) => n.name).sort()).toEqual(["node-1", "node-2", "node-3"]);

    // actions reach the node that holds the emergency
    const elsewhere = emergencies.filter((e) => e.holder !== deskNode);
    const [toCancel, toAssign] = elsewhere;
    const responderNode = c.nodes.find((n) => n !== deskNode && n !== toAssign.holder) ?? c.nodes.find((n) => n !== deskNode)!;
    const responder = await onDuty(responderNode, ops, "first_aider", { lat: -0.9, lng: 37.3 }); // far from every patient: no offers
    expect(await desk.request("assign_responder", { emergencyId: toAssign.id, responderId: responder.acc.id, reason: "called in by phone" })).toEqual({ ok: true, emergencyId: toAssign.id });
    await waitFor(responder.duty, (st) => st.assignedTo === toAssign.id, 3000, "the responder's duty room (another node) assigned");
    await waitFor(desk, (st) => [...(st.emergencies.get(toAssign.id)?.firstAiders ?? [])].includes(responder.acc.id), 3000, "the assignment on the desk");
    await waitFor(desk, (st) => st.units.get(responder.acc.id)?.status === "assigned" && st.units.get(responder.acc.id).node === nameOf(responderNode), 3000, "the unit board");

    expect(await desk.request("cancel", { emergencyId: toCancel.id, cancelReason: "duplicate", reason: "same caller twice" })).toEqual({ ok: true, status: "cancelled" });
    const status = await toCancel.holder.http("GET", `/api/emergency/${toCancel.id}/status`, undefined, toCancel.patient.token);
    expect(status.body.status).toBe("cancelled");
    await waitFor(desk, (st) => !st.emergencies.has(toCancel.id), 3000, "the cancelled emergency off the desk");

    // the node holding the ops room dies: the desk joins `ops` again through a live node and sees
    // every open emergency again, those of the dead node restored elsewhere
    const open = emergencies.filter((e) => e !== toCancel);
    const survivors = c.nodes.filter((n) => n !== deskNode);
    const dropped = new Promise<number>((resolve) => desk.onLeave((code) => resolve(code)));
    desk.reconnection.enabled = false;
    await deskNode.kill();
    await dropped;
    const again = await rejoin(survivors, ops.token, "ops");
    const newDeskNode = await holderOf(c, "ops");
    expect(survivors).toContain(newDeskNode);
    await waitFor(again, (st) => open.every((e) => st.emergencies.has(e.id)), 10_000, "every open emergency on the reopened desk");
    for (const e of open) expect(survivors.map(nameOf)).toContain(again.state.emergencies.get(e.id).node);
    await waitFor(again, (st) => [...st.nodes.values()].filter((n: any) => n.alive).length === 2, 5000, "two live nodes");
    await again.leave();
    await responder.duty.leave().catch(() => {});
  }, 90_000);
});
