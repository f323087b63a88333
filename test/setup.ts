/**
 * Runs before each test file imports the SDK (which captures the global WebSocket at import):
 * records the detail of WebSocket-level failures, which the SDK reports without any.
 */
const failures: string[] = [];
(globalThis as { __havenSocketFailures?: string[] }).__havenSocketFailures = failures;
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends NativeWebSocket {
  constructor(url: string | URL, options?: any) {
    super(url, options);
    const at = Date.now();
    this.addEventListener("error", (e: any) => {
      failures.push(`${String(url).replace(/_authToken=[^&]+/, "_authToken=…")} after ${Date.now() - at} ms: ${e?.message ?? ""} ${e?.error?.message ?? ""} ${e?.error?.cause?.code ?? e?.error?.code ?? ""}`);
      if (failures.length > 10) failures.shift();
    });
  }
} as typeof WebSocket;
