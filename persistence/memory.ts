import type { RefreshTokenRecord, RefreshTokenStore, Responder, ResponderStore, User, UserStore } from "./stores.ts";

export class MemoryUserStore implements UserStore {
  private readonly byIdMap = new Map<string, User>();
  private readonly byEmailMap = new Map<string, User>();

  async create(user: User): Promise<void> {
    const email = user.email.toLowerCase();
    if (this.byEmailMap.has(email)) throw Object.assign(new Error("email taken"), { duplicate: true });
    this.byIdMap.set(user.id, user);
    this.byEmailMap.set(email, user);
  }
  async byEmail(email: string): Promise<User | undefined> { return this.byEmailMap.get(email.toLowerCase()); }
  async byId(id: string): Promise<User | undefined> { return this.byIdMap.get(id); }
}

export class MemoryResponderStore implements ResponderStore {
  private readonly map = new Map<string, Responder>();
  async upsert(r: Responder): Promise<void> { this.map.set(r.userId, { ...r }); }
  async get(userId: string): Promise<Responder | undefined> { return this.map.get(userId); }
}

export class MemoryRefreshTokenStore implements RefreshTokenStore {
  private readonly map = new Map<string, RefreshTokenRecord>();
  async put(r: RefreshTokenRecord): Promise<void> { this.map.set(r.hash, { ...r }); }
  async get(hash: string): Promise<RefreshTokenRecord | undefined> { return this.map.get(hash); }
  async rotate(hash: string, at: number): Promise<boolean> {
    const r = this.map.get(hash);
    if (!r || r.rotatedAt !== undefined || r.revokedAt !== undefined) return false;
    r.rotatedAt = at;
    return true;
  }
  async revokeFamily(family: string, at: number): Promise<void> {
    for (const r of this.map.values()) if (r.family === family && r.revokedAt === undefined) r.revokedAt = at;
  }
  async revokeUser(userId: string, at: number): Promise<void> {
    for (const r of this.map.values()) if (r.userId === userId && r.revokedAt === undefined) r.revokedAt = at;
  }
}
