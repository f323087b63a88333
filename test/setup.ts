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
    const where = String(url).replace(/_authToken=[^&]+/, "_authToken=…");
    this.addEventListener("error", (e: any) => {
      failures.push(`${where} error after ${Date.now() - at} ms: ${e?.message ?? ""} ${e?.error?.message ?? ""} ${e?.error?.cause?.code ?? e?.error?.code ?? ""}`);
      if (failures.length > 10) failures.shift();
    });
    this.addEventListener("close", (e: any) => {
      if (e.code !== 1000 && e.code < 4000) failures.push(`${where} closed after ${Date.now() - at} ms: ${e.code} ${e.reason} clean=${e.wasClean}`);
      if (failures.length > 10) failures.shift();
    });
  }
} as typeof WebSocket;
