// The hospital wallboard: the emergencies coming to this hospital, live, on a wall screen.
// It joins `hospital-<id>` (the board) and each active emergency's own room (positions, vitals,
// timeline: staff of the receiving hospital are entitled to it), and acts through the board's
// messages (docs/protocol.md §3, `hospital` room).
import { html } from "htm/preact";
import { render } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { liveRoom } from "../shared/live.js";
import { currentSession, onSession, signOut } from "../shared/session.js";
import { Connection, PRIORITY_RANK, SignIn, hhmmss, useTick } from "../shared/ui.js";
import { EmergencyCard } from "./card.js";
import { HospitalControls } from "./controls.js";

const ROLES = ["hospital_staff", "hospital_admin"];
const ACTIVE = new Set(["notified", "acknowledged"]);

function App() {
  const [session, setSession] = useState(currentSession());
  useEffect(() => onSession(setSession), []);
  if (!session || !ROLES.includes(session.user.role)) {
    return html`<${SignIn} title="Hospital wallboard — staff sign-in" roles=${ROLES} onSignedIn=${setSession} />`;
  }
  return html`<${Board} user=${session.user} />`;
}

/** Keeps one live room per active emergency; returns emergencyId → its plain state. */
function useEmergencyRooms(ids, onNotice) {
  const rooms = useRef(new Map());
  const [states, setStates] = useState({});
  const key = ids.join(",");
  useEffect(() => {
    for (const id of ids) {
      if (rooms.current.has(id)) continue;
      rooms.current.set(id, liveRoom(id, {
        onState: (s) => setStates((all) => ({ ...all, [id]: s })),
        onStatus: () => {},
        onNotice,
      }));
    }
    for (const [id, r] of rooms.current) {
      if (ids.includes(id)) continue;
      r.stop();
      rooms.current.delete(id);
    }
  }, [key]);
  useEffect(() => () => { for (const r of rooms.current.values()) r.stop(); }, []);
  return states;
}

/** The ETA counted down locally from when each value arrived (the board updates it at most once a second). */
function useEtaClock(incoming) {
  const seen = useRef(new Map());
  const now = useTick(1000);
  const eta = {};
  for (const e of incoming) {
    const last = seen.current.get(e.emergencyId);
    if (!last || last.value !== e.etaSeconds) seen.current.set(e.emergencyId, { value: e.etaSeconds, at: Date.now() });
    const { value, at } = seen.current.get(e.emergencyId);
    eta[e.emergencyId] = value < 0 ? -1 : Math.max(0, value - (now - at) / 1000);
  }
  return { eta, now };
}

function Board({ user }) {
  const [board, setBoard] = useState(null);
  const [status, setStatus] = useState({ live: false, since: Date.now() });
  const roomRef = useRef(null);
  useEffect(() => {
    // chat arrives here as messages too (docs/protocol.md §12); the cards show it from each emergency's own state
    const r = liveRoom(`hospital-${user.hospitalId}`, { onState: setBoard, onStatus: setStatus, messages: { chat: () => {} } });
    roomRef.current = r;
    return () => r.stop();
  }, [user.hospitalId]);

  const incoming = useMemo(() => Object.values(board?.incoming ?? {}).sort((a, b) =>
    (ACTIVE.has(b.hospitalStatus) - ACTIVE.has(a.hospitalStatus))
    || (PRIORITY_RANK[a.priority] ?? 9) - (PRIORITY_RANK[b.priority] ?? 9)
    || b.notifiedAt - a.notifiedAt), [board]);
  const activeIds = incoming.filter((e) => ACTIVE.has(e.hospitalStatus)).map((e) => e.emergencyId);
  const [notice, setNotice] = useState(null);
  const details = useEmergencyRooms(activeIds, setNotice);
  const { eta, now } = useEtaClock(incoming);
  const request = (type, payload) => roomRef.current.request(type, payload);

  return html`
    <header class="top">
      <h1>${board?.name ?? "Hospital"} <span class="muted">— incoming</span></h1>
      ${board && html`<span class="open-beds">Emergency beds: <b>${board.emergencyBeds}</b> · ICU: <b>${board.icuBeds}</b> · ${board.accepting ? html`<b>ACCEPTING</b>` : html`<b class="notice">NOT ACCEPTING</b>`}</span>`}
      ${board?.divertActive && html`<span class="divert" role="status">ON DIVERT${board.divertSpecialties.length ? ` (${board.divertSpecialties.join(", ")})` : " (all patients)"} until ${hhmmss(board.divertUntil)} — ${board.divertReason}</span>`}
      <span class="spacer"></span>
      <${Connection} status=${status} />
      <span class="clock">${hhmmss(now)}</span>
      <button onClick=${signOut} title=${`Signed in as ${user.name}`}>Sign out</button>
    </header>
    ${notice && html`<p class="ops-notice" role="alert">OPERATIONS NOTICE ${hhmmss(notice.at)}: ${notice.text} <button onClick=${() => setNotice(null)}>Dismiss</button></p>`}
    ${incoming.length === 0
      ? html`<p class="empty">${board ? "No emergencies incoming." : "Connecting to the board…"}</p>`
      : html`<section class="board">${incoming.map((e) => html`<${EmergencyCard} key=${e.emergencyId} entry=${e} eta=${eta[e.emergencyId]} detail=${details[e.emergencyId]} user=${user} hospital=${board} request=${request} />`)}</section>`}
    ${board && html`<${HospitalControls} board=${board} request=${request} />`}
  `;
}

const mount = document.getElementById("app");
mount.textContent = ""; // the "Loading…" placeholder
render(html`<${App} />`, mount);
