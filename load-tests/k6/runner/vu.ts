import { registerHooks } from "node:module";
import { parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import { format } from "node:util";
import type { ToVU, VUInit } from "./protocol.ts";

/**
 * A VU of the stand-in runner: one worker thread, one JavaScript runtime, as k6 gives every VU
 * its own. The script is loaded unmodified; its imports of k6's modules resolve to the shims in
 * modules/ (any other `k6/...` module is refused: the stand-in implements only these).
 */

const SHIMS: Record<string, string> = {
  "k6": "k6.ts",
  "k6/http": "http.ts",
  "k6/websockets": "websockets.ts",
  "k6/timers": "timers.ts",
  "k6/metrics": "metrics.ts",
};

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === "k6" || specifier.startsWith("k6/")) {
      const file = SHIMS[specifier];
      if (!file) throw new Error(`the k6 stand-in does not implement the module "${specifier}" (only ${Object.keys(SHIMS).join(", ")})`);
      return { url: new URL(`./modules/${file}`, import.meta.url).href, shortCircuit: true };
    }
    return nextResolve(specifier, context);
  },
});

const init = workerData as VUInit;
const g = globalThis as Record<string, unknown>;
g.__VU = init.vu;
g.__ITER = 0;
g.__ENV = { ...init.env };

const { rt, describe } = await import("./runtime.ts");

// console output goes through the main thread, which prints it k6-style (INFO[0003] … source=console)
for (const [method, level] of [["log", "info"], ["info", "info"], ["warn", "warn"], ["error", "error"], ["debug", "debug"]] as const) {
  (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => rt.post({ t: "log", level, text: format(...args) });
}
process.on("unhandledRejection", (reason) => rt.fail(reason));

let exported: Record<string, unknown>;
try {
  exported = await import(pathToFileURL(init.script).href) as Record<string, unknown>;
} catch (error) {
  rt.post({ t: "init-error", error: describe(error) });
  throw error;
}
rt.phase = "idle";

parentPort!.on("message", (msg: ToVU) => {
  if (msg.t === "ws") {
    rt.deliver(msg);
  } else if (msg.t === "run") {
    const fn = exported[msg.fn];
    if (typeof fn !== "function") {
      rt.post({ t: "done", id: msg.id, error: `the script exports no function "${msg.fn}"` });
      return;
    }
    rt.start(msg, fn as (data: unknown) => unknown);
  } else if (msg.t === "interrupt") {
    rt.interrupt(msg.id);
  }
});

const exportNames = Object.keys(exported).filter((k) => typeof exported[k] === "function");
let options: unknown;
if (init.vu === 0 && exported.options !== undefined) options = JSON.parse(JSON.stringify(exported.options));
rt.post({ t: "ready", exports: exportNames, options });
