import type { Address, Channel, Delivery } from "./channels.ts";
import { DeliveryError, httpOutcome } from "./channels.ts";

/**
 * SMS through a gateway with Africa's Talking's messaging API: a form-encoded POST of
 * `username`, `to`, `message` (and `from`, a sender id, when configured) to
 * `{baseUrl}/version1/messaging` with the `apiKey` header. The gateway answers 201 with a
 * recipient status per number: 100 (processed), 101 (sent) and 102 (queued) are accepted; an
 * invalid or blacklisted number (403, 406) is final; anything else is tried again.
 */
export class SmsChannel implements Channel {
  readonly name = "sms" as const;
  private readonly o: { baseUrl: string; username: string; apiKey: string; from?: string };

  constructor(o: SmsChannel["o"]) {
    this.o = o;
  }

  async send(to: Address, d: Delivery, signal: AbortSignal): Promise<void> {
    if (to.channel !== "sms") throw new DeliveryError("not a phone number", true);
    const form = new URLSearchParams({ username: this.o.username, to: to.phone, message: d.text });
    if (this.o.from) form.set("from", this.o.from);
    const r = await fetch(`${this.o.baseUrl}/version1/messaging`, {
      method: "POST",
      headers: { apiKey: this.o.apiKey, accept: "application/json", "content-type": "application/x-www-form-urlencoded", "idempotency-key": d.key },
      body: form.toString(),
      signal,
    });
    const text = await r.text();
    httpOutcome(r.status, "the SMS gateway");
    let status: number | undefined;
    try {
      status = (JSON.parse(text) as { SMSMessageData?: { Recipients?: { statusCode?: number }[] } }).SMSMessageData?.Recipients?.[0]?.statusCode;
    } catch {
      throw new DeliveryError("the SMS gateway's answer is not JSON");
    }
    if (status === 100 || status === 101 || status === 102) return;
    throw new DeliveryError(`the SMS gateway refused the recipient (status ${status ?? "none"})`, status === 403 || status === 406);
  }
}
