import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { setRoomErrorHandler } from "../rooms/patches.ts";
import { writeSecretFile } from "./secret-file.ts";
import { join } from "node:path";
import { matchMaker, Server, type ServerOptions } from "@colyseus/core";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { setServices, type Services } from "./services.ts";
import { TokenService } from "./auth/tokens.ts";
import { Accounts } from "./auth/accounts.ts";
import { openDatabase, migrate } from "../persistence/db.ts";
import { PgAuditLog, PgEmergencyStore, PgHospitalStore, PgMedicalKeyStore, PgMedicalProfileStore, PgRefreshTokenStore, PgResponderStore, PgUserStore } from "../persistence/postgres.ts";
import { SnapshotFlusher } from "../persistence/snapshots.ts";
import { loadMasterKey, MedicalProfiles } from "./medical/service.ts";
import { EmergencyMedical } from "./medical/emergency.ts";
import { HospitalDirectory } from "./domain/hospitals.ts";
import type { Circle } from "./domain/geo.ts";
import { ConstantSpeedEta } from "./domain/eta.ts";
import { ensureRoom } from "./cluster/rooms.ts";
import { startClusterMode } from "./cluster/mode.ts";
import { colyseus } from "./colyseus.ts";
import { every, Workers } from "./workers.ts";
import { ClusterBus } from "./cluster/bus.ts";
import { Failover } from "./cluster/failover.ts";
import { hospitalRoomId } from "./domain/identity.ts";
import type { HavenRoom } from "../rooms/HavenRoom.ts";
import { EmergencyRegistry } from "./emergencies.ts";
import { buildApi } from "./http/api.ts";
import { RequestLimits } from "./limits/requests.ts";
import { selectTransport } from "./transport.ts";
import { EmergencyRoom } from "../rooms/EmergencyRoom.ts";
import { DutyRoom, localDutyRooms } from "../rooms/DutyRoom.ts";
import { OpsRoom } from "../rooms/OpsRoom.ts";
import { OpsReporter } from "./cluster/ops-reports.ts";
import { startNotifications } from "./notify/start.ts";
import { HospitalRoom } from "../rooms/HospitalRoom.ts";

export interface RunningHaven {
  port: number;
  transport: "uws" | "ws";
  services: Services;
}

/** Opens the wallboard room of every approved hospital that no live node holds. */
async function ensureWallboards(s: Services): Promise<void> {
  for (const h of s.hospitals.all()) {
    await ensureRoom(s.membership, "hospital", hospitalRoomId(h.id), { hospitalId: h.id })
      .catch((error) => s.log.warn({ err: error, hospitalId: h.id }, "wallboard room not opened yet; retried by the next sweep"));
  }
}

/** Applies what other nodes announce: capacity, diverts and approvals (one directory everywhere), reopened wallboards, the desk's notices. */
async function applyClusterNotices(s: Services): Promise<void> {
  await s.bus.subscribe(async (e) => {
    if (e.type === "wallboard_opened") {
      for (const room of s.emergencies.liveRooms()) room.resyncHospital(e.hospitalId);
    } else if (e.type === "hospital_availability") {
      s.hospitals.updateAvailability(e.hospitalId, { emergencyBeds: e.emergencyBeds, icuBeds: e.icuBeds, accepting: e.accepting });
    } else if (e.type === "hospital_divert") {
      // every node matches around it, and the emergencies bound there on this node re-match at once
      s.hospitals.setDivert(e.hospitalId, e.divert ?? undefined);
      if (e.divert) for (const room of s.emergencies.liveRooms()) void room.hospitalDiverted(e.hospitalId);
    } else if (e.type === "ops_notice") {
      // the desk's notice reaches the connected parties of this node's emergencies and duty rooms in its region
      for (const room of s.emergencies.liveRooms()) room.opsNotice(e.notice);
      for (const room of localDutyRooms()) room.opsNotice(e.notice);
    } else if (e.type === "hospital_approved" && !s.hospitals.get(e.hospitalId)) {
      const record = (await s.hospitalStore.approved()).find((h) => h.id === e.hospitalId);
      if (record) s.hospitals.add(record as never);
    }
  });
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
    const listening = colyseus.listeningSocket(transport);
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

/** The development operations account, when no bootstrap account is configured. */
export const DEVELOPMENT_OPS_EMAIL = "ops@haven.local";

/**
 * In development only (HAVEN_ENV unset), without HAVEN_BOOTSTRAP_OPS_*: an operations account
 * `ops@haven.local` whose password is generated on first start and kept in the data folder
 * (`ops-account.development`, mode 0600), so that a fresh `npm start` can be signed in to (the
 * operations page, `npm run demo`) without a password anyone else knows.
 */
function developmentOpsAccount(dataDir: string, log: Logger): { email: string; password: string } {
  const file = join(dataDir, "ops-account.development");
  if (!existsSync(file)) writeSecretFile(file, JSON.stringify({ email: DEVELOPMENT_OPS_EMAIL, password: randomBytes(18).toString("base64url") }));
  const account = JSON.parse(readFileSync(file, "utf8")) as { email: string; password: string };
  log.warn({ email: account.email, file }, "no HAVEN_BOOTSTRAP_OPS_EMAIL: a DEVELOPMENT operations account exists, its password is in the file named here");
  return account;
}

export async function startHaven(config: Config, log: Logger): Promise<RunningHaven> {
  const startedAt = Date.now();
  setRoomErrorHandler((error, where) => log.error({ err: error }, where === "patch" ? "a room's patch failed" : "a room timer failed"));
  const tokens = await TokenService.create({
    secretKey: config.tokens.secretKey ?? await developmentTokenKey(config.database.dataDir, log),
    issuer: config.tokens.issuer, accessTtlSeconds: config.tokens.accessTtlSeconds, environment: config.env,
    development: config.tokens.secretKey === undefined,
  });
  const urbanAreas = JSON.parse(readFileSync(config.urbanAreasFile, "utf8")) as Circle[];
  const masterKey = loadMasterKey(process.env, config.env === "production", config.database.dataDir, log);
  const selected = await selectTransport(config, log);

  const db = await openDatabase(config.database, log);
  await migrate(db.admin, log);
  const hospitalStore = new PgHospitalStore(db.sql);
  const emergencyStore = new PgEmergencyStore(db.sql);
  const seeded = await hospitalStore.seedIfEmpty(HospitalDirectory.fromFile(config.hospitals.file).all());
  if (seeded > 0) log.info({ seeded, file: config.hospitals.file }, "hospitals seeded into the database");
  const hospitals = new HospitalDirectory(await hospitalStore.approved() as never);

  // one process, or a node of a cluster (rooms spread over the nodes through Redis; each node is
  // reached directly): the cluster mode decides, and nothing below asks which
  const cluster = config.cluster;
  const mode = await startClusterMode(config, log);
  const server = new HavenServer({
    transport: selected.transport, greet: false, logger: colyseusLogger(log), presence: mode.presence, ...mode.serverOptions(),
  } as ServerOptions);
  await matchMaker.onReady;
  const { membership, duty } = await mode.join(matchMaker.processId);
  if (cluster && tokens.development) log.warn("cluster mode with a DEVELOPMENT token key: every node must share HAVEN_DATA_DIR (or set HAVEN_TOKEN_SECRET_KEY)");

  const audit = new PgAuditLog(db.sql);
  const medical = new MedicalProfiles({ store: new PgMedicalProfileStore(db.sql), audit, master: masterKey, node: config.nodeName });
  const notifications = startNotifications({ sql: db.sql, config: config.notify, medical, node: matchMaker.processId, log });
  const emergencyMedical = new EmergencyMedical({ keys: new PgMedicalKeyStore(db.sql), audit, master: masterKey, node: config.nodeName, log });
  const s: Services = {
    config, log, tokens, hospitals, hospitalStore, urbanAreas,
    users: new PgUserStore(db.sql),
    responders: new PgResponderStore(db.sql),
    refreshTokens: new PgRefreshTokenStore(db.sql),
    eta: new ConstantSpeedEta(config.eta.speedKmh),
    duty,
    membership,
    bus: new ClusterBus(mode.presence, log),
    emergencies: new EmergencyRegistry(emergencyStore, config.nodeName, membership, emergencyMedical, {
      notified: () => notifications.service.committed(),
      contactCount: (patientId) => medical.emergencyContactCount(patientId),
    }),
    emergencyStore,
    medical,
    emergencyMedical,
    audit,
    notify: notifications.service,
  };
  setServices(s);
  // an erased profile leaves the patient's live emergency at once (its key is already destroyed);
  // a room still being created (loading that very profile) answers a moment later
  s.medical.onErased = async (patientId) => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const active = await emergencyStore.activeFor(patientId);
      if (!active) return;
      const done = await matchMaker.remoteRoomCall(active, "profileErased", []).then(() => true, () => false);
      if (done) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    log.warn("an erased profile's live emergency could not be told; its summary stays on screen until the emergency ends (what is stored of it can no longer be opened)");
  };

  const accounts = new Accounts({
    users: s.users, responders: s.responders, refreshTokens: s.refreshTokens, tokens, hospitals,
    refreshTtlSeconds: config.tokens.refreshTtlSeconds, bypassTtlSeconds: config.tokens.bypassTtlSeconds,
    maxBypassNames: config.limits.requests.maxKeys,
  });
  // cluster mode: the counts are shared through Redis, on a connection of their own whose
  // commands give up after 250 ms (each node then counts alone in memory until Redis is back)
  const limits = new RequestLimits(config.limits.requests, log, mode.limitsRedis());
  const bootstrapOps = config.bootstrapOps ?? (config.env === "development" ? developmentOpsAccount(config.database.dataDir, log) : undefined);
  if (bootstrapOps) await accounts.ensureBootstrapOps(bootstrapOps.email, bootstrapOps.password);

  let phase: "starting" | "ready" | "stopping" = "starting";
  server.define("emergency", EmergencyRoom);
  server.define("duty", DutyRoom);
  server.define("hospital", HospitalRoom);
  server.define("ops", OpsRoom);
  const flusher = new SnapshotFlusher(s.emergencies, emergencyStore, log);
  const failover = new Failover({
    membership, emergencies: s.emergencies, duty, ensureWallboards: () => ensureWallboards(s), log,
    checkIntervalMs: cluster?.checkIntervalMs ?? 1000, sweepIntervalMs: cluster?.sweepIntervalMs ?? 10_000,
  });
  const opsReporter = new OpsReporter(mode.presence, {
    processId: membership.processId, nodeName: config.nodeName,
    emergencies: () => s.emergencies.liveRooms().filter((r) => r.isOpen()).map((r) => r.opsSummary()),
    units: () => [...localDutyRooms()].map((r) => r.unitSummary()),
    rooms: () => ({ rooms: matchMaker.stats.local.roomCount, clients: matchMaker.stats.local.ccu }),
  });
  const workers = new Workers(log)
    .add({ name: "failover", start: () => failover.start(), stop: () => failover.stop() })
    .add({ name: "snapshot flusher", start: () => flusher.start(), stop: () => flusher.stop() })
    // closed emergencies' medical data is destroyed after the retention period (every node sweeps)
    .add(every("medical retention sweep", config.medicalRetentionSweepMs, () => s.emergencyMedical.sweepRetention(config.medicalRetentionMs), log))
    // what this node holds, for the operations desk (written only while an ops room is open)
    .add(every("ops report", config.ops.refreshMs, () => opsReporter.tick(), log))
    // every node delivers the outbox; a message is claimed by one node at a time
    .add(notifications.worker);
  mode.listen({
    reassertAssignments: () => { for (const room of s.emergencies.liveRooms()) room.reassertAssignments(); },
    relinquish: (roomId) => (matchMaker.getLocalRoomById(roomId) as unknown as HavenRoom<object> | undefined)?.relinquish(),
  });
  server.onBeforeShutdown(async () => {
    phase = "stopping";
    await workers.stop();
    const saved = await flusher.flush(true);
    log.info({ snapshots: saved }, "shutting down: state flushed; clients are told to reconnect");
  });
  server.onShutdown(async () => {
    await membership.stop();
    limits.close();
    await db.close();
  });

  selected.mountHttp(buildApi({ accounts, limits, transport: selected.name, startedAt, phase: () => phase }));
  await server.listenOn(config.port, config.host);
  await membership.announce();
  await applyClusterNotices(s);
  await ensureWallboards(s);
  // emergencies that no live node holds (this node's own, after a restart or a crash) come back now
  const restored = await s.emergencies.sweep(log);
  if (restored > 0) log.info({ restored }, "active emergencies restored");
  workers.start();
  phase = "ready";

  const port = selected.boundPort(config.port);
  log.info({ port, transport: selected.name, hospitals: hospitals.all().length, database: db.embedded ? "embedded" : "external", cluster: cluster ? { processId: membership.processId, publicAddress: cluster.publicAddress } : false }, `Haven listening on port ${port} (transport: ${selected.name}${cluster ? `, cluster node ${membership.processId}` : ""})`);
  return { port, transport: selected.name, services: s };
}
