import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPS, root, startHaven, type Haven } from "./harness.ts";

/**
 * Every k6 script of load-tests/k6/ (found in the folder, so that a new one is never left out)
 * runs through the stand-in runner (load-tests/k6/runner/k6.ts; no k6 binary here) against a
 * real server, at a small scale: it must exit 0, with its thresholds evaluated and passed, every
 * trend it has a threshold on filled with samples, and no script error.
 */

const DIR = join(root, "load-tests/k6");
const scripts = readdirSync(DIR).filter((f) => f.endsWith(".js")).sort();

/** A few seconds each; a script not listed runs on its own defaults, which are small too. */
const SCALE: Record<string, string[]> = {
  "tracking.js": ["EMERGENCIES=2", "DURATION=6s"],
  "alert-spike.js": ["ALERTS=4", "ALIGN_MS=500"],
  "wallboard.js": ["EMERGENCIES=3", "SCREENS=2", "DURATION=6s"],
  "soak.js": ["VUS=2", "DURATION=10s", "HOLD=1s"],
};

let h: Haven;
let out: string;
beforeAll(async () => {
  h = await startHaven();
  out = mkdtempSync(join(tmpdir(), "haven-k6-"));
});
afterAll(async () => {
  await h?.stop();
  if (out) rmSync(out, { recursive: true, force: true });
});

function runK6(script: string, env: string[], summaryFile: string): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  const args = [
    join(DIR, "runner/k6.ts"), "run",
    "-e", `HAVEN_URL=${h.url}`, "-e", `HAVEN_OPS_EMAIL=${OPS.email}`, "-e", `HAVEN_OPS_PASSWORD=${OPS.password}`,
    ...env.flatMap((kv) => ["-e", kv]),
    "--summary-export", summaryFile,
    "--summary-trend-stats", "avg,min,med,max,p(95),p(99),count",
    join(DIR, script),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => { output += d; });
    child.stderr.on("data", (d) => { output += d; });
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, output, ms: Date.now() - started }));
  });
}

describe(`k6 scripts through the stand-in runner (transport: ${process.env.HAVEN_TRANSPORT ?? "auto"})`, () => {
  it("finds the scripts in load-tests/k6", () => {
    expect(scripts).toEqual(expect.arrayContaining(["tracking.js", "alert-spike.js", "wallboard.js", "soak.js"]));
  });

  for (const script of scripts) {
    it(`${script} passes its thresholds at small scale`, async () => {
      const summaryFile = join(out, `${script}.json`);
      const r = await runK6(script, SCALE[script] ?? [], summaryFile);
      expect(r.code, r.output).toBe(0);
      expect(r.output).toContain("stand-in");
      // script errors (an exception in an iteration, a failed setup) are printed as ERRO lines
      expect(r.output, r.output).not.toMatch(/^ERRO/m);

      const summary = JSON.parse(readFileSync(summaryFile, "utf8")) as { metrics: Record<string, Record<string, any>> };
      const judged = Object.entries(summary.metrics).filter(([, m]) => m.thresholds && Object.keys(m.thresholds).length > 0);
      expect(judged.length, "the script declares thresholds").toBeGreaterThan(0);
      for (const [key, m] of judged) {
        for (const [expr, failed] of Object.entries(m.thresholds)) expect(failed, `${key}: ${expr}`).toBe(false);
        if ("p(95)" in m) expect(m.count, `${key} has samples`).toBeGreaterThan(0);
      }
      expect(summary.metrics.iterations?.count, "iterations ran").toBeGreaterThan(0);
      expect(summary.metrics.checks?.passes, "checks ran").toBeGreaterThan(0);
      expect(summary.metrics.checks?.fails).toBe(0);

      const shown = judged.map(([key, m]) => `${key} ${"p(95)" in m ? `p(95)=${Number(m["p(95)"]).toFixed(1)} n=${m.count}` : JSON.stringify(m)}`);
      console.log(`[k6] ${script} on ${h.transport}: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s\n  ${shown.join("\n  ")}`);
    }, 90_000);
  }
});
