import { rt } from "../runtime.ts";
import type { HttpAnswer } from "../protocol.ts";

/**
 * The stand-in's `k6/http`: synchronous requests, as k6 makes them (the VU blocks, its socket
 * events wait), with k6's response object and its http_* metrics.
 */

interface ExpectedStatuses { __expected: number[]; __ranges: { min: number; max: number }[] }

interface Params {
  headers?: Record<string, string>;
  tags?: Record<string, string>;
  timeout?: string | number;
  responseCallback?: ExpectedStatuses | null;
  responseType?: "text" | "binary" | "none";
}

let defaultCallback: ExpectedStatuses | null = { __expected: [], __ranges: [{ min: 200, max: 399 }] };

function toMs(t: string | number | undefined): number {
  if (t === undefined) return 60_000;
  if (typeof t === "number") return t;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(t.trim());
  if (!m) throw new Error(`invalid timeout "${t}"`);
  const n = Number(m[1]);
  return m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : m[2] === "h" ? n * 3_600_000 : n * 1000;
}

function formEncode(o: Record<string, unknown>): string {
  return Object.entries(o).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join("&");
}

export class Response {
  status: number;
  status_text: string;
  body: string | null;
  headers: Record<string, string>;
  timings: HttpAnswer["timings"];
  url: string;
  error: string;
  error_code: number;
  request: { method: string; url: string; headers: Record<string, string>; body: unknown };

  constructor(a: HttpAnswer, request: Response["request"], responseType: string) {
    this.status = a.status;
    this.status_text = a.statusText;
    this.body = responseType === "none" ? null : a.body;
    this.headers = a.headers;
    this.timings = a.timings;
    this.url = a.url;
    this.error = a.error;
    this.error_code = a.errorCode;
    this.request = request;
  }

  json(selector?: string): unknown {
    if (this.body === null) throw new Error("the response has no body");
    let v: any = JSON.parse(this.body);
    if (selector) for (const part of selector.split(".")) v = v?.[part];
    return v;
  }
}

export function request(method: string, url: string, body?: unknown, params?: Params | null): Response {
  const p: Params = params ?? {};
  const headers: Record<string, string> = { "User-Agent": "k6-stand-in (Haven)", ...(p.headers ?? {}) };
  let payload: string | ArrayBuffer | null = null;
  if (body === null || body === undefined) payload = null;
  else if (typeof body === "string") payload = body;
  else if (body instanceof ArrayBuffer) payload = body;
  else if (typeof body === "object") {
    payload = formEncode(body as Record<string, unknown>);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) headers["Content-Type"] = "application/x-www-form-urlencoded";
  } else payload = String(body);
  const cb = p.responseCallback === undefined ? defaultCallback : p.responseCallback;
  const expected: number[] = [];
  if (cb) {
    expected.push(...cb.__expected);
    for (const r of cb.__ranges) for (let s = r.min; s <= r.max; s++) expected.push(s);
  }
  const tags: Record<string, string> = { ...rt.tags, ...(p.tags ?? {}) };
  tags.name ??= url;
  const answer = rt.http({ method: method.toUpperCase(), url, body: payload, headers, timeoutMs: toMs(p.timeout), tags, expected: cb ? expected : [] });
  return new Response(answer, { method: method.toUpperCase(), url, headers, body: payload }, p.responseType ?? "text");
}

export const get = (url: string, params?: Params) => request("GET", url, null, params);
export const head = (url: string, params?: Params) => request("HEAD", url, null, params);
export const post = (url: string, body?: unknown, params?: Params) => request("POST", url, body, params);
export const put = (url: string, body?: unknown, params?: Params) => request("PUT", url, body, params);
export const patch = (url: string, body?: unknown, params?: Params) => request("PATCH", url, body, params);
export const del = (url: string, body?: unknown, params?: Params) => request("DELETE", url, body, params);
export const options = (url: string, body?: unknown, params?: Params) => request("OPTIONS", url, body, params);

export function expectedStatuses(...statuses: (number | { min: number; max: number })[]): ExpectedStatuses {
  const out: ExpectedStatuses = { __expected: [], __ranges: [] };
  for (const s of statuses) {
    if (typeof s === "number") out.__expected.push(s);
    else if (s && typeof s.min === "number" && typeof s.max === "number") out.__ranges.push({ min: s.min, max: s.max });
    else throw new Error("expectedStatuses takes status codes or { min, max } ranges");
  }
  return out;
}

export function setResponseCallback(cb: ExpectedStatuses | null): void {
  defaultCallback = cb;
}

export default { request, get, head, post, put, patch, del, options, expectedStatuses, setResponseCallback, Response };
