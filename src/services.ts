import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { TokenService } from "./auth/tokens.ts";
import type { AuditLog, EmergencyStore, HospitalStore, RefreshTokenStore, ResponderStore, UserStore } from "../persistence/stores.ts";
import type { HospitalDirectory } from "./domain/hospitals.ts";
import type { Circle } from "./domain/geo.ts";
import type { EtaProvider } from "./domain/eta.ts";
import type { DutyIndex } from "./domain/duty.ts";
import type { EmergencyRegistry } from "./emergencies.ts";
import type { MedicalProfiles } from "./medical/service.ts";
import type { EmergencyMedical } from "./medical/emergency.ts";
import type { Membership } from "./cluster/membership.ts";
import type { ClusterBus } from "./cluster/bus.ts";
import type { Notifications } from "./notify/service.ts";

/**
 * What the room actors and HTTP handlers share in one process. Rooms are constructed by the
 * matchmaker, which passes only plain options, so they reach these through `services()`.
 */
export interface Services {
  config: Config;
  log: Logger;
  tokens: TokenService;
  users: UserStore;
  responders: ResponderStore;
  refreshTokens: RefreshTokenStore;
  hospitals: HospitalDirectory;
  hospitalStore: HospitalStore;
  urbanAreas: Circle[];
  eta: EtaProvider;
  duty: DutyIndex;
  emergencies: EmergencyRegistry;
  emergencyStore: EmergencyStore;
  medical: MedicalProfiles;
  /** The hash-chained audit log: health-data access and operational decisions. */
  audit: AuditLog;
  /** The keys and sealing of each emergency's medical data (assessment, notes, disclosed profile). */
  emergencyMedical: EmergencyMedical;
  /** Which process holds which room, cluster-wide (one process: itself). */
  membership: Membership;
  bus: ClusterBus;
  /** The notifications outbox (src/notify/). */
  notify: Notifications;
}

let current: Services | undefined;

export function setServices(s: Services | undefined): void {
  current = s;
}

export function services(): Services {
  if (!current) throw new Error("Haven services are not initialised");
  return current;
}

/** Whether the services are set (code that may run before start-up asks first). */
export function servicesReady(): boolean {
  return current !== undefined;
}
