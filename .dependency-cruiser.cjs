/**
 * Haven's layers, checked in CI (`npm run deps`): rules at the centre, room actors around them,
 * adapters (Postgres, Redis, HTTP, the transport) at the edge, the server wiring them together.
 *
 *   src/domain/    rules: dispatch policy, matching, the status machine, entitlement, geo, ETA.
 *                  Plain TypeScript: nothing from rooms, persistence, HTTP, the cluster, Colyseus,
 *                  Redis or Postgres.
 *   rooms/         the actors: use rules, and reach adapters only through ports (src/services.ts).
 *   persistence/   the Postgres adapter: knows rules' types, never rooms, HTTP or the cluster.
 *   src/http, src/cluster, src/transport.ts   adapters at the edge.
 *   src/server.ts, src/main.ts                the composition root.
 */
module.exports = {
  forbidden: [
    {
      name: "no-cycles",
      severity: "error",
      comment: "Imports point one way: a cycle means two modules are one.",
      from: {},
      to: { circular: true },
    },
    {
      name: "rules-are-plain",
      severity: "error",
      comment: "src/domain holds rules: it knows nothing of rooms, storage, HTTP, the cluster or the libraries that carry them.",
      from: { path: "^src/domain/" },
      to: { path: ["^rooms/", "^persistence/", "^src/http/", "^src/cluster/", "^src/server\\.ts$", "^src/transport\\.ts$", "^src/services\\.ts$", "node_modules/(@colyseus|ioredis|postgres|uWebSockets)"] },
    },
    {
      name: "persistence-is-an-adapter",
      severity: "error",
      comment: "The Postgres adapter serves the rooms; it never reaches into them, HTTP or the cluster.",
      from: { path: "^persistence/" },
      to: { path: ["^rooms/", "^src/http/", "^src/cluster/", "^src/server\\.ts$", "^src/services\\.ts$"] },
    },
    {
      name: "rooms-do-not-reach-the-edge",
      severity: "error",
      comment: "Room actors use rules and ports, not the HTTP API or the composition root.",
      from: { path: "^rooms/" },
      to: { path: ["^src/http/", "^src/server\\.ts$", "^src/main\\.ts$"] },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    includeOnly: "^(src|rooms|persistence)/",
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
