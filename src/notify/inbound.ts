import { createHash, timingSafeEqual } from "node:crypto";
import { matchMaker } from "@colyseus/core";
import type { Principal } from "../auth/tokens.ts";
import { canonicalAddress } from "../limits/address.ts";
import { ExpiringMap } from "../limits/bounded.ts";
import type { RequestLimits } from "../limits/requests.ts";
import { HavenError } from "../protocol/errors.ts";
import type { CallResult } from "../protocol/results.ts";
import { services } from "../services.ts";
import { normalisePhone } from "./phone.ts";
import { placeOf, type Place } from "./places.ts";
import { LANGUAGES, render, type Language, type TemplateEvent, type TemplateParams } from "./templates.ts";
import { ussdRaised, ussdStep } from "./ussd.ts";
import { ref } from "./who.ts";

/** Words that raise an alert (the first word of an inbound SMS), and that ask for its status. */
const ALERT_WORDS = new Set(["help", "sos", "msaada", "dharura", "emergency"]);
const STATUS_WORDS = new Set(["status", "hali"]);

export interface InboundSms { from: string; to: string; text: string; date?: string; id: string; linkId?: string }
export interface InboundUssd { sessionId: string; serviceCode: string; phoneNumber: string; networkCode?: string; text: string }

/**
 * Alerts by SMS and USSD, for phones without data: a registered number (or, through the
 * emergency-bypass path and its limits, an unknown one) raises an emergency — or joins the one it
 * has open, whichever way it was raised — and gets its status back by SMS. The gateway is
 * verified (shared secret, address allowlist) and each number's callbacks are rate-limited.
 */
export class Inbound {
  private readonly limits: RequestLimits;
  /** Callbacks per phone number in the current minute. */
  private readonly perPhone = new ExpiringMap<{ n: number }>(60_000, 50_000);

  constructor(limits: RequestLimits) {
    this.limits = limits;
  }

  /** Refuses a callback that is not from the configured gateway. */
  verifyGateway(ip: string, given: string | undefined): void {
    const { secret, allowlist } = services().config.notify.inbound;
    if (secret === undefined && allowlist.length === 0) throw new HavenError("FORBIDDEN", "inbound SMS and USSD are not configured on this server");
    if (allowlist.length > 0 && !allowlist.map(canonicalAddress).includes(canonicalAddress(ip))) throw new HavenError("FORBIDDEN", "callbacks are accepted from the SMS gateway only");
    if (secret !== undefined) {
      const a = Buffer.from(given ?? "");
      const b = Buffer.from(secret);
      if (a.length !== b.length || !timingSafeEqual(a, b)) throw new HavenError("UNAUTHENTICATED", "the gateway secret is missing or wrong");
    }
  }

  /** A number's callbacks are counted: past the allowance, RATE_LIMITED (the gateway retries later). */
  private count(phone: string): void {
    const limit = services().config.notify.inbound.perPhonePerMinute;
    const entry = this.perPhone.get(phone);
    if (!entry) this.perPhone.set(phone, { n: 1 });
    else if (++entry.n > limit) throw new HavenError("RATE_LIMITED", `more than ${limit} messages from this number in a minute; retry later`, undefined, { retryAfterSeconds: 60 });
  }

  private phone(raw: string, field: string): string {
    const phone = normalisePhone(raw, services().config.notify.defaultRegion);
    if (!phone) throw new HavenError("INVALID_PAYLOAD", `${field} is not a valid phone number`, [{ field, rule: "phone", message: `${field} is not a valid phone number` }]);
    return phone;
  }

  /** An inbound SMS: HELP … raises (or joins), STATUS answers, anything else gets the usage. Replies go out by SMS through the outbox. */
  async sms(m: InboundSms): Promise<{ emergencyId?: string; joined?: boolean }> {
    const phone = this.phone(m.from, "from");
    this.count(phone);
    const caller = await this.caller(phone);
    const words = m.text.trim().split(/\s+/);
    const first = (words[0] ?? "").toLowerCase();
    const reply = (event: TemplateEvent, params: TemplateParams = {}) =>
      services().notify.write({ messages: [{ key: `sms-reply:${m.id}`, channel: "sms", recipient: `tel:${phone}`, event, payload: { params, language: caller.language } }], cancel: [] });
    if (ALERT_WORDS.has(first)) {
      const said = words.slice(1).join(" ").slice(0, 300);
      try {
        const r = await this.raise(caller, phone, { what: said || "(nothing said)", where: said, priority: "high", via: "sms" });
        await reply(r.joined ? "status_update" : "alert_received", r.joined ? await this.statusParams(caller, r.emergencyId) : {});
        return r;
      } catch (error) {
        // the caller hears why (when the database can record the reply at all), and the gateway gets the refusal
        await reply("alert_refused", { reason: (error as HavenError).code === "RATE_LIMITED" || (error as HavenError).code === "BYPASS_USED" ? "limit" : "unavailable" }).catch(() => undefined);
        throw error;
      }
    }
    if (STATUS_WORDS.has(first)) {
      const active = await this.active(caller);
      await reply("status_update", active ? await this.statusParams(caller, active) : { status: "none" });
      return { emergencyId: active };
    }
    await reply("sms_usage");
    return {};
  }

  /** One USSD step: the reply text (`CON …` or `END …`). */
  async ussd(u: InboundUssd): Promise<string> {
    const phone = this.phone(u.phoneNumber, "phoneNumber");
    this.count(phone);
    const caller = await this.caller(phone);
    const towns = places().filter((p) => p.town).map((p) => p.name);
    const step = ussdStep(u.text, caller.language, towns);
    if (step.kind === "reply") return step.text;
    if (step.kind === "status") {
      const active = await this.active(caller);
      if (!active) return caller.language === "sw" ? "END Huna ombi lililo wazi." : "END You have no open alert.";
      return `END ${render("status_update", caller.language, await this.statusParams(caller, active))}`;
    }
    try {
      const r = await this.raise(caller, phone, { what: step.what, where: step.where, priority: step.priority, via: "ussd" });
      return ussdRaised(caller.language, ref(r.emergencyId), r.joined);
    } catch (error) {
      const code = (error as HavenError).code;
      if (code === "RATE_LIMITED" || code === "BYPASS_USED") return caller.language === "sw" ? "END Kikomo kimefikiwa. Piga 999 au 112." : "END Limit reached. Call 999 or 112.";
      throw error;
    }
  }

  /** Who texts or dials from `phone`: a registered patient, or an unknown number on the emergency-bypass path. */
  private async caller(phone: string): Promise<{ principal: Principal; name: string; language: Language; registered: boolean }> {
    const s = services();
    const user = await s.notify.directory.userByPhone(phone);
    if (user && user.role === "patient") {
      const prefs = await s.notify.directory.preferences(user.id).catch(() => undefined);
      const language = (LANGUAGES as readonly string[]).includes(prefs?.language ?? "") ? prefs!.language as Language : s.config.notify.defaultLanguage;
      return { principal: { sub: user.id, role: "patient", jti: "sms" }, name: user.name, language, registered: true };
    }
    // an unknown number is a bypass subject of its own for the day (one emergency a day, joined by any later alert)
    return { principal: bypassPrincipal(phone, Date.now()), name: `SMS caller ${phone.slice(0, -4)}****`, language: s.config.notify.defaultLanguage, registered: false };
  }

  /** The caller's open emergency (an unknown number's from today or yesterday). */
  private async active(caller: { principal: Principal; registered: boolean }): Promise<string | undefined> {
    const store = services().emergencyStore;
    const found = await store.activeFor(caller.principal.sub);
    if (found || caller.registered) return found;
    return store.activeFor(caller.principal.sub.replace(/-\d{8}$/, `-${day(Date.now() - 86_400_000)}`));
  }

  private async raise(caller: { principal: Principal; name: string; registered: boolean }, phone: string, a: { what: string; where: string; priority: "critical" | "high"; via: "sms" | "ussd" }): Promise<{ emergencyId: string; joined: boolean }> {
    const s = services();
    const open = await this.active(caller);
    if (open) {
      await s.emergencies.ensure(open);
      return { emergencyId: open, joined: true };
    }
    if (!caller.registered) {
      // the emergency-bypass limits, counted per number (the gateway's address is everyone's)
      const key = phoneKey(phone);
      await this.limits.take("bypass", { device: `sms-${key}`, address: `phone:${key}` });
    }
    const { place, known } = placeOf(a.where, places());
    const note = `${a.via.toUpperCase()}: ${a.what}; place: ${a.where || "(none given)"}${known ? "" : " (not recognised)"}`.slice(0, 500);
    const r = await s.emergencies.raise(caller.principal, caller.name, {
      lat: place.lat, lng: place.lng, accuracy: place.accuracyM, priority: a.priority, note, replyTo: `tel:${phone}`,
    });
    return { emergencyId: r.id, joined: !r.created };
  }

  /** Where the caller's emergency stands, as the status template's parameters. */
  private async statusParams(caller: { principal: Principal }, emergencyId: string): Promise<TemplateParams> {
    let r: CallResult<{ emergency: any }>;
    try {
      r = await matchMaker.remoteRoomCall(emergencyId, "statusFor", [caller.principal]) as CallResult<{ emergency: any }>;
    } catch {
      return { status: "alerted" };
    }
    if (!r.ok) return { status: "none" };
    return statusParams(r.emergency);
  }
}

/** The status template's parameters from an emergency's state (as `statusFor` returns it). */
export function statusParams(e: { status: string; firstAiders?: Record<string, { name?: string }>; ambulance?: Record<string, { name?: string }>; hospital?: { name?: string; etaSeconds?: number } }): TemplateParams {
  const responder = Object.values(e.firstAiders ?? {})[0]?.name ?? Object.values(e.ambulance ?? {})[0]?.name ?? "";
  const eta = e.hospital?.etaSeconds !== undefined && e.hospital.etaSeconds >= 0 ? Math.max(1, Math.round(e.hospital.etaSeconds / 60)) : "";
  return { status: e.status, responder, eta, hospital: e.hospital?.name ?? "" };
}

/** The towns (urban areas, offered by number in the USSD menu) and hospitals a caller may name. */
function places(): (Place & { town: boolean })[] {
  const s = services();
  return [
    ...(s.urbanAreas as unknown as { name?: string; lat: number; lng: number; radiusM: number }[]).filter((a) => a.name).map((a) => ({ name: a.name!, lat: a.lat, lng: a.lng, accuracyM: a.radiusM, town: true })),
    ...s.hospitals.all().map((h) => ({ name: h.name, lat: h.lat, lng: h.lng, accuracyM: 2000, town: false })),
  ];
}

const phoneKey = (phone: string): string => createHash("sha256").update(phone).digest("hex").slice(0, 20);
const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10).replaceAll("-", "");

/** The bypass subject of an unknown number on a given day. */
export function bypassPrincipal(phone: string, now: number): Principal {
  return { sub: `bypass:sms-${phoneKey(phone)}-${day(now)}`, role: "patient", bypass: true, jti: "sms" };
}
