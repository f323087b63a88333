import { ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
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
