import { type AuthContext, matchMaker } from "@colyseus/core";
import type { Principal } from "../src/auth/tokens.ts";
import { HavenError } from "../src/protocol/errors.ts";
import { HavenCloseCode } from "../src/protocol/close-codes.ts";
import { services } from "../src/services.ts";
import { offerSmsKey, offerToAwayResponder } from "../src/notify/who.ts";
import { dutyRoomId, type ResponderKind } from "../src/domain/duty.ts";
import { HavenRoom, refuse, type HavenClient, type MessageHandler } from "./HavenRoom.ts";
import { DutyState, Offer } from "./schema/DutyState.ts";
import { fail, type CallResult } from "../src/protocol/results.ts";
import { inRegion, type NoticeRegion, type UnitSummary } from "../src/domain/ops.ts";

export interface DutyCreateOptions {
  responderId: string;
  kind: ResponderKind;
  name: string;
}

/** Writes to the on-duty index are best effort: Redis away must not fail the responder's socket. */
const quietly = (p: Promise<unknown>) => void p.catch(() => undefined);

/** Past offers a duty room remembers, to answer retries. */
const PAST_OFFERS = 64;

/** The duty rooms this process holds (what it reports to the operations desk, where it delivers notices). */
const LOCAL = new Set<DutyRoom>();
export function localDutyRooms(): Iterable<DutyRoom> {
  return LOCAL;
}

/**
 * The persistent socket of one on-duty first-aider or ambulance crew: it reports the responder's
 * position and availability to the dispatch index and receives offers, which live in its state
 * so that a reconnecting app sees every open offer again.
 */
export class DutyRoom extends HavenRoom<DutyState> {
  private responderId = "";
  private kind: ResponderKind = "first_aider";
  private name = "";

  protected readonly handlers: Record<string, MessageHandler<DutyRoom>> = {
    position: { schema: "position", roles: ["first_aider", "ambulance_crew"], run(_c, p) { return this.position(p); } },
    availability: { schema: "availability", roles: ["first_aider", "ambulance_crew"], run(_c, p) { return this.setAvailable(p.available); } },
    accept_offer: { schema: "acceptOffer", roles: ["first_aider", "ambulance_crew"], run(_c, p) { return this.accept(p.offerId); } },
    decline_offer: { schema: "declineOffer", roles: ["first_aider", "ambulance_crew"], run(_c, p) { return this.decline(p.offerId, p.reason); } },
  };

  /** Fires once, when `POST /api/duty` opens the responder's duty room (on one node of the cluster). */
  async onCreate(options: DutyCreateOptions): Promise<void> {
    this.roomId = dutyRoomId(options.responderId);
    await this.claimId();
    this.responderId = options.responderId;
    this.kind = options.kind;
    this.name = options.name;
    const state = new DutyState();
    state.responderId = options.responderId;
    state.kind = options.kind;
    // back on duty after a restart while still assigned to an emergency that came back
    state.assignedTo = await services().duty.assignmentOf(options.responderId).catch(() => undefined) ?? "";
    this.setState(state);
    LOCAL.add(this);
  }

  /** Fires for every socket join: only the responder this room belongs to may join it. */
  async onAuth(_client: HavenClient, _options: unknown, context: AuthContext): Promise<Principal> {
    const principal = await this.authenticate(context);
    if (principal.sub !== this.responderId || principal.role !== this.kind) {
      throw refuse(HavenCloseCode.FORBIDDEN, "NOT_ENTITLED", "this duty room belongs to another responder");
    }
    return principal;
  }

  /** Fires when the responder's socket is up: from now on dispatch can find them. */
  onJoin(): void {
    this.index(true);
  }

  /** Fires when the socket drops: no offers while away, seat held for the reconnect window. */
  async onDrop(client: HavenClient): Promise<void> {
    quietly(services().duty.update(this.responderId, { available: false }));
    this.tellAway([...this.state.offers.values()]);
    try {
      await this.allowReconnection(client, services().config.reconnectWindowSeconds);
    } catch {
      // window passed: onLeave follows
    }
  }

  /** Fires when the responder is back: available again if they were. */
  onReconnect(): void {
    quietly(services().duty.update(this.responderId, { available: this.state.available }));
    // back in the app: the offers are on screen, no SMS needed
    const told = [...this.toldAway];
    this.toldAway.clear();
    if (told.length > 0) services().notify.queue([], told.map(offerSmsKey));
  }

  /** Fires when the responder went off duty: they leave the dispatch index. */
  onLeave(): void {
    if (this.holdsRoomId) quietly(services().duty.remove(this.responderId));
  }

  onDispose(): void {
    LOCAL.delete(this);
    if (!this.holdsRoomId) return; // a duplicate that lost the claim: the live room keeps the index entry
    quietly(services().duty.remove(this.responderId));
    this.releaseId();
  }

  private index(available: boolean): void {
    const s = this.state;
    quietly(services().duty.upsert({
      userId: this.responderId, kind: this.kind, name: this.name, available: available && s.available,
      lat: s.lat, lng: s.lng, updatedAt: s.updatedAt,
    }));
  }

  private position(p: { lat: number; lng: number }): { ok: true } {
    this.state.lat = p.lat;
    this.state.lng = p.lng;
    this.state.updatedAt = Date.now();
    quietly(services().duty.update(this.responderId, { lat: p.lat, lng: p.lng, updatedAt: this.state.updatedAt }));
    return { ok: true };
  }

  private setAvailable(available: boolean): { ok: true; available: boolean } {
    this.state.available = available;
    quietly(services().duty.update(this.responderId, { available }));
    return { ok: true, available };
  }

  /** Offers no longer open, with what became of them: a retry is answered by its outcome. */
  private readonly pastOffers = new Map<string, { emergencyId: string; outcome: "accepted" | "declined" | "withdrawn" }>();

  /** Open offers the responder was told of by push (and an SMS to follow). */
  private readonly toldAway = new Set<string>();

  /** Offers made while the app is away reach the responder by push, then by SMS (src/notify/who.ts). */
  private tellAway(offers: { id: string; emergencyId: string; distanceM: number }[]): void {
    if (offers.length === 0) return;
    const { notify, config } = services();
    // a responder who chose SMS only is texted at once; otherwise pushed, then texted if still away
    void notify.directory.preferences(this.responderId).catch(() => undefined).then((prefs) => {
      const push = !prefs || prefs.channels.includes("push");
      const now = Date.now();
      const open = offers.filter((o) => this.state.offers.has(o.id)); // not settled meanwhile
      const messages = open.flatMap((o) => offerToAwayResponder({
        offerId: o.id, responderId: this.responderId, emergencyId: o.emergencyId, distanceM: o.distanceM, now, push,
        smsDelayMs: push ? config.notify.responderSmsDelayMs : 0,
      }));
      for (const o of open) this.toldAway.add(o.id);
      if (messages.length > 0) notify.queue(messages);
    });
  }

  private settle(offerId: string, emergencyId: string, outcome: "accepted" | "declined" | "withdrawn"): void {
    // settled: its SMS, if one is waiting, is moot
    if (this.toldAway.delete(offerId)) services().notify.queue([], [offerSmsKey(offerId)]);
    this.pastOffers.delete(offerId);
    this.pastOffers.set(offerId, { emergencyId, outcome });
    if (this.pastOffers.size > PAST_OFFERS) this.pastOffers.delete(this.pastOffers.keys().next().value!);
  }

  /** An offer that is not open: the outcome of a retry, OFFER_EXPIRED for one that lapsed, OFFER_NOT_FOUND for one never made. */
  private notOpen(offerId: string, retried: "accepted" | "declined"): { ok: true; emergencyId: string; duplicate: true } {
    const past = this.pastOffers.get(offerId);
    if (!past) throw new HavenError("OFFER_NOT_FOUND", "no such offer was made to you");
    if (past.outcome === retried && (retried === "declined" || this.state.assignedTo === past.emergencyId)) {
      return { ok: true, emergencyId: past.emergencyId, duplicate: true };
    }
    throw new HavenError("OFFER_EXPIRED", `the offer is no longer open (${past.outcome})`);
  }

  private async accept(offerId: string): Promise<{ ok: true; emergencyId: string; duplicate?: true }> {
    const offer = this.state.offers.get(offerId);
    if (!offer) return this.notOpen(offerId, "accepted");
    if (this.state.assignedTo) throw new HavenError("ALREADY_ASSIGNED", `you are assigned to ${this.state.assignedTo}`);
    let result: CallResult<{ emergencyId: string }>;
    try {
      result = await matchMaker.remoteRoomCall(offer.emergencyId, "acceptOffer", [offerId, this.responderId, this.name]) as CallResult<{ emergencyId: string }>;
    } catch {
      result = { ok: false, error: { code: "OFFER_EXPIRED", message: "the emergency is no longer reachable" } };
    }
    this.state.offers.delete(offerId);
    this.settle(offerId, offer.emergencyId, result.ok ? "accepted" : "withdrawn");
    if (!result.ok) throw new HavenError(result.error.code as never, result.error.message);
    this.state.assignedTo = result.emergencyId;
    for (const other of [...this.state.offers.keys()]) void this.decline(other, "assigned_elsewhere").catch(() => {});
    return { ok: true, emergencyId: result.emergencyId };
  }

  private async decline(offerId: string, reason?: string): Promise<{ ok: true; duplicate?: true }> {
    const offer = this.state.offers.get(offerId);
    if (!offer) {
      this.notOpen(offerId, "declined");
      return { ok: true, duplicate: true };
    }
    this.state.offers.delete(offerId);
    this.settle(offerId, offer.emergencyId, "declined");
    await matchMaker.remoteRoomCall(offer.emergencyId, "declineOffer", [offerId, this.responderId, reason ?? null]).catch(() => undefined);
    return { ok: true };
  }

  /** Emergency room → here: an offer for this responder. */
  receiveOffer(o: { id: string; emergencyId: string; priority: string; lat: number; lng: number; distanceM: number; expiresAt: number }): { ok: true } {
    const offer = new Offer();
    Object.assign(offer, o);
    this.state.offers.set(o.id, offer);
    if (this.clients.length === 0) this.tellAway([o]);
    return { ok: true };
  }

  /** Emergency room → here: the offer is gone (someone else accepted, it timed out, or the emergency ended). */
  withdrawOffer(offerId: string, reason: string): { ok: true } {
    const offer = this.state.offers.get(offerId);
    if (offer) {
      this.state.offers.delete(offerId);
      this.settle(offerId, offer.emergencyId, "withdrawn");
      this.broadcast("offer_withdrawn", { offerId, reason });
    }
    return { ok: true };
  }

  /**
   * Ops room → here: operations assigns this responder to `emergencyId` by hand. The emergency
   * takes them on as a party (withdrawing its open offers of this role); then, as after an accept,
   * the responder is assigned here and their other offers are declined.
   */
  async opsAssign(emergencyId: string, by: Principal, key: string | null): Promise<CallResult<{ emergencyId: string }>> {
    if (this.state.assignedTo && this.state.assignedTo !== emergencyId) return fail("ALREADY_ASSIGNED", `the responder is assigned to ${this.state.assignedTo}`);
    const s = this.state;
    let result: CallResult<{ emergencyId: string }>;
    try {
      result = await matchMaker.remoteRoomCall(emergencyId, "opsAssignResponder", [by, this.kind, { id: this.responderId, name: this.name, lat: s.lat, lng: s.lng, updatedAt: s.updatedAt }, key]) as CallResult<{ emergencyId: string }>;
    } catch {
      return fail("UNAVAILABLE", "the emergency could not be reached; retry");
    }
    if (!result.ok) return result;
    this.state.assignedTo = emergencyId;
    for (const other of [...this.state.offers.keys()]) void this.decline(other, "assigned_elsewhere").catch(() => {});
    return { ok: true, emergencyId };
  }

  /** What the operations desk's unit board shows of this responder. */
  unitSummary(): UnitSummary {
    const s = this.state;
    return {
      id: this.responderId, kind: this.kind, name: this.name, available: s.available, online: this.clients.length > 0,
      offers: s.offers.size, assignedTo: s.assignedTo, lat: s.lat, lng: s.lng, updatedAt: s.updatedAt,
    };
  }

  /** A desk notice: the responder gets it when they are in its region. */
  opsNotice(notice: { region: NoticeRegion | null }): void {
    if (this.state.updatedAt > 0 ? inRegion(notice.region ?? undefined, this.state) : notice.region === null) this.broadcast("notice", notice);
  }

  /** Emergency room → here: the emergency this responder served is over. */
  released(emergencyId: string): { ok: true } {
    if (this.state.assignedTo === emergencyId) {
      this.state.assignedTo = "";
    }
    return { ok: true };
  }
}
