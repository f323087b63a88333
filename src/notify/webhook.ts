import { createHmac, timingSafeEqual } from "node:crypto";
import type { Address, Channel, Delivery } from "./channels.ts";
import { DeliveryError, httpOutcome } from "./channels.ts";

/** Receivers refuse a signed webhook whose timestamp is further than this from their clock. */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/** `v1=` + hex HMAC-SHA256 of `{timestamp}.{body}` under the shared secret. */
export function webhookSignature(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/**
 * How a receiver checks a Haven webhook: the signature over the timestamp and the raw body, and
 * a timestamp within the tolerance (an old request replayed is refused; a repeat inside the
 * window carries the same `Idempotency-Key`, which the receiver drops).
 */
export function verifyWebhook(secret: string, headers: Record<string, string | undefined>, body: string, nowMs = Date.now()): boolean {
  const ts = Number(headers["x-haven-timestamp"]);
  const given = headers["x-haven-signature"] ?? "";
  if (!Number.isInteger(ts) || Math.abs(nowMs / 1000 - ts) > WEBHOOK_TOLERANCE_SECONDS) return false;
  const wanted = webhookSignature(secret, ts, body);
  return given.length === wanted.length && timingSafeEqual(Buffer.from(given), Buffer.from(wanted));
}

/**
 * Signed webhooks: a JSON POST `{ id, event, emergencyId, text, sentAt }` with `X-Haven-Timestamp`
 * (Unix seconds), `X-Haven-Signature` (webhookSignature) and `Idempotency-Key` (the delivery key,
 * equal to `id`).
 */
export class WebhookChannel implements Channel {
  readonly name = "webhook" as const;
  private readonly secret: string;

  constructor(secret: string) {
    this.secret = secret;
  }

  async send(to: Address, d: Delivery, signal: AbortSignal): Promise<void> {
    if (to.channel !== "webhook") throw new DeliveryError("not a URL", true);
    const timestamp = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ id: d.key, event: d.event, emergencyId: d.emergencyId ?? null, text: d.text, sentAt: timestamp });
    const r = await fetch(to.url, {
      method: "POST",
      headers: {
        "content-type": "application/json", "idempotency-key": d.key,
        "x-haven-timestamp": String(timestamp), "x-haven-signature": webhookSignature(this.secret, timestamp, body),
      },
      body,
      signal,
      redirect: "error",
    });
    await r.arrayBuffer().catch(() => undefined);
    httpOutcome(r.status, "the webhook receiver");
  }
}
