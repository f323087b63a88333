import type { Principal } from "../../src/auth/tokens.ts";
import { services } from "../../src/services.ts";
import type { Transactions } from "../transactions.ts";
import type { RoomTimer } from "../patches.ts";
import { requireOpen } from "./changes.ts";
import type { Escalation } from "./escalation.ts";
import type { ReceivingHospital } from "./hospital-link.ts";
import type { VitalsMessage, VitalsStream } from "./vitals.ts";

/** A divert that could not be recorded is tried again after this. */
const DIVERT_RETRY_MS = 1000;
const OK = { ok: true } as const;

/** What the emergency's reactions to a divert and to vitals reach of the room. */
export interface ReactionParts {
  readonly roomId: string;
  tx: Transactions<unknown>;
  hospital: ReceivingHospital;
  escalation: Escalation;
  vitals: VitalsStream;
  status(): string;
  receivingHospitalId(): string;
  /** Open, and still held by this node. */
  live(): boolean;
  later(fn: () => void, ms: number): RoomTimer;
}

/**
 * A hospital went on divert (a cluster notice, on every node): if it is this patient's receiving
 * hospital and the divert covers the patient, the emergency records it and, unless the patient is
 * at the hospital already, is re-matched at once (hospital-link.ts, `diverted`); operations is
 * told. A change that cannot be committed is tried again.
 */
export async function reactToDivert(r: ReactionParts, hospitalId: string, attempt = 0): Promise<void> {
  if (!r.live() || !r.hospital.divertHits(hospitalId)) return;
  const reason = services().hospitals.get(hospitalId)?.divert?.reason ?? "";
  let outcome: string | undefined;
  try {
    await r.tx.run(null, undefined, () => {
      if (r.hospital.divertHits(hospitalId)) outcome = r.hospital.diverted(reason);
    });
  } catch (error) {
    services().log.warn({ err: error, emergencyId: r.roomId, hospitalId }, "a divert could not be recorded yet; trying again");
    if (attempt < 10) r.later(() => void reactToDivert(r, hospitalId, attempt + 1), DIVERT_RETRY_MS);
    return;
  }
  if (!outcome) return;
  const next = r.receivingHospitalId();
  r.escalation.notifyOperations("emergency.hospital_diverted", outcome === "stays"
    ? `receiving hospital ${hospitalId} went on divert (${reason}); the patient is already there`
    : `receiving hospital ${hospitalId} went on divert (${reason}); ${next ? `re-matched to ${next}` : "no other hospital available yet"}`);
}

/**
 * A vitals sample from an assigned responder (or their device, with their token): it becomes the
 * sender's latest sample in the medical part, with no write of its own. Only a vital crossing its
 * threshold is a critical change (timeline, priority, wallboard), answered once committed; if that
 * commit fails, the sample stays and the next sample out of range tries the alert again.
 */
export function receiveVitals(r: ReactionParts, p: Principal, s: VitalsMessage): { ok: true } | Promise<{ ok: true; alerts?: string[] }> {
  const now = Date.now();
  const crossed = r.vitals.sample(p, s, now);
  r.escalation.lastActivityAt = now;
  if (!crossed) return OK;
  return r.tx.run(null, undefined, () => {
    requireOpen(r.status());
    return r.vitals.alertChange(p, s);
  }).then(
    (result) => ({ ok: true as const, alerts: result.alerts }),
    (error) => {
      services().log.warn({ err: error, emergencyId: r.roomId }, "a vitals alert was not committed; the next sample out of range retries it");
      return OK;
    },
  );
}
