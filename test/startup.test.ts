import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root, startHaven } from "./harness.ts";

/** Start-up: configuration checks, transport selection, operations endpoints, SIGTERM. */
function runToExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const dataDir = mkdtempSync(join(tmpdir(), "haven-startup-"));
    const p = spawn(process.execPath, ["src/main.ts"], { cwd: root, env: { ...process.env, PORT: "0", HAVEN_DATA_DIR: dataDir, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    p.stdout.on("data", (d) => { output += d; });
    p.stderr.on("data", (d) => { output += d; });
    const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
    p.on("exit", (code) => { clearTimeout(timer); rmSync(dataDir, { recursive: true, force: true }); resolve({ code, output }); });
  });
}

describe("start-up", () => {
  it.each([
    ["PORT", "abc"],
    ["HAVEN_TRANSPORT", "quic"],
    ["HAVEN_MAX_FRAME_BYTES", "1"],
    ["HAVEN_ACCESS_TOKEN_TTL_SECONDS", "86400"],
    ["HAVEN_TOKEN_SECRET_KEY", "not-a-key"],
    ["HAVEN_DISPATCH_FIRST_AIDER_MAX_RADIUS_M", "100"],
    ["HAVEN_MEDICAL_RETENTION_DAYS", "-1"],
    ["HAVEN_MEDICAL_RETENTION_SWEEP_MS", "10"],
    ["REDIS_URL", "http://127.0.0.1:6379"],
    ["HAVEN_PUBLIC_ADDRESS", "127.0.0.1:2567"], // without REDIS_URL it means nothing: refused rather than ignored
    ["HAVEN_MAP_TILE_URL", "https://tiles.example.org/'unsafe-inline'/{z}/{x}/{y}.png"], // it goes into the pages' Content-Security-Policy
  ])("a bad %s stops the process with a message naming it", async (name, value) => {
    const { code, output } = await runToExit({ [name]: value });
    expect(code).toBe(2);
    expect(output).toContain(name);
  });

  it("cluster mode on a wildcard HOST needs the address at which clients reach the node", async () => {
    const { code, output } = await runToExit({ REDIS_URL: "redis://127.0.0.1:6379", HOST: "0.0.0.0" });
    expect(code).toBe(2);
    expect(output).toContain("HAVEN_PUBLIC_ADDRESS");
  });

  it("production without a signing key refuses to start", async () => {
    const { code, output } = await runToExit({ HAVEN_ENV: "production", HAVEN_TOKEN_SECRET_KEY: "" });
    expect(code).toBe(2);
    expect(output).toContain("HAVEN_TOKEN_SECRET_KEY");
  });

  it("production without a medical master key refuses to start, naming it", async () => {
    const { TokenService } = await import("../src/auth/tokens.ts");
    const { code, output } = await runToExit({ HAVEN_ENV: "production", HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey(), HAVEN_MEDICAL_MASTER_KEY: "" });
    expect(code).toBe(2);
    expect(output).toContain("HAVEN_MEDICAL_MASTER_KEY");
  });

  it("auto transport: uWebSockets.js where it loads, otherwise ws with one loud log line saying why", async () => {
    const h = await startHaven({ HAVEN_TRANSPORT: "auto" });
    try {
      const fallbackLines = h.logs.join("").split("\n").filter((l) => l.includes("FALLING BACK TO THE ws TRANSPORT"));
      console.log(`[haven] HAVEN_TRANSPORT=auto chose ${h.transport} here`);
      if (h.transport === "ws") {
        expect(fallbackLines).toHaveLength(1);
        expect(JSON.parse(fallbackLines[0])).toMatchObject({ level: 50 });
        expect(JSON.parse(fallbackLines[0]).reason).toBeTruthy();
      } else {
        expect(h.transport).toBe("uws");
        expect(fallbackLines).toHaveLength(0);
      }
    } finally {
      await h.stop();
    }
  });

  it("HAVEN_TRANSPORT=uws where uWebSockets.js cannot load is fatal, and where it can, it serves", async () => {
    const probe = await startHaven({ HAVEN_TRANSPORT: "auto" });
    const uwsAvailable = probe.transport === "uws";
    await probe.stop();
    if (uwsAvailable) {
      const h = await startHaven({ HAVEN_TRANSPORT: "uws" });
      expect(h.transport).toBe("uws");
      await h.stop();
    } else {
      const { code, output } = await runToExit({ HAVEN_TRANSPORT: "uws" });
      expect(code).toBe(1);
      expect(output).toContain("uWebSockets.js cannot load");
    }
  });

  it("production with a Redis on another host and no credentials refuses to start, naming REDIS_URL", async () => {
    const { TokenService } = await import("../src/auth/tokens.ts");
    const production = {
      HAVEN_ENV: "production", HAVEN_TOKEN_SECRET_KEY: await TokenService.generateSecretKey(),
      HAVEN_MEDICAL_MASTER_KEY: Buffer.alloc(32, 3).toString("base64"), HAVEN_PUBLIC_ADDRESS: "10.0.0.4:2567",
    };
    const { code, output } = await runToExit({ ...production, REDIS_URL: "redis://10.0.0.9:6379" });
    expect(code).toBe(2);
    expect(output).toContain("REDIS_URL");
    expect(output).toContain("credentials");
  });

  it("/metrics answers this host only, or a scraper with the metrics token", async () => {
    const token = "metrics-token-0123456789abcdef";
    const h = await startHaven({ HAVEN_METRICS_TOKEN: token, HAVEN_TRUST_PROXY: "true" });
    try {
      expect((await h.http("GET", "/metrics")).status).toBe(401);
      expect((await h.http("GET", "/metrics", undefined, "wrong-token-0123456789abcdef")).status).toBe(401);
      const scraped = await h.http("GET", "/metrics", undefined, token);
      expect(scraped.status).toBe(200);
      expect(scraped.body).toContain("haven_info");
    } finally {
      await h.stop();
    }
    const open = await startHaven({ HAVEN_TRUST_PROXY: "true" });
    try {
      expect((await open.http("GET", "/metrics")).status).toBe(200);
      // a caller from elsewhere (as a trusted proxy reports it) is refused without a token
      const remote = await open.http("GET", "/metrics", undefined, undefined, { "x-forwarded-for": "203.0.113.9" });
      expect(remote.status).toBe(403);
    } finally {
      await open.stop();
    }
  });

  it("serves /health, /ready and /metrics, and exits 0 on SIGTERM", async () => {
    const h = await startHaven();
    const health = await h.http("GET", "/health");
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: "ok", transport: h.transport });
    expect((await h.http("GET", "/ready")).body).toEqual({ ready: true });
    const metrics = await h.http("GET", "/metrics");
    expect(metrics.body).toContain(`haven_info{transport="${h.transport}"} 1`);
    expect(metrics.body).toMatch(/haven_rooms 8\b/); // one wallboard room per hospital
    const exited = new Promise<number | null>((r) => h.proc.once("exit", (code) => r(code)));
    h.proc.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});
