import { ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { NODE_FLAGS, cpusAvailable, runsWithHavenFlags } from "./gc.ts";
import { startHaven } from "./server.ts";

/** Entry point: `npm start`. Configuration comes from the environment (README, "Configuration"). */
let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`haven: invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

const log = createLogger(config.logLevel);
if (!runsWithHavenFlags() && cpusAvailable() < 1.5) {
  log.warn({ cpus: cpusAvailable(), flags: NODE_FLAGS }, `one CPU and V8's threaded garbage collection: expect long event-loop pauses; start with node ${NODE_FLAGS.join(" ")} (npm start does)`);
}
// A promise nobody awaited failed (for example a Redis write inside Colyseus while Redis is away).
// Running emergencies must keep streaming: log it loudly rather than let Node turn it into a crash.
process.on("unhandledRejection", (reason) => {
  log.error({ err: reason }, `unhandled rejection: ${(reason as Error)?.message ?? String(reason)}`);
});
try {
  await startHaven(config, log);
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`haven: invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
  log.fatal({ err: error }, `haven could not start: ${(error as Error).message}`);
  process.exit(1);
}
