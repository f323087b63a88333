/**
 * Access tokens for seeded users, minted with the server tree's own TokenService
 * (src/auth/tokens.ts) under the key, issuer and environment the benchmark starts the server with.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { HavenKeys } from "./servers.ts";
import type { Tree } from "./trees.ts";

export interface Minter {
  mint(p: { sub: string; role: string; hospitalId?: string }): Promise<string>;
}

interface TokenServiceLike {
  issue(p: { sub: string; role: string; hospitalId?: string }): Promise<{ token: string }>;
}

async function tokenModule(tree: Tree): Promise<{ TokenService: { create(o: object): Promise<TokenServiceLike>; generateSecretKey(): Promise<string> } }> {
  return await import(pathToFileURL(join(tree.hostDir, "src/auth/tokens.ts")).href);
}

/** A fresh PASERK k4.secret and a fresh 32-byte medical master key for this run. */
export async function newKeys(tree: Tree): Promise<HavenKeys> {
  const { TokenService } = await tokenModule(tree);
  return { tokenSecretKey: await TokenService.generateSecretKey(), medicalMasterKey: randomBytes(32).toString("base64") };
}

/** The server's settings: HAVEN_ENV=production, issuer "haven", 900 s tokens (the defaults the benchmark keeps). */
export async function minter(tree: Tree, keys: HavenKeys): Promise<Minter> {
  const { TokenService } = await tokenModule(tree);
  const service = await TokenService.create({ secretKey: keys.tokenSecretKey, issuer: "haven", accessTtlSeconds: 900, environment: "production", development: false });
  return { mint: async (p) => (await service.issue(p)).token };
}
