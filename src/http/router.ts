import { HavenError, asHavenError } from "../protocol/errors.ts";
import { services, servicesReady } from "../services.ts";

/**
 * Haven's HTTP surface, independent of the transport: the uWebSockets.js and node:http adapters
 * (adapters.ts) turn a request into an `HttpRequest` with its body already read under the size
 * cap, and write the `HttpResponse` back.
 */
export interface HttpRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body?: Buffer;
  ip: string;
}

export interface HttpResponse {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** Sent as is (text/plain unless a content-type header says otherwise). */
  text?: string;
  /** Sent as is, with the content-type header the handler sets (static files). */
  bytes?: Buffer;
}

export type RouteHandler = (req: HttpRequest, params: Record<string, string>) => Promise<HttpResponse> | HttpResponse;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: RouteHandler;
}

export class Router {
  private readonly routes: Route[] = [];
  private readonly corsOrigins: Set<string>;

  constructor(corsOrigins: readonly string[]) {
    this.corsOrigins = new Set(corsOrigins);
  }

  /** `path` segments written `:name` match one URL segment of [A-Za-z0-9_-]. */
  on(method: string, path: string, handler: RouteHandler): this {
    const keys: string[] = [];
    const source = path.split("/").map((seg) => {
      if (!seg.startsWith(":")) return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      keys.push(seg.slice(1));
      return "([A-Za-z0-9_-]{1,128})";
    }).join("/");
    this.routes.push({ method, pattern: new RegExp(`^${source}$`), keys, handler });
    return this;
  }

  private gate?: (req: HttpRequest) => HttpResponse | undefined;

  /** Runs before every route: an answer from `gate` is sent instead of the route's. */
  before(gate: (req: HttpRequest) => HttpResponse | undefined): this {
    this.gate = gate;
    return this;
  }

  async handle(req: HttpRequest): Promise<HttpResponse> {
    const cors = this.corsHeaders(req);
    if (req.method === "OPTIONS") {
      return { status: 204, headers: cors };
    }
    let response: HttpResponse;
    try {
      response = this.gate?.(req) ?? await this.dispatch(req);
    } catch (error) {
      const e = asHavenError(error);
      // what went wrong inside stays here: logged, never sent
      if (e.cause !== undefined && servicesReady()) services().log.warn({ err: e.cause, path: req.path, code: e.code }, e.message);
      response = { status: e.status, body: e.toJSON() };
      if (e.retryAfterSeconds !== undefined) response.headers = { "retry-after": String(e.retryAfterSeconds) };
    }
    response.headers = { ...cors, ...response.headers };
    return response;
  }

  private async dispatch(req: HttpRequest): Promise<HttpResponse> {
    let pathMatched = false;
    for (const route of this.routes) {
      const m = route.pattern.exec(req.path);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== req.method && !(route.method === "GET" && req.method === "HEAD")) continue;
      const params: Record<string, string> = Object.create(null);
      route.keys.forEach((k, i) => { params[k] = m[i + 1]; });
      return route.handler(req, params);
    }
    if (pathMatched) throw new HavenError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${req.path}`);
    throw new HavenError("NOT_FOUND", "no such endpoint");
  }

  private corsHeaders(req: HttpRequest): Record<string, string> {
    const origin = req.headers.origin;
    if (!origin || !this.corsOrigins.has(origin)) return {};
    return {
      "access-control-allow-origin": origin,
      "access-control-allow-methods": "GET,POST,PUT,DELETE,OPTIONS",
      "access-control-allow-headers": "authorization,content-type,x-haven-device",
      "access-control-expose-headers": "retry-after",
      "access-control-max-age": "600",
      vary: "origin",
    };
  }
}

/** Parses a JSON body; a missing body is `{}`. Bodies must be application/json. */
export function jsonBody(req: HttpRequest): unknown {
  if (!req.body || req.body.length === 0) return {};
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new HavenError("UNSUPPORTED_MEDIA_TYPE", "send the body as application/json");
  }
  try {
    return JSON.parse(req.body.toString("utf8"));
  } catch {
    throw new HavenError("INVALID_PAYLOAD", "the body is not valid JSON");
  }
}

export function bearer(req: HttpRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m?.[1];
}

export function serialize(res: HttpResponse): { status: number; headers: Record<string, string>; payload: Buffer } {
  const headers: Record<string, string> = { "cache-control": "no-store", "x-content-type-options": "nosniff", ...res.headers };
  let payload: Buffer;
  if (res.bytes !== undefined) {
    headers["content-type"] ??= "application/octet-stream";
    payload = res.bytes;
  } else if (res.text !== undefined) {
    headers["content-type"] ??= "text/plain; charset=utf-8";
    payload = Buffer.from(res.text);
  } else if (res.body !== undefined) {
    headers["content-type"] = "application/json; charset=utf-8";
    payload = Buffer.from(JSON.stringify(res.body));
  } else {
    payload = Buffer.alloc(0);
  }
  return { status: res.status, headers, payload };
}
