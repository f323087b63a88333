import { existsSync, readFileSync } from "node:fs";
import { writeSecretFile } from "./secret-file.ts";
import { join } from "node:path";
import { matchMaker, Server, type ServerOptions } from "@colyseus/core";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { setServices, type Services } from "./services.ts";
import { TokenService } from "./auth/tokens.ts";
import { Accounts } from "./auth/accounts.ts";
import { openDatabase, migrate } from "../persistence/db.ts";
import { PgAuditLog, PgEmergencyStore, PgHospitalStore, PgMedicalProfileStore, PgRefreshTokenStore, PgResponderStore, PgUserStore } from "../persistence/postgres.ts";
import { SnapshotFlusher } from "./snapshots.ts";
import { loadMasterKey, MedicalProfiles } from "./medical/service.ts";
import { HospitalDirectory } from "./domain/hospitals.ts";
import type { Circle } from "./domain/geo.ts";
import { ConstantSpeedEta } from "./domain/eta.ts";
import { DutyIndex } from "./domain/duty.ts";
import { EmergencyRegistry } from "./domain/emergencies.ts";
import { buildApi } from "./http/api.ts";
import { selectTransport } from "./transport.ts";
import { EmergencyRoom } from "../rooms/EmergencyRoom.ts";
import { DutyRoom } from "../rooms/DutyRoom.ts";
import { HospitalRoom } from "../rooms/HospitalRoom.ts";

export interface RunningHaven {
  port: number;
  transport: "uws" | "ws";
  services: Services;
}

/**
 * Colyseus's Server without its default HTTP router: Haven serves its own API (which exposes
 * only joinById and reconnect of the matchmaker) on the transport's port.
 */
class HavenServer extends Server {
  async listenOn(port: number, host: string): Promise<void> {
    await matchMaker.accept();
    const transport = await this._onTransportReady;
    await new Promise<void>((resolve, reject) => {
      transport.server?.once?.("error", reject);
      transport.listen(port, host, undefined, (err?: Error) => (err ? reject(err) : resolve()));
    });
    const listening = (transport as unknown as { _listeningSocket?: unknown })._listeningSocket;
    if ("app" in transport && !listening) throw new Error(`cannot listen on port ${port}`);
  }
}

/** Colyseus logs through pino too, at the levels it means. */
function colyseusLogger(log: Logger) {
  const child = log.child({ component: "colyseus" });
  const fmt = (args: unknown[]) => args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
  return {
    debug: (...a: unknown[]) => child.debug(fmt(a)),
    info: (...a: unknown[]) => child.info(fmt(a)),
    log: (...a: unknown[]) => child.info(fmt(a)),
    warn: (...a: unknown[]) => child.warn(fmt(a)),
    error: (...a: unknown[]) => child.error(fmt(a)),
    trace: (...a: unknown[]) => child.trace(fmt(a)),
  };
}

/**
 * Outside production, without HAVEN_TOKEN_SECRET_KEY: a signing key generated on first start and
 * kept in the data folder, so that sessions survive a restart (and a crash) as in production.
 */
async function developmentTokenKey(dataDir: string, log: Logger): Promise<string> {
  const file = join(dataDir, "token-secret-key.development");
  if (!existsSync(file)) writeSecretFile(file, await TokenService.generateSecretKey());
  log.warn({ file }, "HAVEN_TOKEN_SECRET_KEY is not set: tokens are signed with a DEVELOPMENT key kept next to the data. Set HAVEN_TOKEN_SECRET_KEY in production.");
  return readFileSync(file, "utf8").trim();
}

export async function startHaven(config: Config, log: Logger): Promise<RunningHaven> {
  const startedAt = Date.now();
  const tokens = await TokenService.create({
    secretKey: config.tokens.secretKey ?? await developmentTokenKey(config.database.dataDir, log),
    issuer: config.tokens.issuer, accessTtlSeconds: config.tokens.accessTtlSeconds, environment: config.env,
    development: config.tokens.secretKey === undefined,
  });
  const urbanAreas = JSON.parse(readFileSync(config.urbanAreasFile, "utf8")) as Circle[];
  const masterKey = loadMasterKey(process.env, config.env === "production", config.database.dataDir, log);
  const selected = await selectTransport(config, log);

  const db = await openDatabase(config.database, log);
  await migrate(db.sql, log);
  const hospitalStore = new PgHospitalStore(db.sql);
  const emergencyStore = new PgEmergencyStore(db.sql);
  const seeded = await hospitalStore.seedIfEmpty(HospitalDirectory.fromFile(config.hospitals.file).all());
  if (seeded > 0) log.info({ seeded, file: config.hospitals.file }, "hospitals seeded into the database");
  const hospitals = new HospitalDirectory(await hospitalStore.approved() as never);

  const s: Services = {
    config, log, tokens, hospitals, hospitalStore, urbanAreas,
    users: new PgUserStore(db.sql),
    responders: new PgResponderStore(db.sql),
    refreshTokens: new PgRefreshTokenStore(db.sql),
    eta: new ConstantSpeedEta(config.eta.speedKmh),
    duty: new DutyIndex(),
    emergencies: new EmergencyRegistry(emergencyStore, config.nodeName),
    emergencyStore,
    medical: new MedicalProfiles({ store: new PgMedicalProfileStore(db.sql), audit: new PgAuditLog(db.sql), master: masterKey, node: config.nodeName }),
  };
  setServices(s);

  const accounts = new Accounts({
    users: s.users, responders: s.responders, refreshTokens: s.refreshTokens, tokens, hospitals,
    refreshTtlSeconds: config.tokens.refreshTtlSeconds, bypassTtlSeconds: config.tokens.bypassTtlSeconds,
    bypassPerHourPerAddress: config.limits.bypassPerHourPerAddress,
  });
  if (config.bootstrapOps) await accounts.ensureBootstrapOps(config.bootstrapOps.email, config.bootstrapOps.password);

  let ready = false;
  const server = new HavenServer({ transport: selected.transport, greet: false, logger: colyseusLogger(log) } as ServerOptions);
  server.define("emergency", EmergencyRoom);
  server.define("duty", DutyRoom);
  server.define("hospital", HospitalRoom);
  const flusher = new SnapshotFlusher(s.emergencies, emergencyStore, log);
  server.onBeforeShutdown(async () => {
    ready = false;
    flusher.stop();
    const saved = await flusher.flush(true);
    log.info({ snapshots: saved }, "shutting down: state flushed; clients are told to reconnect");
  });
  server.onShutdown(() => db.close());

  selected.mountHttp(buildApi({ accounts, transport: selected.name, startedAt, ready: () => ready }));
  await server.listenOn(config.port, config.host);
  for (const h of hospitals.all()) await matchMaker.createRoom("hospital", { hospitalId: h.id });
  const restored = await s.emergencies.restore(await emergencyStore.active(), log);
  if (restored > 0) log.info({ restored }, "active emergencies restored");
  flusher.start();
  ready = true;

  const port = selected.boundPort(config.port);
  log.info({ port, transport: selected.name, hospitals: hospitals.all().length, database: db.embedded ? "embedded" : "external" }, `Haven listening on port ${port} (transport: ${selected.name})`);
  return { port, transport: selected.name, services: s };
}
