import type { NotifyChannel } from "../../persistence/stores.ts";

/** A message as a channel sends it: rendered, addressed, with its delivery key. */
export interface Delivery {
  /** The delivery key (the outbox's): sent as `Idempotency-Key` so a receiver can drop a repeat. */
  key: string;
  event: string;
  emergencyId?: string;
  /** The rendered text (an SMS, a push's body, a webhook's `text`). */
  text: string;
}

/** A Web Push subscription (the browser's PushSubscription as JSON). */
export interface PushAddress {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** Where a message goes on its channel: a phone number, a URL, or a user's push subscriptions. */
export type Address = { channel: "sms"; phone: string } | { channel: "webhook"; url: string } | { channel: "push"; subscriptions: PushAddress[] };

/** One way of reaching people. `send` resolves once the far end accepted the message. */
export interface Channel {
  readonly name: NotifyChannel;
  send(to: Address, d: Delivery, signal: AbortSignal): Promise<void>;
}

/** A delivery that failed; `permanent`: trying again cannot help (dead-lettered at once). */
export class DeliveryError extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent = false) {
    super(message);
    this.name = "DeliveryError";
    this.permanent = permanent;
  }
}

/** An HTTP answer as a delivery outcome: 2xx accepted; 408, 429 and 5xx worth retrying; other 4xx final. */
export function httpOutcome(status: number, what: string): void {
  if (status >= 200 && status < 300) return;
  const permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
  throw new DeliveryError(`${what} answered ${status}`, permanent);
}
