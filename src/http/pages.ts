import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import type { WebConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { HttpResponse, Router } from "./router.ts";

/**
 * The hospital wallboard and operations pages: static files built by Vite into `web.dir`
 * (`npm run build:web`). Only the files found there at start are served, each on its own exact
 * route, so no request path can reach anything else (no `..`, no symbolic links, no listing).
 *
 *   GET /wallboard, GET /ops   the pages
 *   GET /web/<file>            their scripts, styles and images (content-hashed names)
 *   GET /web/config            what the pages need to know about this server (map tiles)
 */

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".woff2": "font/woff2",
};

const PAGES = { "/wallboard": "wallboard/index.html", "/ops": "ops/index.html" } as const;

/** Where map tiles come from, as a CSP source: the template's scheme and host (`{s}` as `*`). */
export function tileSource(tileUrl: string | undefined): string {
  if (tileUrl === undefined) return "";
  const m = /^(https?:\/\/[^/]+)\//.exec(tileUrl);
  return m ? ` ${m[1].replaceAll("{s}", "*")}` : "";
}

/**
 * Scripts and styles from this origin only (no inline code, no eval), sockets and fetches to this
 * origin only, images from here, `data:` (Leaflet's stylesheet) and the tile server if one is set;
 * nothing may frame the pages.
 */
export function contentSecurityPolicy(web: WebConfig): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data:${tileSource(web.tileUrl)}`,
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isDirectory()) out.push(...filesUnder(path));
    else if (st.isFile()) out.push(path);
  }
  return out;
}

export function mountPages(router: Router, web: WebConfig, log: Logger): void {
  const security = {
    "content-security-policy": contentSecurityPolicy(web),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
  };
  router.on("GET", "/web/config", () => ({
    status: 200,
    headers: security,
    body: { tileUrl: web.tileUrl ?? "", tileAttribution: web.tileAttribution },
  }));

  const built = existsSync(join(web.dir, PAGES["/wallboard"]));
  if (!built) {
    log.warn({ dir: web.dir }, "the wallboard and operations pages are not built: run `npm run build:web`");
    for (const path of Object.keys(PAGES)) {
      router.on("GET", path, () => ({ status: 503, headers: security, text: "The pages are not built on this server: run `npm run build:web`, then restart." }));
    }
    return;
  }
  const file = (path: string, cache: string): HttpResponse => {
    const bytes = readFileSync(path);
    return { status: 200, bytes, headers: { ...security, "content-type": TYPES[extname(path)] ?? "application/octet-stream", "cache-control": cache } };
  };
  for (const [route, page] of Object.entries(PAGES)) {
    const answer = file(join(web.dir, page), "no-cache");
    router.on("GET", route, () => answer);
  }
  let count = 0;
  for (const path of filesUnder(web.dir)) {
    if (extname(path) === ".html") continue;
    const rel = relative(web.dir, path).split(sep).join("/");
    // Vite names what it emits by content hash: a name never changes meaning
    const answer = file(path, rel.startsWith("assets/") ? "public, max-age=31536000, immutable" : "no-cache");
    router.on("GET", `/web/${rel}`, () => answer);
    count += 1;
  }
  log.info({ dir: web.dir, files: count }, "wallboard and operations pages served at /wallboard and /ops");
}
