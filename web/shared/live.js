// A room a page stays joined to: joins by id, rejoins by itself with backoff after a network drop,
// a server restart or a node failover (docs/protocol.md §1, "Reconnection"), and reports whether
// it is live or since when what it shows is stale.
import { Client } from "@colyseus/sdk";
import { accessToken, refresh } from "./session.js";

/** Close codes after which rejoining is pointless: we left, not entitled, the emergency is over. */
const FINAL = new Set([4000, 4403, 4410]);

/**
 * `onState(plainState)` after every patch; `onStatus({ live, since, ended?, error? })` when the
 * connection changes: `since` is when the shown state was last known to be current;
 * `onNotice({ id, text, at, region })` for an operations notice; `messages`: other message
 * handlers by type.
 */
export function liveRoom(roomId, { onState, onStatus, onNotice, messages = {}, maxDelayMs = 8000, pingEveryMs = 5000, pingTimeoutMs = 4000 }) {
  let room;
  let stopped = false;
  let attempt = 0;
  let timer;
  let heartbeat;
  let lastGood = Date.now();

  const status = (s) => onStatus?.({ since: lastGood, ...s });

  async function connect() {
    if (stopped) return;
    try {
      const client = new Client(location.origin);
      client.auth.token = await accessToken();
      const joined = await client.joinById(roomId);
      if (stopped) { void joined.leave(); return; }
      // our own rejoin by id replaces the SDK's seat reconnect: after a restart or a failover the
      // old seat is gone, and a join by id works in every case
      joined.reconnection.enabled = false;
      room = joined;
      attempt = 0;
      joined.onMessage("error", (e) => console.warn("haven refused a message", e));
      // an operations notice to the parties of an emergency (docs/protocol.md §11)
      joined.onMessage("notice", (n) => onNotice?.(n));
      for (const [type, handler] of Object.entries(messages)) joined.onMessage(type, handler);
      joined.onStateChange((state) => {
        lastGood = Date.now();
        onState(state.toJSON());
      });
      joined.onLeave((code) => {
        if (room !== joined) return; // a socket this page already gave up on
        room = undefined;
        clearInterval(heartbeat);
        if (stopped) return;
        if (FINAL.has(code)) return status({ live: false, ended: code });
        status({ live: false });
        retry();
      });
      lastGood = Date.now();
      status({ live: true });
      // a network that silently stopped carrying packets closes nothing: a PING (docs/protocol.md
      // §10) unanswered within pingTimeoutMs gives this socket up and joins again
      clearInterval(heartbeat);
      heartbeat = setInterval(() => {
        let answered = false;
        joined.ping(() => { answered = true; lastGood = Date.now(); });
        setTimeout(() => {
          if (answered || room !== joined || stopped) return;
          room = undefined;
          clearInterval(heartbeat);
          void joined.leave(false).catch(() => {});
          status({ live: false });
          retry();
        }, pingTimeoutMs);
      }, pingEveryMs);
    } catch (error) {
      if (stopped) return;
      // a refused join: 401 the token (refresh, then retry); 403/4403 not entitled; 404 the room is gone
      const code = error?.code;
      if (code === 401 || code === 4401) await refresh();
      if (code === 4403 || code === 4410) return status({ live: false, ended: code, error: error.message });
      status({ live: false, error: error?.message });
      retry();
    }
  }

  function retry() {
    clearTimeout(timer);
    const delay = Math.min(maxDelayMs, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
    attempt = Math.min(attempt + 1, 10);
    timer = setTimeout(connect, delay);
  }

  void connect();
  return {
    /** A room request; rejects at once while not connected (nothing is queued on a wall screen). */
    request(type, payload) {
      if (!room) return Promise.reject(Object.assign(new Error("not connected: wait for the board to reconnect"), { reason: { code: "UNAVAILABLE" } }));
      return room.request(type, payload);
    },
    stop() {
      stopped = true;
      clearInterval(heartbeat);
      clearTimeout(timer);
      void room?.leave();
      room = undefined;
    },
  };
}
