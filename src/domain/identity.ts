/**
 * The one spelling of Haven's small naming rules: ids, room ids derived from them, and the roles
 * that act for a hospital.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Emergencies and accounts are named by UUIDs. */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}

const HOSPITAL_ROOM_PREFIX = "hospital-";

/** The hospital wallboard room of a hospital. */
export function hospitalRoomId(hospitalId: string): string {
  return HOSPITAL_ROOM_PREFIX + hospitalId;
}

/** The hospital whose wallboard room this is, or undefined for another room. */
export function hospitalIdOfRoom(roomId: string): string | undefined {
  return roomId.startsWith(HOSPITAL_ROOM_PREFIX) ? roomId.slice(HOSPITAL_ROOM_PREFIX.length) : undefined;
}

/** Staff and administrators of a hospital act for it. */
export function actsForHospital(role: string): role is "hospital_staff" | "hospital_admin" {
  return role === "hospital_staff" || role === "hospital_admin";
}

/** The operations desk's room: one per cluster, reopened on a live node when its node dies. */
export const OPS_ROOM_ID = "ops";
