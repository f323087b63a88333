import type { Principal } from "../auth/tokens.ts";
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
export function notificationRoutes(router: Router, principalOf: (req: HttpRequest) => Promise<Principal>): void {
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
}
