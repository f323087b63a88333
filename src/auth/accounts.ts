import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { RefreshTokenStore, ResponderStore, User, UserStore } from "../../persistence/stores.ts";
import type { HospitalDirectory } from "../domain/hospitals.ts";
import { ExpiringMap } from "../limits/bounded.ts";
import { HavenError } from "../protocol/errors.ts";
import { DUMMY_HASH_PROMISE, hashPassword, verifyPassword } from "./passwords.ts";
import type { Principal, Role, TokenService } from "./tokens.ts";
import { actsForHospital } from "../domain/identity.ts";

export interface Session {
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken: string;
  refreshTokenExpiresAt: number;
  user: { id: string; email: string; name: string; role: Role; hospitalId?: string };
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * Accounts and sessions: registration by role, argon2id passwords, short-lived PASETO access
 * tokens, rotating refresh tokens (a replayed one revokes its whole family) and emergency bypass.
 */
export class Accounts {
  private readonly users: UserStore;
  private readonly responders: ResponderStore;
  private readonly refreshTokens: RefreshTokenStore;
  private readonly tokens: TokenService;
  private readonly hospitals: HospitalDirectory;
  private readonly refreshTtlMs: number;
  private readonly bypassTtlSeconds: number;
  /**
   * The name a bypass caller gave, until their token could raise its emergency (its first
   * lifetime); at most `maxBypassNames` (the oldest go first).
   */
  private readonly bypassNames: ExpiringMap<string>;

  constructor(o: {
    users: UserStore; responders: ResponderStore; refreshTokens: RefreshTokenStore; tokens: TokenService; hospitals: HospitalDirectory;
    refreshTtlSeconds: number; bypassTtlSeconds: number; maxBypassNames: number;
  }) {
    this.users = o.users;
    this.responders = o.responders;
    this.refreshTokens = o.refreshTokens;
    this.tokens = o.tokens;
    this.hospitals = o.hospitals;
    this.refreshTtlMs = o.refreshTtlSeconds * 1000;
    this.bypassTtlSeconds = o.bypassTtlSeconds;
    this.bypassNames = new ExpiringMap((o.bypassTtlSeconds + 60) * 1000, o.maxBypassNames);
  }

  /** Who may create an account of each role: self-service for the public, staff by their admins. */
  async register(body: { email: string; password: string; name: string; phone?: string; role: Role; hospitalId?: string }, caller?: Principal): Promise<User> {
    const self = body.role === "patient" || body.role === "first_aider" || body.role === "ambulance_crew";
    if (!self) {
      const allowed = caller?.role === "ops_admin"
        || (caller?.role === "hospital_admin" && body.role === "hospital_staff" && caller.hospitalId === body.hospitalId);
      if (!caller) throw new HavenError("UNAUTHENTICATED", `a ${body.role} account is created by an administrator`);
      if (!allowed) throw new HavenError("FORBIDDEN", `you may not create a ${body.role} account`);
    }
    const hospitalRole = actsForHospital(body.role);
    if (hospitalRole && (!body.hospitalId || !this.hospitals.get(body.hospitalId))) {
      throw new HavenError("HOSPITAL_NOT_FOUND", "a hospital account needs the id of a known hospital");
    }
    if (!hospitalRole && body.hospitalId !== undefined) {
      throw new HavenError("INVALID_PAYLOAD", "hospitalId belongs to hospital accounts only");
    }
    const user: User = {
      id: randomUUID(), email: body.email.toLowerCase(), name: body.name, phone: body.phone, role: body.role,
      passwordHash: await hashPassword(body.password), hospitalId: hospitalRole ? body.hospitalId : undefined, createdAt: Date.now(),
    };
    try {
      await this.users.create(user);
    } catch (error) {
      if ((error as { duplicate?: boolean }).duplicate) throw new HavenError("EMAIL_TAKEN", "an account with this email exists");
      throw error;
    }
    if (body.role === "first_aider" || body.role === "ambulance_crew") {
      await this.responders.upsert({ userId: user.id, kind: body.role, verified: false });
    }
    return user;
  }

  async login(email: string, password: string): Promise<Session> {
    const user = await this.users.byEmail(email);
    const ok = await verifyPassword(password, user?.passwordHash ?? await DUMMY_HASH_PROMISE);
    if (!user || !ok) throw new HavenError("INVALID_CREDENTIALS", "email or password is wrong");
    return this.startSession(user, randomUUID());
  }

  /** Rotates a refresh token. Presenting one that was already rotated revokes the whole family. */
  async refresh(refreshToken: string): Promise<Session> {
    const hash = sha256(refreshToken);
    const record = await this.refreshTokens.get(hash);
    const now = Date.now();
    if (!record || record.revokedAt !== undefined || record.expiresAt <= now) {
      throw new HavenError("REFRESH_TOKEN_INVALID", "the refresh token is not valid; log in again");
    }
    if (!(await this.refreshTokens.rotate(hash, now))) {
      await this.refreshTokens.revokeFamily(record.family, now);
      throw new HavenError("REFRESH_TOKEN_INVALID", "the refresh token was already used; every session of this login is revoked");
    }
    const user = await this.users.byId(record.userId);
    if (!user) throw new HavenError("REFRESH_TOKEN_INVALID", "the account no longer exists");
    return this.startSession(user, record.family);
  }

  async logout(refreshToken: string): Promise<void> {
    const record = await this.refreshTokens.get(sha256(refreshToken));
    if (record) await this.refreshTokens.revokeFamily(record.family, Date.now());
  }

  private async startSession(user: User, family: string): Promise<Session> {
    const access = await this.tokens.issue({ sub: user.id, role: user.role, hospitalId: user.hospitalId });
    const refreshToken = randomBytes(32).toString("base64url");
    const refreshTokenExpiresAt = Date.now() + this.refreshTtlMs;
    await this.refreshTokens.put({ hash: sha256(refreshToken), userId: user.id, family, expiresAt: refreshTokenExpiresAt });
    return {
      accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken, refreshTokenExpiresAt,
      user: { id: user.id, email: user.email, name: user.name, role: user.role, hospitalId: user.hospitalId },
    };
  }

  /**
   * A token for a person with no account: it raises one emergency and follows it, nothing more.
   * Limited per client address and per device (by the API); the emergency it raises is flagged
   * as bypass.
   */
  async emergencyBypass(body: { deviceId: string; phone?: string; name?: string }): Promise<{ accessToken: string; accessTokenExpiresAt: number; subject: string }> {
    const sub = `bypass:${randomUUID()}`;
    this.bypassNames.set(sub, body.name ?? "Unregistered caller");
    const t = await this.tokens.issue({ sub, role: "patient", bypass: true }, this.bypassTtlSeconds);
    return { accessToken: t.token, accessTokenExpiresAt: t.expiresAt, subject: sub };
  }

  /**
   * A new token for the caller who raised `emergencyId` with an emergency-bypass token: the same
   * subject, bound to that emergency (it raises none). The caller checks that the emergency is
   * open and theirs.
   */
  async renewBypass(p: Principal, emergencyId: string): Promise<{ accessToken: string; accessTokenExpiresAt: number; subject: string; emergencyId: string }> {
    const t = await this.tokens.issue({ sub: p.sub, role: "patient", bypass: true, emergencyId }, this.bypassTtlSeconds);
    return { accessToken: t.token, accessTokenExpiresAt: t.expiresAt, subject: p.sub, emergencyId };
  }

  async displayName(p: Principal): Promise<string> {
    if (p.bypass) return this.bypassNames.get(p.sub) ?? "Unregistered caller";
    return (await this.users.byId(p.sub))?.name ?? "Unknown";
  }

  async ensureBootstrapOps(email: string, password: string): Promise<void> {
    if (await this.users.byEmail(email)) return;
    await this.users.create({
      id: randomUUID(), email: email.toLowerCase(), name: "Operations", role: "ops_admin",
      passwordHash: await hashPassword(password), createdAt: Date.now(),
    });
  }

  async setVerified(userId: string, verified: boolean, by: Principal): Promise<{ userId: string; verified: boolean }> {
    const r = await this.responders.get(userId);
    if (!r) throw new HavenError("NOT_FOUND", "no such responder");
    await this.responders.upsert({ ...r, verified, verifiedBy: by.sub, verifiedAt: Date.now() });
    return { userId, verified };
  }
}
