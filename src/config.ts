/**
 * Every setting Haven reads from the environment, with its default and a one-line doc, in one
 * place. `loadConfig()` checks them all at start: a bad value throws a ConfigError that names the
 * variable, and `main.ts` turns it into a non-zero exit.
 */

import type { VitalThresholds } from "./domain/vitals.ts";
import type { DatabaseOptions } from "../persistence/db.ts";

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
    this.variable = variable;
  }
}

type Env = Record<string, string | undefined>;

export function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `expected an integer, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function num(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new ConfigError(name, `expected a number, got ${JSON.stringify(raw)}`);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

function str(env: Env, name: string, fallback: string | undefined): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === "" ? fallback : raw;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0") return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(raw)}`);
}

/** An optional URL whose scheme must be one of `protocols` (the first one names it in the error). */
export function urlOf(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const raw = str(env, name, undefined);
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, "is not a URL");
  }
  if (!protocols.includes(url.protocol)) throw new ConfigError(name, `must be a ${protocols.map((p) => `${p}//`).join(" or ")} URL`);
  return raw;
}

export type TransportChoice = "auto" | "uws" | "ws";

export interface DispatchRoleConfig {
  /** How many offers are out at once. */
  offers: number;
  /** First search radius where the alert lies in an urban area. */
  urbanRadiusM: number;
  /** First search radius elsewhere. */
  ruralRadiusM: number;
  /** The radius never widens past this. */
  maxRadiusM: number;
}

/** `points` requests per window of `seconds`. */
export interface RateRule {
  points: number;
  seconds: number;
}

/** Limits on register, login, emergency bypass, alert and bypass renewal (src/limits/requests.ts). */
export interface RequestLimitsConfig {
  /** `account` is the email being registered; accounts created by ops or a hospital admin are not counted. */
  register: { account: RateRule; device: RateRule; address: RateRule };
  /** `account` is the email signing in; a successful login gives its point back. */
  login: { account: RateRule; device: RateRule; address: RateRule };
  /** `device` is the body's deviceId. */
  bypass: { device: RateRule; address: RateRule };
  /** New emergencies raised by an account (a bypass token raises one only, and is limited when issued). */
  alert: { account: RateRule; device: RateRule; address: RateRule };
  /** Renewals of an emergency-bypass token, per bypass subject. */
  renew: { account: RateRule };
  /** Devices let through a spent address budget (alerts and bypass tokens together), per address. */
  newDevicesPerAddress: RateRule;
  /** A device not seen making a request for this long is new again. */
  deviceMemorySeconds: number;
  /** IPv6 clients are counted by this network prefix. */
  ipv6Prefix: number;
  /** Keys each in-memory limiter holds at most (one node, or each node while Redis is away). */
  maxKeys: number;
}

export interface WebConfig {
  /** The built pages (web/dist): served at /wallboard, /ops and /web/*. */
  dir: string;
  /** Map tiles for the pages' maps, a Leaflet URL template (`https://…/{z}/{x}/{y}.png`); unset: no tiles, coordinates only. */
  tileUrl?: string;
  /** The attribution the tile provider asks for, shown on the map. */
  tileAttribution: string;
}

/** A Leaflet tile URL template: http(s), with {z}, {x} and {y}; `{s}` may only stand for a subdomain. */
function tileUrlOf(env: Env): string | undefined {
  const raw = str(env, "HAVEN_MAP_TILE_URL", undefined);
  if (raw === undefined) return undefined;
  if (!/^https?:\/\/([a-z0-9-]+\.|\{s\}\.)*[a-z0-9-]+(:\d{1,5})?\/[A-Za-z0-9._~\/{}@-]*$/.test(raw) || !["{z}", "{x}", "{y}"].every((p) => raw.includes(p))) {
    throw new ConfigError("HAVEN_MAP_TILE_URL", "must be an http(s) tile URL template with {z}, {x} and {y} (and at most {s} in the host)");
  }
  return raw;
}

export interface Config {
  env: "development" | "production" | "test";
  /** Bearer token a scraper of `/metrics` presents; without one, `/metrics` answers this host only (never in production). */
  metricsToken?: string;
  /** The hospital wallboard and operations pages (built into `dir` by `npm run build:web`). */
  web: WebConfig;
  port: number;
  host: string;
  transport: TransportChoice;
  logLevel: string;
  /** Allowed browser origins for CORS; empty means no cross-origin browser access. */
  corsOrigins: string[];
  /** Trust X-Forwarded-For / X-Real-IP (only behind a proxy that overwrites them). */
  trustProxy: boolean;

  tokens: {
    /** PASERK k4.secret; absent outside production means a development key kept in the data folder. */
    secretKey?: string;
    issuer: string;
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    bypassTtlSeconds: number;
  };
  bootstrapOps?: { email: string; password: string };

  limits: {
    maxFrameBytes: number;
    maxHttpBodyBytes: number;
    maxMessagesPerSecond: number;
    /** Critical changes (status, assessment, cancel, wallboard actions) one sender may make per 10 s in an emergency. */
    criticalChangesPer10s: number;
    maxBackpressureBytes: number;
    requests: RequestLimitsConfig;
  };

  dispatch: {
    firstAider: DispatchRoleConfig;
    ambulance: DispatchRoleConfig;
    offerTimeoutMs: number;
    /** How long a widened search waits before widening again when nobody is found. */
    widenIntervalMs: number;
  };

  hospitals: {
    file: string;
    ackTimeoutMs: number;
    realertIntervalMs: number;
    /** Beyond this distance a hospital scores zero for distance. */
    maxDistanceM: number;
  };

  /** Where escalation ends: operations is alerted, and an idle emergency is closed as expired. */
  escalation: {
    /** Operations is alerted when a role has no accepted responder this long after the alert. */
    noResponderMs: number;
    /** Operations is alerted when no hospital acknowledged this long after the assessment. */
    noAcknowledgementMs: number;
    /** An emergency with no activity (no party message, join or change) this long is closed as expired. */
    idleExpiryMs: number;
  };

  /** The vitals stream (the `vitals` message): its rate per sender and the range of each vital. */
  vitals: {
    /** A sender's samples closer together than this are refused (RATE_LIMITED). */
    minIntervalMs: number;
    thresholds: VitalThresholds;
  };

  /** The operations desk (the `ops` room): how often it refreshes, and when a wait is highlighted. */
  ops: {
    /** The ops room (and each node's report to it) refreshes this often. */
    refreshMs: number;
    /** An emergency nobody accepted yet is highlighted this long after the alert. */
    acceptWaitMs: number;
    /** A notified hospital that has not acknowledged is highlighted this long after it was notified. */
    ackWaitMs: number;
  };

  /** Chat inside an emergency between its parties and the receiving hospital. */
  chat: {
    /** Longest chat message, in characters. */
    maxChars: number;
    /** Chat messages one sender may send in an emergency per minute. */
    perSenderPerMinute: number;
    /** Newest chat messages kept in the room's live state (all are kept in the timeline). */
    keep: number;
  };

  eta: { speedKmh: number };
  urbanAreasFile: string;
  /** A reconnecting party keeps its seat this long after its socket drops. */
  reconnectWindowSeconds: number;
  /** The timeline held in room state keeps this many newest events. */
  timelineLength: number;
  /** After handover or cancel, parties see the final state this long before the room closes. */
  closeGraceMs: number;
  /** A closed emergency's medical data is destroyed (its keys deleted) this long after it closed. */
  medicalRetentionMs: number;
  /** How often each node looks for closed emergencies past that retention. */
  medicalRetentionSweepMs: number;

  /** Notifications: the outbox worker, the channels, who is told what, and inbound SMS/USSD (src/notify/). */
  notify: NotifyConfig;

  /** Postgres to use; without a url, an embedded PostgreSQL in `dataDir`. */
  database: DatabaseOptions & { callTimeoutMs: number };
  /** Name of this node, recorded with what it writes. */
  nodeName: string;

  /** Cluster mode: set by REDIS_URL; without it one process holds everything, as a single node. */
  cluster?: {
    redisUrl: string;
    /** host:port where clients reach this node's WebSocket (seat reservations carry it). */
    publicAddress: string;
    heartbeatMs: number;
    /** A node whose heartbeat is older than this is dead (a killed node is seen dead at once). */
    leaseMs: number;
    /** A node seen not alive this long is dead (a blip of its Redis connection is not a death). */
    deathGraceMs: number;
    /** How often each node looks for dead nodes. */
    checkIntervalMs: number;
    /** How often each node looks for emergencies no live node holds. */
    sweepIntervalMs: number;
  };
}


export interface NotifyConfig {
  /** Region a phone number written without its country code is read in (ISO 3166, e.g. KE). */
  defaultRegion: string;
  /** Language of messages to recipients without a preference (hospitals, operations, unknown numbers). */
  defaultLanguage: "en" | "sw";
  /** The SMS gateway (Africa's Talking's messaging API shape); absent: SMS messages are skipped. */
  sms?: { baseUrl: string; username: string; apiKey: string; from?: string };
  /** Signing key of outgoing webhooks (HMAC-SHA256); absent: webhook messages are skipped. */
  webhookSecret?: string;
  /** VAPID keys and contact of Web Push; absent: push messages are skipped. */
  push?: { publicKey: string; privateKey: string; subject: string };
  /** Where escalation ends: the operations duty phone (SMS) and webhook. */
  ops: { phone?: string; webhookUrl?: string };
  worker: {
    /** How often each node looks for due messages (and at once after a change queued one). */
    pollMs: number;
    /** Messages one claim takes at most. */
    batch: number;
    /** A claimed message is due again after this if its node did not record an outcome (it died). */
    leaseMs: number;
    /** One delivery attempt gives up after this. */
    sendTimeoutMs: number;
    /** First retry delay; doubled each attempt (with jitter) up to the max. */
    backoffBaseMs: number;
    backoffMaxMs: number;
    /** Attempts before a message is dead-lettered. */
    maxAttempts: number;
  };
  /** The receiving hospital's duty phone gets an SMS when its wallboard has not acknowledged this long after routing. */
  hospitalSmsFallbackMs: number;
  /** An away responder gets an SMS this long after the push of an offer still open. */
  responderSmsDelayMs: number;
  /** Inbound SMS and USSD callbacks of the gateway. */
  inbound: {
    /** Shared secret the gateway presents (`?secret=` in the callback URL, or X-Haven-Gateway-Secret). */
    secret?: string;
    /** Addresses the callbacks are accepted from (empty: any, with the secret). */
    allowlist: string[];
    /** Callbacks per phone number per minute. */
    perPhonePerMinute: number;
  };
}

function notifyConfig(env: Env, production: boolean): NotifyConfig {
  const smsUrl = urlOf(env, "HAVEN_SMS_BASE_URL", ["https:", "http:"]);
  const smsUser = str(env, "HAVEN_SMS_USERNAME", undefined);
  const smsKey = str(env, "HAVEN_SMS_API_KEY", undefined);
  if ((smsUrl === undefined) !== (smsKey === undefined) || (smsUrl !== undefined && smsUser === undefined)) {
    throw new ConfigError(smsUrl === undefined ? "HAVEN_SMS_BASE_URL" : smsKey === undefined ? "HAVEN_SMS_API_KEY" : "HAVEN_SMS_USERNAME", "HAVEN_SMS_BASE_URL, HAVEN_SMS_USERNAME and HAVEN_SMS_API_KEY go together");
  }
  const webhookSecret = str(env, "HAVEN_WEBHOOK_SECRET", undefined);
  if (webhookSecret !== undefined && webhookSecret.length < 32) throw new ConfigError("HAVEN_WEBHOOK_SECRET", "must be at least 32 characters");
  const vapidPublic = str(env, "HAVEN_VAPID_PUBLIC_KEY", undefined);
  const vapidPrivate = str(env, "HAVEN_VAPID_PRIVATE_KEY", undefined);
  const vapidSubject = str(env, "HAVEN_VAPID_SUBJECT", "mailto:ops@haven.invalid")!;
  if ((vapidPublic === undefined) !== (vapidPrivate === undefined)) {
    throw new ConfigError(vapidPublic === undefined ? "HAVEN_VAPID_PUBLIC_KEY" : "HAVEN_VAPID_PRIVATE_KEY", "HAVEN_VAPID_PUBLIC_KEY and HAVEN_VAPID_PRIVATE_KEY go together");
  }
  if (!/^(mailto:|https:)/.test(vapidSubject)) throw new ConfigError("HAVEN_VAPID_SUBJECT", "must be a mailto: or https: URL");
  const inboundSecret = str(env, "HAVEN_GATEWAY_INBOUND_SECRET", undefined);
  if (inboundSecret !== undefined && !/^[A-Za-z0-9._~-]{24,256}$/.test(inboundSecret)) {
    throw new ConfigError("HAVEN_GATEWAY_INBOUND_SECRET", "must be 24–256 characters of [A-Za-z0-9._~-]");
  }
  const sendTimeoutMs = int(env, "HAVEN_NOTIFY_SEND_TIMEOUT_MS", 10_000, 100, 120_000);
  const leaseMs = int(env, "HAVEN_OUTBOX_LEASE_MS", 60_000, 200, 3_600_000);
  if (leaseMs <= sendTimeoutMs) throw new ConfigError("HAVEN_OUTBOX_LEASE_MS", "must be longer than HAVEN_NOTIFY_SEND_TIMEOUT_MS (a message is never claimed twice while it is being sent)");
  const backoffBaseMs = int(env, "HAVEN_OUTBOX_BACKOFF_BASE_MS", 5000, 10, 3_600_000);
  const backoffMaxMs = int(env, "HAVEN_OUTBOX_BACKOFF_MAX_MS", 600_000, 10, 86_400_000);
  if (backoffMaxMs < backoffBaseMs) throw new ConfigError("HAVEN_OUTBOX_BACKOFF_MAX_MS", "must not be smaller than HAVEN_OUTBOX_BACKOFF_BASE_MS");
  const allowlist = (str(env, "HAVEN_GATEWAY_INBOUND_ALLOWLIST", "") ?? "").split(",").map((x) => x.trim()).filter(Boolean);
  if (production && inboundSecret === undefined && allowlist.length === 0 && smsUrl !== undefined) {
    throw new ConfigError("HAVEN_GATEWAY_INBOUND_SECRET", "in production, inbound SMS/USSD needs HAVEN_GATEWAY_INBOUND_SECRET or HAVEN_GATEWAY_INBOUND_ALLOWLIST");
  }
  return {
    defaultRegion: oneOf(env, "HAVEN_PHONE_DEFAULT_REGION", "KE", ["KE", "UG", "TZ", "RW", "ET", "NG", "GH", "ZA", "GB", "US"] as const),
    defaultLanguage: oneOf(env, "HAVEN_NOTIFY_DEFAULT_LANGUAGE", "en", ["en", "sw"] as const),
    sms: smsUrl !== undefined ? { baseUrl: smsUrl.replace(/\/$/, ""), username: smsUser!, apiKey: smsKey!, from: str(env, "HAVEN_SMS_FROM", undefined) } : undefined,
    webhookSecret,
    push: vapidPublic !== undefined ? { publicKey: vapidPublic, privateKey: vapidPrivate!, subject: vapidSubject } : undefined,
    ops: { phone: str(env, "HAVEN_OPS_DUTY_PHONE", undefined), webhookUrl: urlOf(env, "HAVEN_OPS_WEBHOOK_URL", ["https:", "http:"]) },
    worker: {
      pollMs: int(env, "HAVEN_OUTBOX_POLL_MS", 1000, 10, 60_000),
      batch: int(env, "HAVEN_OUTBOX_BATCH", 20, 1, 500),
      leaseMs,
      sendTimeoutMs,
      backoffBaseMs,
      backoffMaxMs,
      maxAttempts: int(env, "HAVEN_OUTBOX_MAX_ATTEMPTS", 8, 1, 100),
    },
    hospitalSmsFallbackMs: int(env, "HAVEN_HOSPITAL_SMS_FALLBACK_MS", 60_000, 100, 3_600_000),
    responderSmsDelayMs: int(env, "HAVEN_RESPONDER_SMS_DELAY_MS", 30_000, 0, 3_600_000),
    inbound: {
      secret: inboundSecret,
      allowlist,
      perPhonePerMinute: int(env, "HAVEN_INBOUND_PER_PHONE_PER_MINUTE", 10, 1, 1000),
    },
  };
}

function metricsToken(env: Env): string | undefined {
  const token = str(env, "HAVEN_METRICS_TOKEN", undefined);
  if (token !== undefined && !/^[A-Za-z0-9._~+\/=-]{24,256}$/.test(token)) {
    throw new ConfigError("HAVEN_METRICS_TOKEN", "must be 24–256 characters of [A-Za-z0-9._~+/=-] (e.g. 32 random bytes, base64)");
  }
  return token;
}

function clusterConfig(env: Env, port: number, host: string, production: boolean): Config["cluster"] {
  const url = urlOf(env, "REDIS_URL", ["redis:", "rediss:"]);
  if (url === undefined) {
    if (str(env, "HAVEN_PUBLIC_ADDRESS", undefined) !== undefined) throw new ConfigError("HAVEN_PUBLIC_ADDRESS", "only applies with REDIS_URL (cluster mode)");
    return undefined;
  }
  // Redis is the cluster's control plane (room calls travel through it by method name): in
  // production a Redis on another host must ask for credentials
  const redisHost = new URL(url).hostname.replace(/^\[|\]$/g, "");
  const loopback = redisHost === "localhost" || /^127\./.test(redisHost) || redisHost === "::1";
  if (production && !loopback && new URL(url).password === "") {
    throw new ConfigError("REDIS_URL", "in production a Redis on another host needs credentials (redis://user:password@host, or rediss:// for TLS): it is the cluster's control plane");
  }
  const fallbackHost = host === "0.0.0.0" || host === "::" ? undefined : host;
  const publicAddress = str(env, "HAVEN_PUBLIC_ADDRESS", fallbackHost && port !== 0 ? `${fallbackHost}:${port}` : undefined);
  if (publicAddress === undefined) {
    throw new ConfigError("HAVEN_PUBLIC_ADDRESS", "is required with REDIS_URL when HOST is a wildcard address: the host:port at which clients reach this node");
  }
  if (!/^[A-Za-z0-9.\-\[\]:]+:\d{1,5}(\/[A-Za-z0-9._~\-\/]*)?$/.test(publicAddress)) {
    throw new ConfigError("HAVEN_PUBLIC_ADDRESS", `expected host:port, got ${JSON.stringify(publicAddress)}`);
  }
  const heartbeatMs = int(env, "HAVEN_CLUSTER_HEARTBEAT_MS", 1000, 100, 60_000);
  const leaseMs = int(env, "HAVEN_CLUSTER_LEASE_MS", 3000, 300, 600_000);
  if (leaseMs < 2 * heartbeatMs) throw new ConfigError("HAVEN_CLUSTER_LEASE_MS", "must be at least twice HAVEN_CLUSTER_HEARTBEAT_MS");
  return {
    redisUrl: url,
    publicAddress,
    heartbeatMs,
    leaseMs,
    deathGraceMs: int(env, "HAVEN_CLUSTER_DEATH_GRACE_MS", 1000, 0, 600_000),
    checkIntervalMs: int(env, "HAVEN_CLUSTER_CHECK_INTERVAL_MS", 250, 50, 60_000),
    sweepIntervalMs: int(env, "HAVEN_CLUSTER_SWEEP_INTERVAL_MS", 10_000, 1000, 3_600_000),
  };
}

function requestLimits(env: Env): RequestLimitsConfig {
  const HOUR = 3600;
  const MINUTE = 60;
  const rule = (name: string, fallback: number, seconds: number): RateRule => ({ points: int(env, name, fallback, 1, 1_000_000), seconds });
  return {
    register: {
      account: rule("HAVEN_REGISTER_PER_HOUR_PER_EMAIL", 5, HOUR),
      device: rule("HAVEN_REGISTER_PER_HOUR_PER_DEVICE", 3, HOUR),
      address: rule("HAVEN_REGISTER_PER_HOUR_PER_ADDRESS", 10, HOUR),
    },
    login: {
      account: rule("HAVEN_LOGIN_FAILURES_PER_HOUR_PER_ACCOUNT", 30, HOUR),
      device: rule("HAVEN_LOGIN_PER_MINUTE_PER_DEVICE", 10, MINUTE),
      address: rule("HAVEN_LOGIN_PER_MINUTE_PER_ADDRESS", 20, MINUTE),
    },
    bypass: {
      device: rule("HAVEN_BYPASS_PER_HOUR_PER_DEVICE", 1, HOUR),
      address: rule("HAVEN_BYPASS_PER_HOUR_PER_ADDRESS", 3, HOUR),
    },
    alert: {
      account: rule("HAVEN_ALERT_PER_HOUR_PER_ACCOUNT", 3, HOUR),
      device: rule("HAVEN_ALERT_PER_HOUR_PER_DEVICE", 3, HOUR),
      address: rule("HAVEN_ALERT_PER_HOUR_PER_ADDRESS", 10, HOUR),
    },
    renew: { account: rule("HAVEN_BYPASS_RENEW_PER_HOUR", 12, HOUR) },
    newDevicesPerAddress: rule("HAVEN_NEW_DEVICES_PER_HOUR_PER_ADDRESS", 10, HOUR),
    deviceMemorySeconds: int(env, "HAVEN_DEVICE_MEMORY_SECONDS", 86_400, 60, 30 * 86_400),
    ipv6Prefix: int(env, "HAVEN_IPV6_PREFIX", 64, 32, 128),
    maxKeys: int(env, "HAVEN_LIMITER_MAX_KEYS", 20_000, 100, 10_000_000),
  };
}

export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = oneOf(env, "HAVEN_ENV", "development", ["development", "production", "test"] as const);

  const bootstrapEmail = str(env, "HAVEN_BOOTSTRAP_OPS_EMAIL", undefined);
  const bootstrapPassword = str(env, "HAVEN_BOOTSTRAP_OPS_PASSWORD", undefined);
  if ((bootstrapEmail === undefined) !== (bootstrapPassword === undefined)) {
    throw new ConfigError(
      bootstrapEmail === undefined ? "HAVEN_BOOTSTRAP_OPS_EMAIL" : "HAVEN_BOOTSTRAP_OPS_PASSWORD",
      "HAVEN_BOOTSTRAP_OPS_EMAIL and HAVEN_BOOTSTRAP_OPS_PASSWORD go together",
    );
  }
  if (bootstrapPassword !== undefined && bootstrapPassword.length < 12) {
    throw new ConfigError("HAVEN_BOOTSTRAP_OPS_PASSWORD", "must be at least 12 characters");
  }

  const secretKey = str(env, "HAVEN_TOKEN_SECRET_KEY", undefined);
  if (secretKey !== undefined && !secretKey.startsWith("k4.secret.")) {
    throw new ConfigError("HAVEN_TOKEN_SECRET_KEY", "must be a PASERK k4.secret key");
  }
  if (secretKey === undefined && nodeEnv === "production") {
    throw new ConfigError("HAVEN_TOKEN_SECRET_KEY", "is required when HAVEN_ENV=production");
  }

  const role = (prefix: string, d: DispatchRoleConfig): DispatchRoleConfig => {
    const c = {
      offers: int(env, `${prefix}_OFFERS`, d.offers, 1, 20),
      urbanRadiusM: int(env, `${prefix}_URBAN_RADIUS_M`, d.urbanRadiusM, 50, 200_000),
      ruralRadiusM: int(env, `${prefix}_RURAL_RADIUS_M`, d.ruralRadiusM, 50, 200_000),
      maxRadiusM: int(env, `${prefix}_MAX_RADIUS_M`, d.maxRadiusM, 50, 500_000),
    };
    if (c.maxRadiusM < Math.max(c.urbanRadiusM, c.ruralRadiusM)) {
      throw new ConfigError(`${prefix}_MAX_RADIUS_M`, "must not be smaller than the urban and rural radii");
    }
    return c;
  };

  const port = int(env, "PORT", 2567, 0, 65535);
  const host = str(env, "HOST", "0.0.0.0")!;
  return {
    env: nodeEnv,
    port,
    host,
    transport: oneOf(env, "HAVEN_TRANSPORT", "auto", ["auto", "uws", "ws"] as const),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const),
    corsOrigins: (str(env, "HAVEN_CORS_ORIGINS", "") ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    trustProxy: bool(env, "HAVEN_TRUST_PROXY", false),
    tokens: {
      secretKey,
      issuer: str(env, "HAVEN_TOKEN_ISSUER", "haven")!,
      accessTtlSeconds: int(env, "HAVEN_ACCESS_TOKEN_TTL_SECONDS", 900, 30, 900),
      refreshTtlSeconds: int(env, "HAVEN_REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600, 300, 90 * 24 * 3600),
      bypassTtlSeconds: int(env, "HAVEN_BYPASS_TOKEN_TTL_SECONDS", 900, 10, 900),
    },
    bootstrapOps: bootstrapEmail && bootstrapPassword ? { email: bootstrapEmail, password: bootstrapPassword } : undefined,
    limits: {
      maxFrameBytes: int(env, "HAVEN_MAX_FRAME_BYTES", 8192, 512, 1024 * 1024),
      maxHttpBodyBytes: int(env, "HAVEN_MAX_HTTP_BODY_BYTES", 16384, 512, 1024 * 1024),
      maxMessagesPerSecond: int(env, "HAVEN_MAX_MESSAGES_PER_SECOND", 20, 1, 1000),
      criticalChangesPer10s: int(env, "HAVEN_CRITICAL_CHANGES_PER_10S", 20, 1, 10_000),
      maxBackpressureBytes: int(env, "HAVEN_MAX_BACKPRESSURE_BYTES", 256 * 1024, 4096, 64 * 1024 * 1024),
      requests: requestLimits(env),
    },
    dispatch: {
      firstAider: role("HAVEN_DISPATCH_FIRST_AIDER", { offers: 3, urbanRadiusM: 500, ruralRadiusM: 1000, maxRadiusM: 8000 }),
      ambulance: role("HAVEN_DISPATCH_AMBULANCE", { offers: 1, urbanRadiusM: 5000, ruralRadiusM: 15000, maxRadiusM: 80000 }),
      offerTimeoutMs: int(env, "HAVEN_OFFER_TIMEOUT_MS", 30_000, 100, 600_000),
      widenIntervalMs: int(env, "HAVEN_DISPATCH_WIDEN_INTERVAL_MS", 10_000, 50, 600_000),
    },
    hospitals: {
      file: str(env, "HAVEN_HOSPITALS_FILE", new URL("../data/hospitals.json", import.meta.url).pathname)!,
      ackTimeoutMs: int(env, "HAVEN_HOSPITAL_ACK_TIMEOUT_MS", 120_000, 100, 3_600_000),
      realertIntervalMs: int(env, "HAVEN_HOSPITAL_REALERT_INTERVAL_MS", 30_000, 50, 3_600_000),
      maxDistanceM: int(env, "HAVEN_HOSPITAL_MAX_DISTANCE_M", 40_000, 1000, 1_000_000),
    },
    escalation: {
      noResponderMs: int(env, "HAVEN_ESCALATE_NO_RESPONDER_MS", 180_000, 100, 86_400_000),
      noAcknowledgementMs: int(env, "HAVEN_ESCALATE_NO_ACK_MS", 300_000, 100, 86_400_000),
      idleExpiryMs: int(env, "HAVEN_EMERGENCY_IDLE_EXPIRY_MS", 4 * 3_600_000, 1000, 7 * 86_400_000),
    },
    vitals: {
      minIntervalMs: int(env, "HAVEN_VITALS_MIN_INTERVAL_MS", 900, 0, 60_000),
      thresholds: {
        heartRate: { low: num(env, "HAVEN_VITALS_HR_LOW", 40, 0, 300), high: num(env, "HAVEN_VITALS_HR_HIGH", 140, 0, 300) },
        systolic: { low: num(env, "HAVEN_VITALS_SBP_LOW", 90, 0, 300), high: num(env, "HAVEN_VITALS_SBP_HIGH", 220, 0, 300) },
        diastolic: { low: num(env, "HAVEN_VITALS_DBP_LOW", 0, 0, 200), high: num(env, "HAVEN_VITALS_DBP_HIGH", 130, 0, 200) },
        spo2: { low: num(env, "HAVEN_VITALS_SPO2_LOW", 90, 0, 100), high: 100 },
        temperature: { low: num(env, "HAVEN_VITALS_TEMP_LOW", 35, 25, 45), high: num(env, "HAVEN_VITALS_TEMP_HIGH", 39.5, 25, 45) },
        respiratoryRate: { low: num(env, "HAVEN_VITALS_RR_LOW", 8, 0, 80), high: num(env, "HAVEN_VITALS_RR_HIGH", 30, 0, 80) },
      },
    },
    ops: {
      refreshMs: int(env, "HAVEN_OPS_REFRESH_MS", 1000, 200, 60_000),
      acceptWaitMs: int(env, "HAVEN_OPS_ACCEPT_WAIT_MS", 60_000, 100, 86_400_000),
      ackWaitMs: int(env, "HAVEN_OPS_ACK_WAIT_MS", 60_000, 100, 86_400_000),
    },
    chat: {
      maxChars: int(env, "HAVEN_CHAT_MAX_CHARS", 500, 1, 2000),
      perSenderPerMinute: int(env, "HAVEN_CHAT_PER_MINUTE", 20, 1, 600),
      keep: int(env, "HAVEN_CHAT_KEEP", 50, 1, 500),
    },
    eta: { speedKmh: num(env, "HAVEN_ETA_SPEED_KMH", 40, 1, 300) },
    urbanAreasFile: str(env, "HAVEN_URBAN_AREAS_FILE", new URL("../data/urban-areas.json", import.meta.url).pathname)!,
    reconnectWindowSeconds: int(env, "HAVEN_RECONNECT_WINDOW_SECONDS", 60, 0, 3600),
    timelineLength: int(env, "HAVEN_TIMELINE_LENGTH", 64, 8, 1024),
    closeGraceMs: int(env, "HAVEN_CLOSE_GRACE_MS", 10_000, 0, 600_000),
    // days, fractions allowed (0.5 = 12 h; 0 destroys at the next sweep after closing)
    medicalRetentionMs: Math.round(num(env, "HAVEN_MEDICAL_RETENTION_DAYS", 30, 0, 3650) * 86_400_000),
    medicalRetentionSweepMs: int(env, "HAVEN_MEDICAL_RETENTION_SWEEP_MS", 3_600_000, 1000, 86_400_000),
    notify: notifyConfig(env, nodeEnv === "production"),
    database: {
      url: urlOf(env, "DATABASE_URL", ["postgres:", "postgresql:"]),
      dataDir: str(env, "HAVEN_DATA_DIR", new URL("../.data", import.meta.url).pathname)!,
      embeddedPort: int(env, "HAVEN_EMBEDDED_PG_PORT", 5499, 1024, 65535),
      poolMax: int(env, "HAVEN_DB_POOL_MAX", 10, 1, 200),
      connectTimeoutSeconds: int(env, "HAVEN_DB_CONNECT_TIMEOUT_SECONDS", 5, 1, 120),
      statementTimeoutMs: int(env, "HAVEN_DB_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000),
      callTimeoutMs: int(env, "HAVEN_DB_CALL_TIMEOUT_MS", 6000, 100, 600_000),
    },
    nodeName: str(env, "HAVEN_NODE_NAME", `node-${process.pid}`)!,
    cluster: clusterConfig(env, port, host, nodeEnv === "production"),
    metricsToken: metricsToken(env),
    web: {
      dir: str(env, "HAVEN_WEB_DIR", new URL("../web/dist", import.meta.url).pathname)!,
      tileUrl: tileUrlOf(env),
      tileAttribution: str(env, "HAVEN_MAP_TILE_ATTRIBUTION", "")!.slice(0, 300),
    },
  };
}
