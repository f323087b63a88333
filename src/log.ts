import { pino, type Logger } from "pino";

/**
 * Structured JSON logs. Tokens, passwords and medical fields are redacted wherever they appear
 * in a logged object; socket URLs are never logged with their query string.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "haven" },
    redact: {
      paths: [
        "token", "*.token", "accessToken", "*.accessToken", "refreshToken", "*.refreshToken",
        "password", "*.password", "authorization", "*.authorization", "headers.authorization",
        "assessment", "*.assessment", "vitals", "*.vitals", "medical", "*.medical",
      ],
      censor: "[redacted]",
    },
  });
}

export type { Logger };
