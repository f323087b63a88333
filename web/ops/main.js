// The operations desk: the whole cluster live from the `ops` room (docs/protocol.md §11), and the
// desk's audited actions, each with a reason.
import { html } from "htm/preact";
import { render } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { liveRoom } from "../shared/live.js";
import { currentSession, onSession, signOut } from "../shared/session.js";
import { Connection, PRIORITY_RANK, SignIn, hhmmss, useTick } from "../shared/ui.js";
import { LiveMap } from "../shared/map.js";
import { EmergencyTable, HospitalTable, NodeTable, UnitBoard } from "./tables.js";
import { EmergencyActions, NoticeForm } from "./actions.js";

const ROLES = ["ops_admin"];
const STATUS_ORDER = ["alerted", "dispatched", "on_scene", "transporting", "at_hospital"];

function App() {
  const [session, setSession] = useState(currentSession());
  useEffect(() => onSession(setSession), []);
  if (!session || !ROLES.includes(session.user.role)) {
    return html`<${SignIn} title="Operations desk — sign-in" roles=${ROLES} onSignedIn=${setSession} />`;
  }
  return html`<${Desk} user=${session.user} />`;
}

function Desk({ user }) {
  const [ops, setOps] = useState(null);
  const [status, setStatus] = useState({ live: false, since: Date.now() });
  const [selected, setSelected] = useState("");
  const room = useRef(null);
  const now = useTick(1000);
  useEffect(() => {
    const r = liveRoom("ops", { onState: setOps, onStatus: setStatus });
    room.current = r;
    return () => r.stop();
  }, []);
  const request = (type, payload) => room.current.request(type, payload);

  const emergencies = useMemo(() => Object.values(ops?.emergencies ?? {}).sort((a, b) =>
    (b.waitingAccept || b.waitingAck) - (a.waitingAccept || a.waitingAck)
    || (PRIORITY_RANK[a.priority] ?? 9) - (PRIORITY_RANK[b.priority] ?? 9)
    || a.createdAt - b.createdAt), [ops]);
  const counts = STATUS_ORDER.map((s) => [s, emergencies.filter((e) => e.status === s).length]);
  const overdue = emergencies.filter((e) => e.waitingAccept || e.waitingAck).length;
  const units = Object.values(ops?.units ?? {});
  const hospitals = Object.values(ops?.hospitals ?? {});
  const chosen = ops?.emergencies?.[selected];
  const points = useMemo(() => [
    ...emergencies.map((e) => ({ kind: "patient", lat: e.lat, lng: e.lng, label: `${e.priority} · ${e.id.slice(0, 8)}` })),
    ...units.filter((u) => u.updatedAt > 0).map((u) => ({ kind: u.kind === "ambulance_crew" ? "ambulance" : "first_aider", lat: u.lat, lng: u.lng, label: u.name })),
    ...hospitals.map((h) => ({ kind: "hospital", lat: h.lat, lng: h.lng, label: h.name })),
  ], [ops]);

  return html`
    <header class="top">
      <h1>Operations desk</h1>
      <span class="counts">${counts.map(([s, n]) => html`<span class="count">${s.replace("_", " ")}: <b>${n}</b></span>`)}
        ${overdue > 0 ? html`<span class="count overdue-count">OVERDUE: <b>${overdue}</b></span>` : ""}</span>
      <span class="spacer"></span>
      <${Connection} status=${status} />
      <span class="muted">refreshed ${hhmmss(ops?.refreshedAt ?? 0)}</span>
      <span class="clock">${hhmmss(now)}</span>
      <button onClick=${signOut} title=${`Signed in as ${user.name}`}>Sign out</button>
    </header>
    <main class="desk">
      <section class="panel wide">
        <h2>Emergencies (${emergencies.length})</h2>
        <${EmergencyTable} emergencies=${emergencies} hospitals=${ops?.hospitals ?? {}} now=${now} selected=${selected} onSelect=${setSelected} />
      </section>
      <section class="panel">
        ${chosen
          ? html`<${EmergencyActions} key=${chosen.id} emergency=${chosen} hospitals=${hospitals} units=${units} request=${request} onClose=${() => setSelected("")} />`
          : html`<h2>Actions</h2><p class="muted">Select an emergency to open it, reassign its hospital, assign a responder or cancel it.</p>`}
        <${NoticeForm} request=${request} />
      </section>
      <section class="panel"><h2>Map</h2><${LiveMap} points=${points} height=${340} labels=${false} /></section>
      <section class="panel"><h2>Units (${units.length})</h2><${UnitBoard} units=${units} now=${now} /></section>
      <section class="panel"><h2>Hospitals</h2><${HospitalTable} hospitals=${hospitals} /></section>
      <section class="panel"><h2>Nodes</h2><${NodeTable} nodes=${Object.values(ops?.nodes ?? {})} /></section>
    </main>`;
}

const mount = document.getElementById("app");
mount.textContent = ""; // the "Loading…" placeholder
render(html`<${App} />`, mount);
