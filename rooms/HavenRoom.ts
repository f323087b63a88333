import { type Client, type AuthContext, Room, ServerError, Protocol, ResponseStatus, getMessageBytes, ClientState } from "@colyseus/core";
import type { Principal, Role } from "../src/auth/tokens.ts";
import { HavenError, toWireError } from "../src/protocol/errors.ts";
import { HavenCloseCode } from "../src/protocol/close-codes.ts";
import { decodeMessageFrame, isMessageFrame, type DecodedFrame } from "../src/protocol/frames.ts";
import { validate, type SchemaName } from "../src/protocol/validate.ts";
import { services } from "../src/services.ts";
import { heldElsewhere } from "../src/cluster/rooms.ts";
import { EventClock, patchOnChange, requestPatch, type ChangeRoot } from "./patches.ts";
import { colyseus } from "../src/colyseus.ts";

/** A socket message the room accepts: its payload schema, who may send it, what it does. */
export interface MessageHandler<R> {
  schema: SchemaName;
  /** Roles allowed to send it; the handler may narrow further (e.g. only the assigned responder). */
  roles: readonly Role[];
  run(this: R, client: HavenClient, payload: any): unknown;
}

export type HavenClient = Client & { auth: Principal };

/** The encoded type reflection sent to every joining client, per state class. */
const HANDSHAKES = new Map<Function, Uint8Array>();

/** The join option, set by the server at the seat reservation, naming the subject the seat is for. */
export const SEAT_SUBJECT = "havenSeatSubject";

/** Stands in for a simulation interval that Haven's rooms do not run. */
const NO_TICK = Object.freeze({});

/** A client's message count in the current one-second window, kept on the client. */
interface RateWindow { rateResetAt: number; rateCount: number }

/**
 * Base of Haven's room actors. It owns the message pipeline: every ROOM_DATA and ROOM_REQUEST
 * frame is size-checked, rate-limited, decoded with a restricted msgpack decoder, validated
 * against a compiled schema and authorized by role before a handler sees it; any failure is
 * answered with `{ code, message }` (a rejected request, or an "error" message for a plain send)
 * and changes nothing. Frames Colyseus owns (join acknowledgement, ping, leave) pass through.
 */
export abstract class HavenRoom<S extends object> extends Room<{ state: S; client: HavenClient }> {
  protected abstract readonly handlers: Record<string, MessageHandler<any>>;

  constructor() {
    super();
    // No per-room tick: patches go out when the state changed (patches.ts), and room timers run
    // on the event loop's own timers. A truthy simulation interval keeps Colyseus from starting
    // its 16 ms clock tick when the patch rate is off (it only ever clears it).
    this.clock = new EventClock() as unknown as Room["clock"];
    colyseus.disableTick(this, NO_TICK);
    colyseus.wrapOnMessage(this, (colyseusOnMessage) => (client: HavenClient, buffer: Buffer) => {
      if (!buffer || buffer.byteLength === 0) return;
      if (isMessageFrame(buffer)) {
        this.onFrame(client, buffer);
        return;
      }
      colyseusOnMessage.call(this, client, buffer);
    });
    colyseus.wrapOnJoin(this, (colyseusOnJoin) => async (client: HavenClient, ...rest: unknown[]) => {
      try {
        return await colyseusOnJoin.call(this, client, ...rest);
      } finally {
        colyseus.forgetUpgrade(client);
      }
    });
  }

  /** Sets the state and makes every change of it ask for a patch. */
  setState(state: S): void {
    super.setState(state);
    // the handshake (the state's type reflection) is the same for every room of a state class:
    // encoded once per class and shared, instead of once per room
    const serializer = colyseus.serializer(this);
    let handshake = HANDSHAKES.get(state.constructor);
    if (!handshake && serializer.handshake) {
      handshake = serializer.handshake();
      HANDSHAKES.set(state.constructor, handshake);
    }
    serializer.handshakeCache = handshake;
    patchOnChange(this, serializer.encoder.root);
    // the state's first changes were queued before the watch began
    requestPatch(this);
  }

  /** The state's queue of dirty change trees (to hold some changes back from patches). */
  protected changeRoot(): ChangeRoot {
    return colyseus.serializer(this).encoder.root as unknown as ChangeRoot;
  }

  /** Sends pending changes on the next event-loop turn (after a held patch is released). */
  protected requestPatch(): void {
    requestPatch(this);
  }

  /** Whether this room won its id cluster-wide (a losing duplicate is discarded and must not release it). */
  private holdsId = false;

  /**
   * Claims this room's id for this process, cluster-wide; throws when another live process
   * holds it (the caller then joins that one). Called first in every onCreate.
   */
  protected async claimId(): Promise<void> {
    if (!(await services().membership.claim(this.roomId))) throw heldElsewhere(this.roomId);
    this.holdsId = true;
  }

  /** Gives the id up (at dispose); a no-op for a room that never held it. */
  protected releaseId(): void {
    if (!this.holdsId) return;
    this.holdsId = false;
    void services().membership.release(this.roomId);
  }

  private relinquished = false;

  /**
   * Another process holds this room's id now (this node was cut off long enough to be declared
   * dead): the room gives nothing up when it goes, since the id is not its to give; it takes no
   * new seats and waits for none, and every party is closed with 4421 and rejoins by id, which
   * leads it to the new holder.
   */
  relinquish(): void {
    if (this.relinquished) return;
    this.relinquished = true;
    this.holdsId = false;
    // Colyseus removes a disposed room's listing by its id, which is the new holder's listing now
    const listing = colyseus.listing(this);
    if (listing) listing.roomId = `${this.roomId}:lost`;
    colyseus.closeSeats(this, (sessionId) => this.clients.getById(sessionId) !== undefined);
    this.disconnect(HavenCloseCode.MOVED).catch(() => {});
  }

  isRelinquished(): boolean {
    return this.relinquished;
  }

  protected get holdsRoomId(): boolean {
    return this.holdsId;
  }

  /** Verifies the bearer token for a join; the subclass then decides entitlement. */
  protected async authenticate(context: AuthContext): Promise<Principal> {
    try {
      return await services().tokens.verify(context.token);
    } catch (error) {
      const e = error instanceof HavenError ? error : new HavenError("TOKEN_INVALID", "the token is not valid");
      throw refuse(HavenCloseCode.UNAUTHORIZED, e.code, e.message);
    }
  }

  /**
   * The subject a seat here belongs to, for the check at the socket upgrade: the caller who
   * reserved it (a join), or the party that held it (a reconnect).
   */
  subjectOfSession(sessionId: string): string | undefined {
    const seat = colyseus.seat(this, sessionId);
    const reservedBy = seat?.options?.[SEAT_SUBJECT];
    if (typeof reservedBy === "string") return reservedBy;
    const auth = (seat?.auth as Principal | undefined) ?? (this.clients.getById(sessionId)?.auth as Principal | undefined);
    return auth?.sub;
  }

  private onFrame(client: HavenClient, buffer: Buffer): void {
    if (client.state === ClientState.LEAVING) return;
    const { limits } = services().config;
    const frame = decodeMessageFrame(buffer, limits.maxFrameBytes);

    // the window lives on the client itself: nothing is allocated per message or per second
    const now = Date.now();
    const w = client as HavenClient & Partial<RateWindow>;
    if (w.rateResetAt === undefined || now >= w.rateResetAt) {
      w.rateResetAt = now + 1000;
      w.rateCount = 0;
    }
    w.rateCount = w.rateCount! + 1;
    const count = w.rateCount;
    if (count > limits.maxMessagesPerSecond * 3) {
      client.leave(HavenCloseCode.RATE_LIMITED, "RATE_LIMITED");
      return;
    }
    if (count > limits.maxMessagesPerSecond) {
      this.answer(client, frame, new HavenError("RATE_LIMITED", `at most ${limits.maxMessagesPerSecond} messages per second`));
      return;
    }
    if (frame.error) {
      this.answer(client, frame, frame.error);
      return;
    }
    const handler = Object.hasOwn(this.handlers, frame.type!) ? this.handlers[frame.type!] : undefined;
    if (!handler) {
      this.answer(client, frame, new HavenError("UNKNOWN_MESSAGE", `unknown message "${frame.type}"`));
      return;
    }
    let result: unknown;
    try {
      if (!handler.roles.includes(client.auth.role)) {
        throw new HavenError("FORBIDDEN", `a ${client.auth.role} may not send "${frame.type}"`);
      }
      const payload = validate(handler.schema, frame.payload);
      result = handler.run.call(this, client, payload);
    } catch (error) {
      this.answer(client, frame, error);
      return;
    }
    if (result instanceof Promise) {
      result.then((value) => this.answer(client, frame, undefined, value), (error) => this.answer(client, frame, error));
    } else {
      this.answer(client, frame, undefined, result);
    }
  }

  /** Replies to a request with its outcome; a failed plain send gets an "error" message. */
  private answer(client: HavenClient, frame: DecodedFrame, error?: unknown, value?: unknown): void {
    if (error !== undefined && !(error instanceof HavenError)) {
      services().log.error({ err: error, room: this.roomName, roomId: this.roomId, type: frame.type }, "message handler failed");
    }
    if (client.state === ClientState.LEAVING) return;
    const wire = error === undefined ? undefined : toWireError(error);
    if (frame.kind === "request" && frame.requestId !== undefined) {
      const bytes = wire === undefined
        ? getMessageBytes[Protocol.ROOM_RESPONSE](frame.requestId, ResponseStatus.OK, value ?? { ok: true })
        : getMessageBytes[Protocol.ROOM_RESPONSE](frame.requestId, ResponseStatus.REJECTED, wire);
      client.enqueueRaw(bytes);
    } else if (wire !== undefined) {
      client.send("error", { ...wire, type: frame.type ?? null });
    }
  }
}

/** A join refusal: the SDK sees `code` as the numeric error and the stable code first in the message. */
export function refuse(closeCode: number, code: string, message: string): ServerError {
  return new ServerError(closeCode, `${code}: ${message}`);
}
