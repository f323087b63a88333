/**
 * Places and routes in central Nairobi for the demo: points along real streets (WGS84, read off a
 * map to within about 50 m), and a walk along them at a given speed.
 */
export interface Point { lat: number; lng: number }

export const PLACES = {
  /** Moi Avenue at its junction with Kenyatta Avenue (the patient of the first emergency). */
  kenyattaAtMoi: { lat: -1.28345, lng: 36.82262 },
  /** Moi Avenue by Jeevanjee Gardens (the patient of the second emergency). */
  moiAtJeevanjee: { lat: -1.28117, lng: 36.82105 },
  /** Kenyatta Avenue at Kimathi Street (the first first-aider, on foot). */
  kenyattaAtKimathi: { lat: -1.28456, lng: 36.82136 },
  /** Tom Mboya Street at the Kencom bus stop (the second first-aider). */
  kencom: { lat: -1.28412, lng: 36.82465 },
  /** Upper Hill, Hospital Road (where the ambulance waits). */
  upperHill: { lat: -1.29721, lng: 36.81402 },
  /** Kenyatta National Hospital, the casualty entrance off Hospital Road. */
  knh: { lat: -1.30070, lng: 36.80650 },
} as const;

/** The ambulance from Upper Hill to the first patient: Haile Selassie Avenue, Uhuru Highway, Kenyatta Avenue. */
export const UPPER_HILL_TO_KENYATTA_AVENUE: Point[] = [
  PLACES.upperHill,
  { lat: -1.29520, lng: 36.81690 }, // Upper Hill Road towards Haile Selassie Avenue
  { lat: -1.29310, lng: 36.81940 }, // Uhuru Highway at the Haile Selassie roundabout
  { lat: -1.29010, lng: 36.81820 }, // Uhuru Highway northbound
  { lat: -1.28790, lng: 36.81670 }, // Uhuru Highway at the Kenyatta Avenue roundabout
  { lat: -1.28620, lng: 36.81930 }, // Kenyatta Avenue eastbound, by Uhuru Park
  { lat: -1.28456, lng: 36.82136 }, // Kenyatta Avenue at Kimathi Street
  PLACES.kenyattaAtMoi,
];

/** From the first patient to Kenyatta National Hospital: Kenyatta Avenue, Uhuru Highway, Haile Selassie roundabout, Ngong Road, Hospital Road. */
export const KENYATTA_AVENUE_TO_KNH: Point[] = [
  PLACES.kenyattaAtMoi,
  { lat: -1.28456, lng: 36.82136 }, // Kenyatta Avenue at Kimathi Street
  { lat: -1.28620, lng: 36.81930 }, // Kenyatta Avenue westbound
  { lat: -1.28790, lng: 36.81670 }, // Uhuru Highway at the Kenyatta Avenue roundabout
  { lat: -1.29010, lng: 36.81820 }, // Uhuru Highway southbound
  { lat: -1.29310, lng: 36.81940 }, // the Haile Selassie roundabout
  { lat: -1.29490, lng: 36.81450 }, // Ngong Road westbound
  { lat: -1.29640, lng: 36.80990 }, // Ngong Road at Upper Hill
  { lat: -1.29850, lng: 36.80770 }, // Hospital Road
  PLACES.knh,
];

/** From the second patient down Moi Avenue and along Haile Selassie Avenue and Ngong Road to KNH. */
export const MOI_AVENUE_TO_KNH: Point[] = [
  PLACES.moiAtJeevanjee,
  { lat: -1.28345, lng: 36.82262 }, // Moi Avenue at Kenyatta Avenue
  { lat: -1.28700, lng: 36.82500 }, // Moi Avenue southbound, by the Hilton
  { lat: -1.29000, lng: 36.82660 }, // Moi Avenue at Haile Selassie Avenue
  { lat: -1.29200, lng: 36.82230 }, // Haile Selassie Avenue westbound
  { lat: -1.29310, lng: 36.81940 }, // the Haile Selassie roundabout on Uhuru Highway
  { lat: -1.29490, lng: 36.81450 }, // Ngong Road westbound
  { lat: -1.29640, lng: 36.80990 }, // Ngong Road at Upper Hill
  { lat: -1.29850, lng: 36.80770 }, // Hospital Road
  PLACES.knh,
];

function metres(a: Point, b: Point): number {
  const k = 111_320;
  return Math.hypot((b.lat - a.lat) * k, (b.lng - a.lng) * k * Math.cos((a.lat * Math.PI) / 180));
}

function heading(a: Point, b: Point): number {
  const deg = (Math.atan2((b.lng - a.lng) * Math.cos((a.lat * Math.PI) / 180), b.lat - a.lat) * 180) / Math.PI;
  return (deg + 360) % 360;
}

/** Positions every `stepM` metres along `route`, each with its heading. */
export function along(route: Point[], stepM: number): (Point & { heading: number })[] {
  const out: (Point & { heading: number })[] = [];
  for (let i = 0; i + 1 < route.length; i++) {
    const a = route[i];
    const b = route[i + 1];
    const n = Math.max(1, Math.round(metres(a, b) / stepM));
    for (let j = 0; j < n; j++) out.push({ lat: a.lat + ((b.lat - a.lat) * j) / n, lng: a.lng + ((b.lng - a.lng) * j) / n, heading: heading(a, b) });
  }
  const last = route.at(-1)!;
  out.push({ ...last, heading: out.at(-1)?.heading ?? 0 });
  return out;
}

export function routeLengthM(route: Point[]): number {
  let m = 0;
  for (let i = 0; i + 1 < route.length; i++) m += metres(route[i], route[i + 1]);
  return m;
}
