/**
 * Messages between the stand-in runner's main thread (which does all network I/O, runs the
 * executors and keeps the metrics, like k6's Go side) and its VU workers (one JavaScript
 * runtime per VU, like k6's). Shared by k6.ts, host.ts and vu.ts.
 */

import type { MessagePort } from "node:worker_threads";

export type Tags = Record<string, string>;

export type MetricType = "counter" | "gauge" | "rate" | "trend";

export interface Sample {
  metric: string;
  value: number;
  tags: Tags;
}

/** Main thread → VU worker. */
export type ToVU =
  | { t: "run"; id: number; fn: string; data?: string; env: Record<string, string>; tags: Tags; iteration: boolean }
  | { t: "interrupt"; id: number }
  | { t: "ws"; sid: number; ev: "open" | "message" | "close" | "error"; at: number; data?: ArrayBuffer | string; code?: number; reason?: string; error?: string };

/** VU worker → main thread. */
export type FromVU =
  | { t: "ready"; exports: string[]; options?: unknown }
  | { t: "init-error"; error: string }
  | { t: "metric"; name: string; type: MetricType; isTime: boolean }
  | { t: "samples"; samples: Sample[] }
  | { t: "log"; level: "info" | "warn" | "error" | "debug"; text: string }
  | { t: "done"; id: number; error?: string; interrupted?: boolean; result?: string }
  | { t: "ws-open"; sid: number; url: string; protocols: string[]; headers: Record<string, string>; tags: Tags }
  | { t: "ws-send"; sid: number; data: ArrayBuffer | string }
  | { t: "ws-close"; sid: number; code?: number; reason?: string }
  | { t: "ws-terminate"; sid: number }
  | { t: "ws-ping"; sid: number };

/** A synchronous HTTP call: the worker posts it on its HTTP port and blocks until the answer is there. */
export interface HttpCall {
  method: string;
  url: string;
  body: string | ArrayBuffer | null;
  headers: Record<string, string>;
  timeoutMs: number;
  tags: Tags;
  /** Statuses that count as expected (http_req_failed); empty means 200–399. */
  expected: number[];
}

export interface HttpAnswer {
  status: number;
  statusText: string;
  body: string;
  headers: Record<string, string>;
  error: string;
  errorCode: number;
  url: string;
  timings: { duration: number; waiting: number; receiving: number; sending: number; blocked: number; connecting: number; tls_handshaking: number };
}

/** workerData of a VU worker. */
export interface VUInit {
  vu: number;
  script: string;
  env: Record<string, string>;
  /** [0]: the HTTP answer flag; [1]: never set, sleep() waits on it. */
  flags: SharedArrayBuffer;
  http: MessagePort;
  startedAt: number;
}
