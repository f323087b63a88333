import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { root } from "./harness.ts";

/** Debian's chromium package; a missing browser fails the browser tests, it never skips them. */
export const CHROMIUM = process.env.HAVEN_TEST_CHROMIUM ?? "/usr/bin/chromium";
export const OUTPUT = `${root}test-output`;

/** The pages the server serves, built when missing or older than their sources. */
export function ensurePagesBuilt(): void {
  execFileSync(process.execPath, ["web/build.js"], { cwd: root, stdio: "inherit" });
}

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium)`);
  mkdirSync(OUTPUT, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // as root Chromium needs --no-sandbox; the others keep it from calling hosts it cannot reach
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}
