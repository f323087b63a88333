import webpush from "web-push";
import type { Address, Channel, Delivery } from "./channels.ts";
import { DeliveryError } from "./channels.ts";

/**
 * Web Push (VAPID): the payload `{ title, body, emergencyId, key }` encrypted for each of the
 * user's subscriptions by `web-push`, POSTed to the subscription's push service endpoint. The
 * message is delivered when at least one subscription accepted it; a subscription the push
 * service says is gone (404, 410) counts as refused.
 */
export class PushChannel implements Channel {
  readonly name = "push" as const;
  private readonly vapid: { publicKey: string; privateKey: string; subject: string };

  constructor(vapid: PushChannel["vapid"]) {
    this.vapid = vapid;
  }

  async send(to: Address, d: Delivery, signal: AbortSignal): Promise<void> {
    if (to.channel !== "push") throw new DeliveryError("not a push subscription", true);
    const payload = JSON.stringify({ title: "Haven", body: d.text, emergencyId: d.emergencyId ?? null, key: d.key });
    let retryable = false;
    const failures: string[] = [];
    for (const sub of to.subscriptions) {
      const details = webpush.generateRequestDetails(sub, payload, {
        vapidDetails: this.vapid, TTL: 300, urgency: "high", topic: d.key.replace(/[^A-Za-z0-9_-]/g, "").slice(-32),
      });
      try {
        const headers = { ...(details.headers as Record<string, string>), "idempotency-key": d.key };
        const r = await fetch(details.endpoint, { method: details.method, headers, body: details.body as Buffer, signal });
        await r.arrayBuffer().catch(() => undefined);
        if (r.status >= 200 && r.status < 300) return;
        failures.push(`push service answered ${r.status}`);
        if (r.status === 429 || r.status >= 500) retryable = true;
      } catch (error) {
        failures.push((error as Error).message);
        retryable = true;
      }
    }
    throw new DeliveryError(failures.join("; ") || "no push subscription", !retryable);
  }
}
