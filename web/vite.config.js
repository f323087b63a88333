// The hospital wallboard (/wallboard) and the operations desk (/ops): two pages built by Vite into
// web/dist, which Haven serves (src/http/pages.ts). `npm run build:web` builds them.
import { defineConfig } from "vite";
import { resolve } from "node:path";

const here = import.meta.dirname;

export default defineConfig({
  root: here,
  base: "/web/",
  logLevel: "warn",
  build: {
    outDir: resolve(here, "dist"),
    emptyOutDir: true,
    target: "es2022",
    // no inline polyfill script: the pages' Content-Security-Policy allows this origin's files only
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: {
        wallboard: resolve(here, "wallboard/index.html"),
        ops: resolve(here, "ops/index.html"),
      },
    },
  },
});
