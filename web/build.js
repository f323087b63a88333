// Builds the pages when web/dist is missing or older than a source file (run before `npm start`).
// `node web/build.js --force` always builds.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const here = import.meta.dirname;
const marker = join(here, "dist", "wallboard", "index.html");

function newest(dir) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    if (name === "dist" || name === "node_modules") continue;
    const path = join(dir, name);
    const st = statSync(path);
    t = Math.max(t, st.isDirectory() ? newest(path) : st.mtimeMs);
  }
  return t;
}

const force = process.argv.includes("--force");
if (!force && existsSync(marker) && statSync(marker).mtimeMs >= newest(here)) {
  console.log("web: the pages are up to date (web/dist)");
} else {
  let vite;
  try {
    vite = await import("vite");
  } catch {
    // an install without devDependencies: the server still starts, and says the pages are missing
    console.warn("web: Vite is not installed (npm install without --omit=dev builds the pages); starting without rebuilding them");
    process.exit(force ? 1 : 0);
  }
  const t0 = Date.now();
  await vite.build({ configFile: resolve(here, "vite.config.js") });
  console.log(`web: built the wallboard and operations pages into web/dist in ${Date.now() - t0} ms`);
}
