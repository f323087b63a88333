import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import fc from "fast-check";
import { startHaven, type Haven } from "./harness.ts";
import { ensurePagesBuilt } from "./browser.ts";

/** The wallboard and operations pages as served: types, the Content-Security-Policy, nothing else reachable. */
let h: Haven;
beforeAll(async () => {
  ensurePagesBuilt();
  h = await startHaven({ HAVEN_MAP_TILE_URL: "https://{s}.tiles.example.org/{z}/{x}/{y}.png", HAVEN_MAP_TILE_ATTRIBUTION: "© the tile makers" });
});
afterAll(async () => { await h?.stop(); });

describe("the pages", () => {
  it("serves /wallboard and /ops as HTML under a strict Content-Security-Policy, and their assets with their types", async () => {
    for (const page of ["/wallboard", "/ops"]) {
      const r = await fetch(h.url + page);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
      const csp = r.headers.get("content-security-policy")!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain("unsafe");
      expect(csp).toContain("img-src 'self' data: https://*.tiles.example.org");
      expect(r.headers.get("x-frame-options")).toBe("DENY");
      const body = await r.text();
      const scripts = [...body.matchAll(/src="(\/web\/assets\/[^"]+\.js)"/g)].map((m) => m[1]);
      expect(scripts.length).toBeGreaterThan(0);
      expect(body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
      const js = await fetch(h.url + scripts[0]);
      expect(js.status).toBe(200);
      expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      expect(js.headers.get("cache-control")).toContain("immutable");
    }
    const css = readdirSync(new URL("../web/dist/assets", import.meta.url)).find((f) => f.endsWith(".css"))!;
    const r = await fetch(`${h.url}/web/assets/${css}`);
    expect(r.headers.get("content-type")).toBe("text/css; charset=utf-8");
  });

  it("tells the pages the tile server it is configured with", async () => {
    expect((await h.http("GET", "/web/config")).body).toEqual({ tileUrl: "https://{s}.tiles.example.org/{z}/{x}/{y}.png", tileAttribution: "© the tile makers" });
  });

  it("serves nothing outside the built files: no traversal, no listing, no sources", async () => {
    const { request } = await import("node:http");
    // raw paths, so that no client normalises the dots away
    const raw = (path: string) => new Promise<number>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: h.port, path, method: "GET" }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on("error", reject);
      req.end();
    });
    for (const path of ["/web/", "/web/assets/", "/web/../package.json", "/web/assets/../../src/main.ts", "/web/%2e%2e/package.json",
      "/web/wallboard/index.html", "/web/shared/session.js", "/web/vite.config.js", "/wallboard/", "/web//etc/passwd", "/web/assets/..%2f..%2fbuild.js"]) {
      expect(await raw(path), path).toBe(404);
    }
    // and any path under /web/ that is not one of the built files, whatever its bytes
    const built = new Set(readdirSync(new URL("../web/dist/assets", import.meta.url)).map((f) => `/web/assets/${f}`));
    const segment = fc.oneof(fc.constantFrom("..", ".", "", "%2e%2e", "%2f", "assets", "dist", "wallboard", "index.html", "..%5c", "%00"), fc.string({ unit: fc.constantFrom(..."azAZ09.-_~%/\\:".split("")), maxLength: 12 }));
    await fc.assert(fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 5 }), async (segs) => {
      const path = `/web/${segs.join("/")}`;
      if (built.has(path) || path === "/web/config") return;
      expect(await raw(encodeURI(path).replaceAll("%25", "%")), path).toBe(404);
    }), { numRuns: 200 });
  });
});
