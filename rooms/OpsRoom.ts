import type { AuthContext } from "@colyseus/core";
import type { ArraySchema, MapSchema } from "@colyseus/schema";
import type { Principal } from "../src/auth/tokens.ts";
import { OpsReports } from "../src/cluster/ops-reports.ts";
import { divertView } from "../src/domain/divert.ts";
import { OPS_ROOM_ID } from "../src/domain/identity.ts";
import { unitStatus, waits, type EmergencySummary, type NodeReport, type UnitSummary } from "../src/domain/ops.ts";
import { HavenCloseCode } from "../src/protocol/close-codes.ts";
import { services } from "../src/services.ts";
import { HavenRoom, refuse, type HavenClient, type MessageHandler } from "./HavenRoom.ts";
import { opsActions } from "./ops/actions.ts";
import { OpsEmergency, OpsHospital, OpsNode, OpsState, OpsUnit } from "./schema/OpsState.ts";
import type { Timer } from "./emergency/context.ts";

const OPS = ["ops_admin"] as const;

/**
 * The operations desk: the whole cluster live for ops_admin accounts — every node and its load,
 * every open emergency with its status, priority and age (waits past a threshold highlighted),
 * the unit board of on-duty responders, and the hospitals with capacity and divert — and the
 * desk's actions (open, reassign a hospital, assign a responder, cancel, notice), each audited.
 *
 * One room per cluster (`ops`), opened on the first join on any live node and reopened on a live
 * node when its node dies (the desk rejoins by the same id). It adds nothing to the emergencies'
 * own work: every `HAVEN_OPS_REFRESH_MS` it reads what each node reported (src/cluster/ops-reports.ts)
 * and the hospital directory this node shares with the others.
 */
export class OpsRoom extends HavenRoom<OpsState> {
  private reports!: OpsReports;
  private timer?: Timer;
  private refreshing = false;

  protected readonly handlers: Record<string, MessageHandler<OpsRoom>> = {
    open: { schema: "opsOpen", roles: OPS, run(c, p) { return opsActions.open(c.auth, p); } },
    reassign_hospital: { schema: "opsReassignHospital", roles: OPS, run(c, p) { return opsActions.reassignHospital(c.auth, p); } },
    assign_responder: { schema: "opsAssignResponder", roles: OPS, run(c, p) { return opsActions.assignResponder(c.auth, p); } },
    cancel: { schema: "opsCancel", roles: OPS, run(c, p) { return opsActions.cancel(c.auth, p); } },
    notice: { schema: "opsNotice", roles: OPS, run(c, p) { return opsActions.notice(c.auth, p); } },
  };

  /** Fires once, when the first ops client's join (on any node) finds no live ops room. */
  async onCreate(): Promise<void> {
    this.roomId = OPS_ROOM_ID;
    await this.claimId();
    const { config } = services();
    const state = new OpsState();
    state.acceptWaitMs = config.ops.acceptWaitMs;
    state.ackWaitMs = config.ops.ackWaitMs;
    this.setState(state);
    this.reports = new OpsReports(this.presence);
    this.refreshHospitals(Date.now());
    void this.refresh();
    this.timer = this.clock.setInterval(() => void this.refresh(), config.ops.refreshMs);
  }

  /** Fires for every socket join: only operations accounts may watch the desk. */
  async onAuth(_client: HavenClient, _options: unknown, context: AuthContext): Promise<Principal> {
    const principal = await this.authenticate(context);
    if (principal.role !== "ops_admin") throw refuse(HavenCloseCode.FORBIDDEN, "NOT_ENTITLED", "only operations accounts may join the ops room");
    return principal;
  }

  /** Fires when a desk's socket drops: its seat is held for the reconnect window. */
  async onDrop(client: HavenClient): Promise<void> {
    try {
      await this.allowReconnection(client, services().config.reconnectWindowSeconds);
    } catch {
      // window passed
    }
  }

  /** Fires when the last desk left (or the node stops): nothing more is refreshed here. */
  onDispose(): void {
    this.timer?.clear();
    this.releaseId();
  }

  /** Reads every live node's report and the hospital directory into the state. */
  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const { membership } = services();
      await this.reports.watch();
      const members = await membership.members();
      const alive = await membership.alive(members);
      const reports = await this.reports.read(members);
      const now = Date.now();
      this.applyNodes(members, alive, reports);
      this.applyEmergencies([...reports.values()].filter((r) => alive.has(r.processId)), now);
      this.refreshHospitals(now);
      this.state.refreshedAt = now;
    } catch (error) {
      // Redis away: the desk keeps its last picture until it can read again
      services().log.debug({ err: error }, "ops picture not refreshed");
    } finally {
      this.refreshing = false;
    }
  }

  private applyNodes(members: string[], alive: Set<string>, reports: Map<string, NodeReport>): void {
    const nodes = this.state.nodes;
    for (const id of members) {
      let n = nodes.get(id);
      if (!n) {
        n = new OpsNode();
        n.id = id;
        nodes.set(id, n);
      }
      const r = reports.get(id);
      setChanged(n, {
        alive: alive.has(id), name: r?.name ?? n.name ?? "", reportedAt: r?.reportedAt ?? n.reportedAt,
        ...(r ? r.load : {}),
      });
    }
    drop(nodes, new Set(members));
  }

  private applyEmergencies(reports: NodeReport[], now: number): void {
    // a report of a node that just handed an emergency over can still list it: the newest wins
    const emergencies = new Map<string, { e: EmergencySummary; node: string; at: number }>();
    const units = new Map<string, { u: UnitSummary; node: string; at: number }>();
    for (const r of reports) {
      for (const e of r.emergencies) if ((emergencies.get(e.id)?.at ?? -1) < r.reportedAt) emergencies.set(e.id, { e, node: r.name, at: r.reportedAt });
      for (const u of r.units) if ((units.get(u.id)?.at ?? -1) < r.reportedAt) units.set(u.id, { u, node: r.name, at: r.reportedAt });
    }
    const thresholds = { acceptWaitMs: this.state.acceptWaitMs, ackWaitMs: this.state.ackWaitMs };
    for (const { e, node } of emergencies.values()) {
      let o = this.state.emergencies.get(e.id);
      if (!o) {
        o = new OpsEmergency();
        o.id = e.id;
        this.state.emergencies.set(e.id, o);
      }
      const { firstAiders, ambulance, id: _id, ...fields } = e;
      setChanged(o, { ...fields, node, ageSeconds: Math.max(0, Math.floor((now - e.createdAt) / 1000)), ...waits(e, now, thresholds) });
      setArray(o.firstAiders, firstAiders);
      setArray(o.ambulance, ambulance);
    }
    drop(this.state.emergencies, new Set(emergencies.keys()));
    for (const { u, node } of units.values()) {
      let o = this.state.units.get(u.id);
      if (!o) {
        o = new OpsUnit();
        o.id = u.id;
        this.state.units.set(u.id, o);
      }
      const { id: _id, ...fields } = u;
      setChanged(o, { ...fields, node, status: unitStatus(u) });
    }
    drop(this.state.units, new Set(units.keys()));
  }

  private refreshHospitals(now: number): void {
    const incoming = new Map<string, number>();
    for (const e of this.state.emergencies.values()) {
      if (e.hospitalId && e.hospitalStatus !== "none") incoming.set(e.hospitalId, (incoming.get(e.hospitalId) ?? 0) + 1);
    }
    const all = services().hospitals.all();
    for (const h of all) {
      let o = this.state.hospitals.get(h.id);
      if (!o) {
        o = new OpsHospital();
        o.id = h.id;
        this.state.hospitals.set(h.id, o);
      }
      const d = divertView(h.divert, now);
      setChanged(o, {
        name: h.name, lat: h.lat, lng: h.lng, emergencyBeds: h.emergencyBeds, icuBeds: h.icuBeds, accepting: h.accepting,
        divertActive: d.active, divertReason: d.reason, divertUntil: d.until, incoming: incoming.get(h.id) ?? 0,
      });
      setArray(o.divertSpecialties, d.specialties);
    }
    drop(this.state.hospitals, new Set(all.map((h) => h.id)));
  }
}

/** Assigns only the fields whose value changed, so an unchanged picture sends no patch. */
function setChanged(target: object, fields: Record<string, unknown>): void {
  const t = target as Record<string, unknown>;
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && t[k] !== v) t[k] = v;
}

function setArray(target: ArraySchema<string>, values: readonly string[]): void {
  if (target.length === values.length && values.every((v, i) => target[i] === v)) return;
  target.clear();
  target.push(...values);
}

function drop(map: MapSchema<any>, keep: Set<string>): void {
  for (const key of [...map.keys()]) if (!keep.has(key)) map.delete(key);
}
