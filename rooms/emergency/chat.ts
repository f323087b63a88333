import type { Principal } from "../../src/auth/tokens.ts";
import type { Config } from "../../src/config.ts";
import { mayChat } from "../../src/domain/entitlement.ts";
import { hospitalRoomId } from "../../src/domain/identity.ts";
import { isClosed } from "../../src/domain/status.ts";
import { HavenError } from "../../src/protocol/errors.ts";
import { ChatMessage } from "../schema/EmergencyState.ts";
import type { EmergencyContext } from "./context.ts";

/** What a chat message looks like on the wire (the `chat` message of the wallboard, and `EmergencyState.chat.messages`). */
export interface ChatView {
  seq: number;
  at: number;
  from: string;
  role: string;
  name: string;
  text: string;
  clientId: string;
}

export interface ChatDeps {
  ctx: EmergencyContext;
  config: Config["chat"];
  /** Keeps a chat message in the timeline (its text sealed at rest, like every note): its sequence number. */
  record(actor: string, text: string, at: number): number;
  /** The chat changed: the next snapshot must hold it (sealed). */
  changed(): void;
}

const WINDOW_MS = 60_000;

/**
 * The chat of one emergency between the patient, the assigned responders and the receiving
 * hospital (src/domain/entitlement.ts `mayChat`): each message is checked (open emergency, sender
 * entitled, length, the sender's rate), kept in the timeline (sealed at rest) and in the state's
 * `chat` (the newest `HAVEN_CHAT_KEEP`, seen only through the chat's views), and mirrored to the
 * receiving hospital's wallboard as a `chat` message. A resend with the same `clientId` is answered
 * as the first and kept once.
 */
export class EmergencyChat {
  private readonly d: ChatDeps;
  /** Each sender's message times in the last minute. */
  private readonly sent = new Map<string, number[]>();

  constructor(deps: ChatDeps) {
    this.d = deps;
  }

  send(p: Principal, text: string, clientId?: string): { ok: true; seq: number; duplicate?: true } {
    const { ctx, config } = this.d;
    const state = ctx.state;
    if (isClosed(state.status)) throw new HavenError("EMERGENCY_CLOSED", `the emergency is ${state.status}`);
    if (!mayChat(state, p)) throw new HavenError("NOT_ENTITLED", "only the patient, the assigned responders and the receiving hospital take part in the chat");
    const from = `${p.role}:${p.sub}`;
    if (clientId) {
      const earlier = [...state.chat.messages].find((m) => m.from === from && m.clientId === clientId);
      if (earlier) return { ok: true, seq: earlier.seq, duplicate: true };
    }
    const length = [...text].length;
    if (length > config.maxChars) {
      throw new HavenError("INVALID_PAYLOAD", `a chat message has at most ${config.maxChars} characters`, [{ field: "text", rule: "maxChars", message: `at most ${config.maxChars} characters (${length} given)` }]);
    }
    const now = ctx.clock.now();
    const times = (this.sent.get(from) ?? []).filter((t) => now - t < WINDOW_MS);
    if (times.length >= config.perSenderPerMinute) {
      throw new HavenError("RATE_LIMITED", `at most ${config.perSenderPerMinute} chat messages a minute per sender`, undefined, { retryAfterSeconds: Math.max(1, Math.ceil((times[0] + WINDOW_MS - now) / 1000)) });
    }
    times.push(now);
    this.sent.set(from, times);

    const message = new ChatMessage();
    Object.assign(message, { seq: this.d.record(from, text, now), at: now, from, role: p.role, name: this.nameOf(p), text, clientId: clientId ?? "" });
    state.chat.messages.push(message);
    while (state.chat.messages.length > config.keep) state.chat.messages.shift();
    this.d.changed();
    this.toWallboard(message);
    return { ok: true, seq: message.seq };
  }

  /** The chat as a restored snapshot held it. */
  restore(saved: unknown): void {
    const chat = this.d.ctx.state.chat.messages;
    chat.clear();
    const messages = (saved as { messages?: unknown } | undefined)?.messages;
    for (const m of Array.isArray(messages) ? messages as ChatView[] : []) {
      const message = new ChatMessage();
      Object.assign(message, { seq: m.seq, at: m.at, from: m.from, role: m.role, name: m.name ?? "", text: m.text ?? "", clientId: m.clientId ?? "" });
      chat.push(message);
    }
  }

  private nameOf(p: Principal): string {
    const state = this.d.ctx.state;
    if (p.role === "patient") return state.patient.name;
    if (p.role === "first_aider") return state.firstAiders.get(p.sub)?.name ?? "";
    if (p.role === "ambulance_crew") return state.ambulance.get(p.sub)?.name ?? "";
    return state.hospital.name;
  }

  /** The receiving hospital's wallboard gets every message while the hospital receives the patient. */
  private toWallboard(m: ChatMessage): void {
    const { ctx } = this.d;
    const link = ctx.state.hospital;
    if (!link.id || link.status === "none") return;
    const view: ChatView & { emergencyId: string } = { emergencyId: ctx.roomId, seq: m.seq, at: m.at, from: m.from, role: m.role, name: m.name, text: m.text, clientId: m.clientId };
    void ctx.call(hospitalRoomId(link.id), "chatMessage", [view])
      .catch((error) => ctx.log.warn({ err: error, emergencyId: ctx.roomId }, "hospital room unreachable"));
  }
}
