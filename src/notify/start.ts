import type { Sql } from "../../persistence/client.ts";
import { PgNotifyDirectory, PgOutboxStore } from "../../persistence/outbox.ts";
import type { NotifyChannel } from "../../persistence/stores.ts";
import type { NotifyConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { MedicalProfiles } from "../medical/service.ts";
import type { Channel } from "./channels.ts";
import { PushChannel } from "./push.ts";
import { Notifications } from "./service.ts";
import { SmsChannel } from "./sms.ts";
import { WebhookChannel } from "./webhook.ts";
import { OutboxWorker } from "./worker.ts";

/** The node's notifications: the outbox on `sql` (deadline-bounded), the configured channels, and the worker. */
export function startNotifications(o: { sql: Sql; config: NotifyConfig; medical: Pick<MedicalProfiles, "emergencyContact">; node: string; log: Logger }): { service: Notifications; worker: OutboxWorker } {
  const store = new PgOutboxStore(o.sql);
  const directory = new PgNotifyDirectory(o.sql);
  const channels: Partial<Record<NotifyChannel, Channel>> = {};
  if (o.config.sms) channels.sms = new SmsChannel(o.config.sms);
  if (o.config.webhookSecret) channels.webhook = new WebhookChannel(o.config.webhookSecret);
  if (o.config.push) channels.push = new PushChannel(o.config.push);
  const worker = new OutboxWorker({
    store, channels, config: o.config, node: o.node, log: o.log.child({ component: "outbox" }),
    directory: {
      user: (id) => directory.user(id),
      hospital: (id) => directory.hospital(id),
      preferences: (id) => directory.preferences(id),
      emergencyContact: (patientId, n, emergencyId) => o.medical.emergencyContact(patientId, n, emergencyId),
    },
  });
  return { service: new Notifications({ store, directory, log: o.log, wake: () => worker.nudge() }), worker };
}
