/**
 * WebSocket close codes Haven uses beyond Colyseus's own (4000 + the HTTP status, as
 * Hocuspocus does). docs/protocol.md lists them with what a client should do.
 */
export const HavenCloseCode = {
  /** The token was missing, forged or expired: refresh it, then rejoin. */
  UNAUTHORIZED: 4401,
  /** The party is not entitled to this room: do not retry. */
  FORBIDDEN: 4403,
  /** The emergency is now held by another node: join it again by its id (no seat to reconnect to). */
  MOVED: 4421,
  /** The emergency is over (handed over or cancelled): leave for good. */
  EMERGENCY_CLOSED: 4410,
  /** The client sent messages faster than allowed: slow down, then reconnect. */
  RATE_LIMITED: 4429,
} as const;
