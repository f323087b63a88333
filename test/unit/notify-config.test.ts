import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.ts";

/** Notification settings are checked at start: a bad combination names its variable. */
const refused = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).variable;
  }
  throw new Error("accepted");
};

describe("notification configuration", () => {
  it("has working defaults: nothing configured, every channel skipped, the outbox on", () => {
    const c = loadConfig({}).notify;
    expect(c).toMatchObject({ defaultRegion: "KE", defaultLanguage: "en", sms: undefined, webhookSecret: undefined, push: undefined, hospitalSmsFallbackMs: 60_000 });
    expect(c.worker).toMatchObject({ pollMs: 1000, leaseMs: 60_000, sendTimeoutMs: 10_000, maxAttempts: 8 });
  });

  it("refuses half a gateway, a short webhook key, half a VAPID pair, a lease not longer than a send, and a bad inbound secret", () => {
    expect(refused({ HAVEN_SMS_BASE_URL: "https://api.example.com" })).toBe("HAVEN_SMS_API_KEY");
    expect(refused({ HAVEN_SMS_BASE_URL: "https://api.example.com", HAVEN_SMS_API_KEY: "k" })).toBe("HAVEN_SMS_USERNAME");
    expect(refused({ HAVEN_SMS_BASE_URL: "ftp://api.example.com", HAVEN_SMS_API_KEY: "k", HAVEN_SMS_USERNAME: "u" })).toBe("HAVEN_SMS_BASE_URL");
    expect(refused({ HAVEN_WEBHOOK_SECRET: "short" })).toBe("HAVEN_WEBHOOK_SECRET");
    expect(refused({ HAVEN_VAPID_PUBLIC_KEY: "x" })).toBe("HAVEN_VAPID_PRIVATE_KEY");
    expect(refused({ HAVEN_OUTBOX_LEASE_MS: "5000", HAVEN_NOTIFY_SEND_TIMEOUT_MS: "5000" })).toBe("HAVEN_OUTBOX_LEASE_MS");
    expect(refused({ HAVEN_OUTBOX_BACKOFF_BASE_MS: "1000", HAVEN_OUTBOX_BACKOFF_MAX_MS: "500" })).toBe("HAVEN_OUTBOX_BACKOFF_MAX_MS");
    expect(refused({ HAVEN_GATEWAY_INBOUND_SECRET: "has spaces in it and is long enough" })).toBe("HAVEN_GATEWAY_INBOUND_SECRET");
    expect(refused({ HAVEN_NOTIFY_DEFAULT_LANGUAGE: "fr" })).toBe("HAVEN_NOTIFY_DEFAULT_LANGUAGE");
  });

  it("in production, inbound SMS needs a secret or an allowlist", () => {
    const prod = {
      HAVEN_ENV: "production", HAVEN_TOKEN_SECRET_KEY: "k4.secret.x",
      HAVEN_SMS_BASE_URL: "https://api.example.com", HAVEN_SMS_USERNAME: "u", HAVEN_SMS_API_KEY: "k",
    };
    expect(refused(prod)).toBe("HAVEN_GATEWAY_INBOUND_SECRET");
    expect(loadConfig({ ...prod, HAVEN_GATEWAY_INBOUND_ALLOWLIST: "198.51.100.7, 198.51.100.8" }).notify.inbound.allowlist).toEqual(["198.51.100.7", "198.51.100.8"]);
  });
});
