const UNREACHABLE_CODES = new Set([
  "CONNECTION_CLOSED", "DEADLINE_EXCEEDED", "CONNECTION_DESTROYED", "CONNECTION_ENDED", "CONNECT_TIMEOUT",
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND",
]);

/**
 * True when an error means the database cannot be reached right now (connection refused, lost or
 * timed out; the server shutting down or in recovery; a statement cancelled by its timeout): the
 * caller answers "temporarily unavailable, retry" rather than an internal error.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  return UNREACHABLE_CODES.has(code) || code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "57014";
}
