/**
 * The servers a run compares, and what each needs: its tree (with its copy in the Debian 13 root
 * for uWebSockets.js), a base database, the template emergency, keys and a token minter.
 */
import type { Tree } from "./trees.ts";
import type { TemplateEmergency } from "./template.ts";
import type { HavenKeys } from "./servers.ts";
import type { Minter } from "./tokens.ts";

export const VARIANT_IDS = ["haven-uws", "haven-ws", "socketio", "main-uws", "main-ws"] as const;
export type VariantId = (typeof VARIANT_IDS)[number];

export interface HavenSetup {
  tree: Tree;
  baseDb: string;
  template: TemplateEmergency;
  keys: HavenKeys;
  minter: Minter;
}

export interface Variant {
  id: VariantId;
  title: string;
  kind: "haven" | "socketio";
  transport?: "uws" | "ws";
  setup?: HavenSetup;
}

export function describe(id: VariantId, baselineCommit: string): { title: string; kind: "haven" | "socketio"; transport?: "uws" | "ws" } {
  switch (id) {
    case "haven-uws": return { title: "Haven (this tree), uWebSockets.js", kind: "haven", transport: "uws" };
    case "haven-ws": return { title: "Haven (this tree), ws", kind: "haven", transport: "ws" };
    case "socketio": return { title: "Socket.IO 4.8 baseline", kind: "socketio" };
    case "main-uws": return { title: `main (${baselineCommit}), uWebSockets.js`, kind: "haven", transport: "uws" };
    case "main-ws": return { title: `main (${baselineCommit}), ws`, kind: "haven", transport: "ws" };
  }
}
