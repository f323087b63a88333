import { randomUUID } from "node:crypto";
import { PublicProtocol } from "paseto";
import {
  ExportSecretKeyFactory, GenerateKeyPairFactory, GetPublicKeyFactory, ImportSecretKeyFactory, SignFactory, VerifyFactory,
} from "paseto/v4/public";
import { HavenError } from "../protocol/errors.ts";

export const ROLES = ["patient", "first_aider", "ambulance_crew", "hospital_staff", "hospital_admin", "ops_admin"] as const;
export type Role = (typeof ROLES)[number];

/** What a verified access token says about its bearer. */
export interface Principal {
  /** User id, or `bypass:<uuid>` for an emergency-bypass bearer. */
  sub: string;
  role: Role;
  /** Hospital of hospital_staff / hospital_admin. */
  hospitalId?: string;
  /** Set on emergency-bypass tokens: good for raising and following one emergency only. */
  bypass?: true;
  /**
   * On a renewed emergency-bypass token: the one emergency it follows (it raises none).
   */
  emergencyId?: string;
  jti: string;
}

const v4 = new PublicProtocol(
  GenerateKeyPairFactory, SignFactory, VerifyFactory, ImportSecretKeyFactory, ExportSecretKeyFactory, GetPublicKeyFactory,
);

type SecretKey = Awaited<ReturnType<typeof v4.ImportSecretKey>>;
type PublicKey = Awaited<ReturnType<typeof v4.GetPublicKey>>;

const AUDIENCE = "haven";
const CLOCK_TOLERANCE_SECONDS = 5;
/** How many verified tokens are remembered, and for how long at most. */
const VERIFIED_CACHE_SIZE = 20_000;
const VERIFIED_CACHE_MS = 60_000;

/**
 * PASETO v4.public (Ed25519) access tokens. The implicit assertion binds every token to this
 * service and environment, so a token minted elsewhere does not verify here even with the same key.
 */
export class TokenService {
  /** Signed with a development key (not configured): /health says so. */
  readonly development: boolean;
  private readonly secretKey: SecretKey;
  private readonly publicKey: PublicKey;
  private readonly issuer: string;
  private readonly accessTtlSeconds: number;
  private readonly assertion: Uint8Array;
  private readonly footer: Uint8Array;

  private constructor(o: { secretKey: SecretKey; publicKey: PublicKey; issuer: string; accessTtlSeconds: number; environment: string; development: boolean; keyId: string }) {
    this.secretKey = o.secretKey;
    this.publicKey = o.publicKey;
    this.issuer = o.issuer;
    this.accessTtlSeconds = o.accessTtlSeconds;
    this.development = o.development;
    this.assertion = new TextEncoder().encode(`haven:ws:v1:${o.environment}`);
    this.footer = new TextEncoder().encode(JSON.stringify({ kid: o.keyId }));
  }

  static async create(o: { secretKey: string; issuer: string; accessTtlSeconds: number; environment: string; development: boolean }): Promise<TokenService> {
    const secretKey = await v4.ImportSecretKey(o.secretKey as `k4.secret.${string}`);
    const publicKey = await v4.GetPublicKey(secretKey);
    return new TokenService({ secretKey, publicKey, issuer: o.issuer, accessTtlSeconds: o.accessTtlSeconds, environment: o.environment, development: o.development, keyId: "k1" });
  }

  /** A fresh PASERK k4.secret, for operators setting HAVEN_TOKEN_SECRET_KEY. */
  static async generateSecretKey(): Promise<string> {
    const { secretKey } = await v4.GenerateKeyPair({ extractable: true });
    return String(await v4.ExportSecretKey(secretKey));
  }

  async issue(p: Omit<Principal, "jti">, ttlSeconds = this.accessTtlSeconds): Promise<{ token: string; expiresAt: number; jti: string }> {
    const jti = randomUUID();
    const claims: Record<string, unknown> = { sub: p.sub, role: p.role, aud: AUDIENCE, iss: this.issuer, jti };
    if (p.hospitalId !== undefined) claims.hid = p.hospitalId;
    if (p.bypass) claims.bypass = true;
    if (p.emergencyId !== undefined) claims.eid = p.emergencyId;
    const ttl = Math.min(ttlSeconds, this.accessTtlSeconds);
    const token = await v4.Sign(this.secretKey, claims as never, { expiresIn: ttl, implicitAssertion: this.assertion, footer: this.footer });
    return { token, expiresAt: Date.now() + ttl * 1000, jti };
  }

  /**
   * Tokens verified lately, until they expire and for a minute at most: a join presents the same
   * token to matchmaking, to the socket upgrade and to the room, and a signature check costs far
   * more than a map lookup. Bounded: the oldest entry goes when it is full.
   */
  private readonly verified = new Map<string, { principal: Readonly<Principal>; until: number }>();

  /** Verifies signature, audience, issuer, expiry and age; throws TOKEN_INVALID or TOKEN_EXPIRED. */
  async verify(token: unknown): Promise<Principal> {
    if (typeof token !== "string" || token.length === 0 || token.length > 2048) {
      throw new HavenError("UNAUTHENTICATED", "a bearer token is required");
    }
    const now = Date.now();
    const known = this.verified.get(token);
    if (known && now < known.until) return { ...known.principal };
    if (known) this.verified.delete(token);
    const { principal, expiresAt } = await this.verifySignature(token);
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { principal: Object.freeze({ ...principal }), until: Math.min(expiresAt, now + VERIFIED_CACHE_MS) });
    return principal;
  }

  private async verifySignature(token: string): Promise<{ principal: Principal; expiresAt: number }> {
    let claims: Record<string, unknown>;
    try {
      ({ claims } = await v4.Verify(this.publicKey, token, {
        audience: AUDIENCE,
        issuer: this.issuer,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        maxTokenAge: this.accessTtlSeconds + CLOCK_TOLERANCE_SECONDS,
        implicitAssertion: this.assertion,
        footer: this.footer,
        requiredClaims: ["sub", "role", "jti", "exp", "iat"],
      }) as { claims: Record<string, unknown> });
    } catch (error) {
      const message = (error as Error).message ?? "";
      if (/expired|too old|max.*age/i.test(message)) throw new HavenError("TOKEN_EXPIRED", "the token has expired; refresh it");
      throw new HavenError("TOKEN_INVALID", "the token is not valid");
    }
    const role = claims.role as Role;
    if (typeof claims.sub !== "string" || !ROLES.includes(role) || typeof claims.jti !== "string") {
      throw new HavenError("TOKEN_INVALID", "the token is not valid");
    }
    const principal: Principal = { sub: claims.sub, role, jti: claims.jti };
    // good until the earlier of its expiry and its maximum age (as Verify checks them)
    const expiresAt = Math.min(Date.parse(String(claims.exp)), Date.parse(String(claims.iat)) + this.accessTtlSeconds * 1000);
    if (!Number.isFinite(expiresAt)) throw new HavenError("TOKEN_INVALID", "the token is not valid");
    if (typeof claims.hid === "string") principal.hospitalId = claims.hid;
    if (claims.bypass === true) principal.bypass = true;
    if (typeof claims.eid === "string") {
      // an emergency-scoped token is a renewed bypass token and nothing else
      if (principal.bypass !== true || role !== "patient") throw new HavenError("TOKEN_INVALID", "the token is not valid");
      principal.emergencyId = claims.eid;
    }
    return { principal, expiresAt };
  }
}
