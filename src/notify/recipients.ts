import type { ClaimedMessage, NotifyChannel } from "../../persistence/stores.ts";
import type { NotifyConfig } from "../config.ts";
import type { Address, PushAddress } from "./channels.ts";
import { normalisePhone } from "./phone.ts";
import { LANGUAGES, type Language } from "./templates.ts";

/** What the resolver reads: accounts, hospitals, and (through the medical service) emergency contacts. */
export interface NotifyDirectory {
  user(userId: string): Promise<{ phone?: string; language?: string; channels?: string[]; push: PushAddress[] } | undefined>;
  hospital(id: string): Promise<{ dutyPhone?: string; webhookUrl?: string } | undefined>;
  emergencyContact(patientId: string, index: number, emergencyId?: string): Promise<{ phone: string } | undefined>;
  preferences(userId: string): Promise<{ language: string } | undefined>;
}

/** A message's address and language, or why it cannot be sent on its channel (it is skipped). */
export type Resolved = { address: Address; language: Language } | { skip: string };

const asLanguage = (l: string | undefined, fallback: Language): Language => (LANGUAGES as readonly string[]).includes(l ?? "") ? l as Language : fallback;

/**
 * Turns a message's recipient into an address on its channel, when it is delivered (so that a
 * number or a preference changed meanwhile is honoured, and no address sits in the outbox):
 * `tel:<E.164>`, `url:<https URL>`, `user:<id>` (their phone, push subscriptions, language and
 * chosen channels), `hospital:<id>` (duty phone, webhook), `contact:<patientId>:<n>` (the n-th
 * emergency contact of a patient who consented to sharing; in the patient's language), `ops`.
 */
export async function resolveRecipient(m: ClaimedMessage, dir: NotifyDirectory, config: NotifyConfig): Promise<Resolved> {
  const fixed = m.payload.language;
  const fallback = asLanguage(fixed, config.defaultLanguage);
  const onChannel = (channel: NotifyChannel, value: { phone?: string; url?: string; push?: PushAddress[] }, language = fallback): Resolved => {
    if (channel === "sms") {
      const phone = value.phone && normalisePhone(value.phone, config.defaultRegion);
      return phone ? { address: { channel, phone }, language } : { skip: "no valid phone number" };
    }
    if (channel === "webhook") return value.url ? { address: { channel, url: value.url }, language } : { skip: "no webhook URL" };
    return value.push && value.push.length > 0 ? { address: { channel, subscriptions: value.push }, language } : { skip: "no push subscription" };
  };
  const [kind, ...rest] = m.recipient.split(":");
  const target = rest.join(":");
  switch (kind) {
    case "tel": return onChannel(m.channel, { phone: target });
    case "url": return onChannel(m.channel, { url: target });
    case "ops": return onChannel(m.channel, { phone: config.ops.phone, url: config.ops.webhookUrl });
    case "hospital": {
      const h = await dir.hospital(target);
      return h ? onChannel(m.channel, { phone: h.dutyPhone, url: h.webhookUrl }) : { skip: "no such hospital" };
    }
    case "user": {
      const u = await dir.user(target);
      if (!u) return { skip: "no such user" };
      if (u.channels && !u.channels.includes(m.channel)) return { skip: `the user did not choose ${m.channel}` };
      return onChannel(m.channel, { phone: u.phone, push: u.push }, asLanguage(fixed ?? u.language, config.defaultLanguage));
    }
    case "contact": {
      const [patientId, n] = target.split(":");
      const [c, prefs] = await Promise.all([dir.emergencyContact(patientId, Number(n), m.emergencyId), dir.preferences(patientId).catch(() => undefined)]);
      return c ? onChannel(m.channel, { phone: c.phone }, asLanguage(fixed ?? prefs?.language, config.defaultLanguage)) : { skip: "no such emergency contact, or no consent to share" };
    }
    default: return { skip: "unknown recipient" };
  }
}
