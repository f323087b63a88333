import type { Principal } from "../auth/tokens.ts";
import type { RequestLimits } from "../limits/requests.ts";
import { Inbound, type InboundSms, type InboundUssd } from "../notify/inbound.ts";
import { check, compileSchema, isCleanText } from "../protocol/validate.ts";
import { normalisePhone } from "../notify/phone.ts";
import { HavenError } from "../protocol/errors.ts";
import { validate } from "../protocol/validate.ts";
import { services } from "../services.ts";
import { jsonBody, type HttpRequest, type Router } from "./router.ts";

/** A URL Haven will POST to: https, except outside production (local receivers in tests and development). */
function deliverableUrl(url: string, field: string): string {
  const production = services().config.env === "production";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HavenError("INVALID_PAYLOAD", `${field} is not a URL`, [{ field, rule: "url", message: `${field} is not a URL` }]);
  }
  if (parsed.protocol !== "https:" && (production || parsed.protocol !== "http:")) {
    throw new HavenError("INVALID_PAYLOAD", `${field} must be an https URL`, [{ field, rule: "url", message: `${field} must be an https URL` }]);
  }
  return parsed.toString();
}

/** A phone number as E.164 in the default region, or INVALID_PAYLOAD naming the field. */
export function phoneField(raw: string, field: string): string {
  const phone = normalisePhone(raw, services().config.notify.defaultRegion);
  if (!phone) throw new HavenError("INVALID_PAYLOAD", `${field} is not a valid phone number`, [{ field, rule: "phone", message: `${field} is not a valid phone number` }]);
  return phone;
}

/**
 * Notification settings over HTTP: each account's language and channels, its devices' Web Push
 * subscriptions, and a hospital's duty phone and webhook.
 */
export function notificationRoutes(router: Router, principalOf: (req: HttpRequest) => Promise<Principal>, limits: RequestLimits): void {
  const s = services();
  const account = async (req: HttpRequest): Promise<Principal> => {
    const p = await principalOf(req);
    if (p.bypass) throw new HavenError("FORBIDDEN", "notification settings belong to an account");
    return p;
  };

  router.on("GET", "/api/notifications/preferences", async (req) => {
    const p = await account(req);
    const prefs = await s.notify.directory.preferences(p.sub);
    return { status: 200, body: { language: prefs?.language ?? s.config.notify.defaultLanguage, channels: prefs?.channels ?? ["push", "sms"], vapidPublicKey: s.config.notify.push?.publicKey ?? null } };
  });
  router.on("PUT", "/api/notifications/preferences", async (req) => {
    const p = await account(req);
    const body = validate<{ language: "en" | "sw"; channels: ("push" | "sms")[] }>("notificationPreferences", jsonBody(req));
    await s.notify.directory.setPreferences(p.sub, body);
    return { status: 200, body: { language: body.language, channels: body.channels } };
  });
  router.on("POST", "/api/notifications/push-subscriptions", async (req) => {
    const p = await account(req);
    const body = validate<{ endpoint: string; keys: { p256dh: string; auth: string } }>("pushSubscription", jsonBody(req));
    await s.notify.directory.addPushSubscription(p.sub, { endpoint: deliverableUrl(body.endpoint, "endpoint"), keys: body.keys });
    return { status: 201, body: { ok: true } };
  });
  router.on("PUT", "/api/hospitals/:id/contact", async (req, { id }) => {
    const p = await principalOf(req);
    const body = validate<{ dutyPhone?: string; webhookUrl?: string }>("hospitalContact", jsonBody(req));
    if (!s.hospitals.get(id)) throw new HavenError("HOSPITAL_NOT_FOUND", "no such hospital");
    const adminHere = p.role === "hospital_admin" && p.hospitalId === id;
    if (!adminHere && p.role !== "ops_admin") throw new HavenError("FORBIDDEN", "only this hospital's admin or ops may set its duty phone and webhook");
    const contact = {
      dutyPhone: body.dutyPhone === undefined ? undefined : phoneField(body.dutyPhone, "dutyPhone"),
      webhookUrl: body.webhookUrl === undefined ? undefined : deliverableUrl(body.webhookUrl, "webhookUrl"),
    };
    await s.notify.directory.setHospitalContact(id, contact);
    await s.audit.append({
      at: new Date(), actor: p.sub, actorRole: p.role, action: "hospital.contact_set", subject: id,
      fields: Object.keys(body), breakGlass: false, node: s.config.nodeName, outcome: "ok",
    });
    return { status: 200, body: { id, dutyPhone: contact.dutyPhone ?? null, webhookUrl: contact.webhookUrl ?? null } };
  });

  // ---------------------------------------------------------------- operations: the outbox
  router.on("GET", "/api/ops/outbox", async (req) => {
    const p = await principalOf(req);
    if (p.role !== "ops_admin") throw new HavenError("FORBIDDEN", "the outbox is for operations");
    const status = req.query.get("status") ?? "dead";
    const limit = Number(req.query.get("limit") ?? 50);
    const bad = [
      !OUTBOX_STATUSES.includes(status as never) && `status must be one of ${OUTBOX_STATUSES.join(", ")}`,
      !(Number.isInteger(limit) && limit >= 1 && limit <= 200) && "limit must be an integer from 1 to 200",
    ].filter(Boolean);
    if (bad.length) throw new HavenError("INVALID_PAYLOAD", bad.join("; "));
    const rows = await s.notify.store.list(status as (typeof OUTBOX_STATUSES)[number], limit);
    // a caller's number (an alert by SMS or USSD) is shown without its last digits
    return { status: 200, body: { messages: rows.map((r) => ({ ...r, recipient: r.recipient.startsWith("tel:") ? `${r.recipient.slice(0, -4)}****` : r.recipient })) } };
  });
  router.on("POST", "/api/ops/outbox/:id/retry", async (req, { id }) => {
    const p = await principalOf(req);
    if (p.role !== "ops_admin") throw new HavenError("FORBIDDEN", "the outbox is for operations");
    validate("outboxRetry", jsonBody(req));
    if (!(await s.notify.store.requeue(id))) throw new HavenError("NOT_FOUND", "no dead or skipped message with this id");
    await s.audit.append({
      at: new Date(), actor: p.sub, actorRole: p.role, action: "outbox.retry", subject: id, breakGlass: false, node: s.config.nodeName, outcome: "ok",
    });
    s.notify.committed();
    return { status: 200, body: { id, status: "pending" } };
  });

  // ---------------------------------------------------------------- the SMS gateway's callbacks
  const inbound = new Inbound(limits);
  const gateway = (req: HttpRequest): Record<string, string> => {
    inbound.verifyGateway(req.ip, req.query.get("secret") ?? req.headers["x-haven-gateway-secret"]);
    return formBody(req);
  };
  router.on("POST", "/api/gateway/sms", async (req) => {
    const form = gateway(req);
    check(SMS_CALLBACK, form);
    const r = await inbound.sms(form as unknown as InboundSms);
    return { status: 200, body: { ok: true, emergencyId: r.emergencyId ?? null, joined: r.joined ?? false } };
  });
  router.on("POST", "/api/gateway/ussd", async (req) => {
    const form = gateway(req);
    check(USSD_CALLBACK, form);
    try {
      return { status: 200, text: await inbound.ussd(form as unknown as InboundUssd) };
    } catch (error) {
      // the phone shows the last screen; the gateway is not asked to retry a session
      if ((error as HavenError).code === "UNAVAILABLE") return { status: 200, text: "END Haven is unavailable. Call 999 or 112." };
      throw error;
    }
  });
}

/** A form-encoded body (the gateway's callbacks), each field once. */
function formBody(req: HttpRequest): Record<string, string> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) throw new HavenError("UNSUPPORTED_MEDIA_TYPE", "send the callback as application/x-www-form-urlencoded");
  const form: Record<string, string> = Object.create(null); // a field named __proto__ is a field like any other
  for (const [k, v] of new URLSearchParams(req.body?.toString("utf8") ?? "")) {
    if (k in form) throw new HavenError("INVALID_PAYLOAD", `${k} is given twice`, [{ field: k, rule: "once", message: `${k} is given twice` }]);
    if (!isCleanText(v)) throw new HavenError("INVALID_PAYLOAD", `${k.slice(0, 40)} is not clean text`, [{ field: k.slice(0, 40), rule: "text", message: "not clean text" }]);
    form[k] = v;
  }
  return form;
}

const OUTBOX_STATUSES = ["pending", "delivered", "dead", "cancelled", "skipped"] as const;

const field = (max: number, optional = false) => ({ type: "string", max, optional, trim: false }) as const;
const SMS_CALLBACK = compileSchema({
  $$strict: true,
  from: { type: "string", min: 3, max: 20 }, to: field(20), text: field(480), date: field(40, true),
  id: { type: "string", min: 1, max: 100, pattern: /^[A-Za-z0-9_.:-]+$/ }, linkId: field(100, true),
  networkCode: field(10, true), cost: field(40, true),
});
const USSD_CALLBACK = compileSchema({
  $$strict: true,
  sessionId: { type: "string", min: 1, max: 100, pattern: /^[A-Za-z0-9_.:-]+$/ }, serviceCode: field(40),
  phoneNumber: { type: "string", min: 3, max: 20 }, networkCode: field(10, true), text: field(400),
});
