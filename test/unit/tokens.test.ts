import { afterEach, describe, expect, it, vi } from "vitest";
import { TokenService } from "../../src/auth/tokens.ts";

async function service(accessTtlSeconds = 900) {
  return TokenService.create({ secretKey: await TokenService.generateSecretKey(), issuer: "haven-test", accessTtlSeconds, environment: "test", development: true });
}

describe("token verification", () => {
  it("answers a token verified before without checking it again, with a principal of its own each time", async () => {
    const tokens = await service();
    const { token } = await tokens.issue({ sub: "u-1", role: "hospital_staff", hospitalId: "knh" });
    const first = await tokens.verify(token);
    const second = await tokens.verify(token);
    expect(second).toEqual(first);
    expect(first).toMatchObject({ sub: "u-1", role: "hospital_staff", hospitalId: "knh" });
    (second as { role: string }).role = "ops_admin"; // a caller's change never reaches the next caller
    expect((await tokens.verify(token)).role).toBe("hospital_staff");
  });

  it("never remembers a refusal: a token altered after a good one was verified is refused every time", async () => {
    const tokens = await service();
    const { token } = await tokens.issue({ sub: "u-2", role: "patient" });
    await tokens.verify(token);
    const altered = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
    for (let i = 0; i < 2; i++) await expect(tokens.verify(altered)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
    const other = await service();
    await expect(other.verify(token)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
  });

  afterEach(() => { vi.useRealTimers(); });

  it("stops accepting a remembered token once it has expired", async () => {
    const tokens = await service(60);
    const { token } = await tokens.issue({ sub: "u-3", role: "patient" });
    await tokens.verify(token);
    // the clock (the cache's and the signature check's) moves past its expiry and the clock tolerance
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 70_000);
    await expect(tokens.verify(token)).rejects.toMatchObject({ code: "TOKEN_EXPIRED" });
  });
});
