import type { OutboxMessage, OutboxStore, OutboxWrite } from "../../persistence/stores.ts";
import type { PgNotifyDirectory } from "../../persistence/outbox.ts";
import type { Logger } from "../log.ts";

/**
 * The node's way into the outbox for code that is not inside an emergency's critical change (a
 * change writes its notifications with its own commit, rooms/emergency/parts.ts): duty rooms, the
 * inbound SMS and USSD endpoints, and the escalation timers.
 */
export class Notifications {
  readonly store: OutboxStore;
  readonly directory: PgNotifyDirectory;
  private readonly log: Logger;
  private readonly wake: () => void;

  constructor(o: { store: OutboxStore; directory: PgNotifyDirectory; log: Logger; wake: () => void }) {
    this.store = o.store;
    this.directory = o.directory;
    this.log = o.log;
    this.wake = o.wake;
  }

  /** Queues messages (and cancels others) now, in a statement of their own. */
  async write(w: OutboxWrite): Promise<void> {
    if (w.messages.length === 0 && w.cancel.length === 0) return;
    await this.store.write(w);
    this.wake();
  }

  /** Like `write`, for a caller that cannot wait: a failure is logged (and the message lost with the cause that was not recorded either). */
  queue(messages: readonly OutboxMessage[], cancel: readonly string[] = []): void {
    this.write({ messages, cancel }).catch((error) => this.log.error({ err: error, keys: messages.map((m) => m.key) }, "notifications could not be queued"));
  }

  /** A change that wrote notifications committed: the worker looks now. */
  committed(): void {
    this.wake();
  }
}
