import { readFileSync } from "node:fs";
import { compileSchema, SPECIALTIES } from "../protocol/validate.ts";
import type { Divert } from "./divert.ts";
import { distanceM, type LatLng } from "./geo.ts";

export type Specialty = (typeof SPECIALTIES)[number];

export interface Hospital extends LatLng {
  id: string;
  name: string;
  specialties: Specialty[];
  emergencyBeds: number;
  icuBeds: number;
  accepting: boolean;
  updatedAt: number;
  /** Set while a divert was declared (it may have expired: see `divertActive`). */
  divert?: Divert;
}

const fileSchema = {
  $$root: true,
  type: "array", min: 1, max: 10_000,
  items: {
    type: "object", strict: true,
    props: {
      id: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/ },
      name: { type: "string", min: 1, max: 200 },
      lat: { type: "number", min: -90, max: 90 },
      lng: { type: "number", min: -180, max: 180 },
      specialties: { type: "array", max: SPECIALTIES.length, items: { type: "enum", values: SPECIALTIES } },
      emergencyBeds: { type: "number", integer: true, min: 0, max: 10_000 },
      icuBeds: { type: "number", integer: true, min: 0, max: 10_000 },
      accepting: { type: "boolean" },
    },
  },
} as const;
const checkFile = compileSchema(fileSchema);

/** The hospitals Haven can route to, with their live capacity. */
export class HospitalDirectory {
  private readonly byId = new Map<string, Hospital>();

  constructor(hospitals: Omit<Hospital, "updatedAt">[]) {
    const now = Date.now();
    for (const h of hospitals) this.byId.set(h.id, { ...h, specialties: [...h.specialties], updatedAt: now });
  }

  static fromFile(path: string): HospitalDirectory {
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(path, "utf8"));
    } catch (error) {
      throw new Error(`cannot read hospitals from ${path}: ${(error as Error).message}`);
    }
    const result = checkFile(data);
    if (result !== true) {
      throw new Error(`hospitals file ${path} is not valid: ${result.map((e) => e.message).join("; ")}`);
    }
    return new HospitalDirectory(data as Omit<Hospital, "updatedAt">[]);
  }

  /** An approved hospital joins the directory (idempotent). */
  add(h: Omit<Hospital, "updatedAt">): Hospital {
    const existing = this.byId.get(h.id);
    if (existing) return existing;
    const added = { ...h, specialties: [...h.specialties], updatedAt: Date.now() };
    this.byId.set(h.id, added);
    return added;
  }

  get(id: string): Hospital | undefined {
    return this.byId.get(id);
  }

  all(): Hospital[] {
    return [...this.byId.values()];
  }

  nearby(point: LatLng, radiusM: number, limit: number): (Hospital & { distanceM: number })[] {
    return this.all()
      .map((h) => ({ ...h, distanceM: Math.round(distanceM(point, h)) }))
      .filter((h) => h.distanceM <= radiusM)
      .sort((a, b) => a.distanceM - b.distanceM)
      .slice(0, limit);
  }

  /** A divert declared (or lifted, `undefined`) for this hospital. */
  setDivert(id: string, divert: Divert | undefined): Hospital | undefined {
    const h = this.byId.get(id);
    if (!h) return undefined;
    if (divert) h.divert = { ...divert, specialties: [...divert.specialties] };
    else delete h.divert;
    return h;
  }

  updateAvailability(id: string, update: { emergencyBeds: number; icuBeds?: number; accepting: boolean }): Hospital | undefined {
    const h = this.byId.get(id);
    if (!h) return undefined;
    h.emergencyBeds = update.emergencyBeds;
    if (update.icuBeds !== undefined) h.icuBeds = update.icuBeds;
    h.accepting = update.accepting;
    h.updatedAt = Date.now();
    return h;
  }
}
