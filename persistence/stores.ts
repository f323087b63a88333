import type { Role } from "../src/auth/tokens.ts";

/**
 * The stores Haven's domain talks to. The in-memory implementations in memory.ts serve a single
 * node with no database; a Postgres implementation takes their place behind the same interfaces.
 */

export interface User {
  id: string;
  email: string;
  name: string;
  phone?: string;
  role: Role;
  passwordHash: string;
  hospitalId?: string;
  createdAt: number;
}

export interface Responder {
  userId: string;
  kind: "first_aider" | "ambulance_crew";
  verified: boolean;
  verifiedBy?: string;
  verifiedAt?: number;
}

export interface RefreshTokenRecord {
  /** sha-256 of the opaque token; the token itself is never stored. */
  hash: string;
  userId: string;
  /** All tokens descended from one login share a family; reuse of a rotated token revokes it. */
  family: string;
  expiresAt: number;
  rotatedAt?: number;
  revokedAt?: number;
}

export interface UserStore {
  create(user: User): Promise<void>;
  byEmail(email: string): Promise<User | undefined>;
  byId(id: string): Promise<User | undefined>;
}

export interface ResponderStore {
  upsert(r: Responder): Promise<void>;
  get(userId: string): Promise<Responder | undefined>;
}

export interface RefreshTokenStore {
  put(r: RefreshTokenRecord): Promise<void>;
  get(hash: string): Promise<RefreshTokenRecord | undefined>;
  /** Marks `hash` rotated; false when it was already rotated or revoked (a replay). */
  rotate(hash: string, at: number): Promise<boolean>;
  revokeFamily(family: string, at: number): Promise<void>;
  revokeUser(userId: string, at: number): Promise<void>;
}
