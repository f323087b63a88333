/**
 * Stable error codes. A code never changes meaning once published; docs/protocol.md lists them.
 * Every refusal, over HTTP or a socket, carries `{ code, message }`.
 */
import { isDatabaseUnavailable } from "../../persistence/unavailable.ts";

export const ErrorCodes = {
  // input
  INVALID_PAYLOAD: 400,
  MALFORMED_FRAME: 400,
  FRAME_TOO_LARGE: 413,
  BODY_TOO_LARGE: 413,
  UNKNOWN_MESSAGE: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  RATE_LIMITED: 429,
  // identity
  UNAUTHENTICATED: 401,
  TOKEN_INVALID: 401,
  TOKEN_EXPIRED: 401,
  INVALID_CREDENTIALS: 401,
  REFRESH_TOKEN_INVALID: 401,
  FORBIDDEN: 403,
  NOT_ENTITLED: 403,
  BYPASS_USED: 403,
  EMAIL_TAKEN: 409,
  // lifecycle
  EMERGENCY_NOT_FOUND: 404,
  ROOM_NOT_FOUND: 404,
  EMERGENCY_CLOSED: 409,
  INVALID_TRANSITION: 409,
  OFFER_NOT_FOUND: 404,
  OFFER_EXPIRED: 409,
  ALREADY_ASSIGNED: 409,
  NOT_VERIFIED: 403,
  HOSPITAL_NOT_FOUND: 404,
  HOSPITAL_EXISTS: 409,
  PROFILE_NOT_FOUND: 404,
  PROFILE_EXISTS: 409,
  NOT_RECEIVING_HOSPITAL: 403,
  RESPONDER_NOT_ON_DUTY: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class HavenError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: unknown;
  /** For RATE_LIMITED: when to try again, sent over HTTP as `Retry-After` (seconds). */
  readonly retryAfterSeconds?: number;

  /**
   * `details` go to the client; `options.cause` (what went wrong inside, e.g. a driver's message)
   * stays on the server: it is logged, never sent.
   */
  constructor(code: ErrorCode, message: string, details?: unknown, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.name = "HavenError";
    this.code = code;
    this.status = ErrorCodes[code];
    this.details = details;
    if (options?.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }

  toJSON(): { code: ErrorCode; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** What a refusal looks like on the wire, whatever was thrown. */
export function toWireError(error: unknown): { code: ErrorCode; message: string; details?: unknown } {
  return asHavenError(error).toJSON();
}

/** A HavenError as is; an unreachable database as UNAVAILABLE (retry); anything else as INTERNAL. */
export function asHavenError(error: unknown): HavenError {
  if (error instanceof HavenError) return error;
  if (isDatabaseUnavailable(error)) return new HavenError("UNAVAILABLE", "the database is unavailable right now; retry");
  return new HavenError("INTERNAL", "internal error");
}
