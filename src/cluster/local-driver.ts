import { LocalDriver } from "@colyseus/core";

type Listing = LocalDriver["rooms"][number];
type Conditions = Record<string, unknown>;

/**
 * Colyseus's driver for one process, with its listings also indexed by room id. Colyseus's own
 * looks a room up by copying and filtering the list of every listing, so a join by emergency id
 * cost more the more emergencies the process held; here it is one map lookup, whatever the count.
 * Every other query is Colyseus's, unchanged.
 */
export class IndexedLocalDriver extends LocalDriver {
  private readonly byId = new Map<string, Listing>();

  override async insert(room: Listing): Promise<boolean> {
    const inserted = await super.insert(room);
    if (inserted) this.byId.set(room.roomId, room);
    return inserted;
  }

  override persist(room: Listing, create = false): boolean {
    const persisted = super.persist(room, create);
    if (persisted) this.byId.set(room.roomId, room);
    return persisted;
  }

  override remove(roomId: string): boolean {
    this.byId.delete(roomId);
    return super.remove(roomId);
  }

  override clear(): void {
    this.byId.clear();
    super.clear();
  }

  override findOne(conditions: Conditions, sortOptions?: unknown): ReturnType<LocalDriver["findOne"]> {
    if (typeof conditions.roomId !== "string") return super.findOne(conditions as never, sortOptions as never);
    const room = this.byId.get(conditions.roomId);
    const found = room && matches(room, conditions) ? room : undefined;
    // the shape callers use: awaited (one listing or undefined), optionally sorted first
    const query = {
      sort: () => query,
      then: <T>(resolve: (r: Listing | undefined) => T, reject?: (e: unknown) => T) => Promise.resolve(found).then(resolve, reject),
    };
    return query as unknown as ReturnType<LocalDriver["findOne"]>;
  }
}

/** The conditions as Colyseus's local query applies them: on the listing's field, else its metadata's. */
function matches(room: Listing, conditions: Conditions): boolean {
  for (const field of Object.keys(conditions)) {
    const value = Object.hasOwn(room, field) ? (room as unknown as Conditions)[field]
      : room.metadata && Object.hasOwn(room.metadata, field) ? (room.metadata as Conditions)[field] : NOT_THERE;
    if (value !== conditions[field]) return false;
  }
  return true;
}

const NOT_THERE = Symbol("not there");
