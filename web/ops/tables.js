// The desk's live tables: emergencies, units, hospitals, nodes.
import { html } from "htm/preact";
import { Priority, duration, hhmmss } from "../shared/ui.js";

const since = (now, at) => (at > 0 ? duration((now - at) / 1000) : "—");

export function EmergencyTable({ emergencies, hospitals, now, selected, onSelect }) {
  if (emergencies.length === 0) return html`<p class="muted">No open emergencies.</p>`;
  return html`<table class="grid">
    <thead><tr><th>Priority</th><th>Status</th><th>Since alert</th><th>Hospital</th><th>ETA</th><th>Responders</th><th>Node</th><th>Waiting</th><th></th></tr></thead>
    <tbody>${emergencies.map((e) => {
      const overdue = e.waitingAccept || e.waitingAck;
      return html`<tr class=${`${overdue ? "overdue" : ""}${selected === e.id ? " selected" : ""}`} data-emergency=${e.id}>
        <td><${Priority} value=${e.priority} /></td>
        <td>${e.status.replace("_", " ")}</td>
        <td class="num">${since(now, e.createdAt)}</td>
        <td>${e.hospitalId ? `${hospitals[e.hospitalId]?.name ?? e.hospitalId} (${e.hospitalStatus})` : "none yet"}</td>
        <td class="num">${e.etaSeconds >= 0 ? duration(e.etaSeconds) : "—"}</td>
        <td>${e.firstAiders.length} first-aider${e.firstAiders.length === 1 ? "" : "s"}, ${e.ambulance.length ? "ambulance" : "no ambulance"}${e.searching ? ` · searching (${e.offersOut} offers)` : ""}</td>
        <td>${e.node}</td>
        <td>${e.waitingAccept ? html`<b class="flag">⚠ NO RESPONDER</b>` : ""} ${e.waitingAck ? html`<b class="flag">⚠ NOT ACKNOWLEDGED</b>` : ""}</td>
        <td><button onClick=${() => onSelect(e.id)} aria-label=${`Select emergency ${e.id}`}>Select</button></td>
      </tr>`;
    })}</tbody>
  </table>`;
}

export function UnitBoard({ units, now }) {
  if (units.length === 0) return html`<p class="muted">No responder on duty.</p>`;
  const order = { assigned: 0, offered: 1, available: 2, unavailable: 3 };
  const sorted = [...units].sort((a, b) => (order[a.status] ?? 9) - (order[b.status] ?? 9) || a.name.localeCompare(b.name));
  return html`<table class="grid">
    <thead><tr><th>Unit</th><th>Kind</th><th>Status</th><th>Duty position</th><th>Node</th></tr></thead>
    <tbody>${sorted.map((u) => html`<tr data-unit=${u.id}>
      <td>${u.name}</td>
      <td>${u.kind === "ambulance_crew" ? "ambulance" : "first-aider"}</td>
      <td class=${`unit-${u.status}`}>${u.status.toUpperCase()}${u.status === "assigned" ? ` #${u.assignedTo.slice(0, 8)}` : u.status === "offered" ? ` (${u.offers})` : ""}${u.online ? "" : " · offline"}</td>
      <td>${u.updatedAt > 0 ? `${since(now, u.updatedAt)} ago` : "none yet"}</td>
      <td>${u.node}</td>
    </tr>`)}</tbody>
  </table>`;
}

export function HospitalTable({ hospitals }) {
  return html`<table class="grid">
    <thead><tr><th>Hospital</th><th>Beds</th><th>ICU</th><th>Accepting</th><th>Divert</th><th>Incoming</th></tr></thead>
    <tbody>${hospitals.map((h) => html`<tr>
      <td>${h.name}</td><td class="num">${h.emergencyBeds}</td><td class="num">${h.icuBeds}</td>
      <td>${h.accepting ? "yes" : html`<b class="flag">NO</b>`}</td>
      <td>${h.divertActive ? html`<b class="flag">ON DIVERT${h.divertSpecialties.length ? ` (${h.divertSpecialties.join(", ")})` : ""} until ${hhmmss(h.divertUntil)}</b>` : "—"}</td>
      <td class="num">${h.incoming}</td>
    </tr>`)}</tbody>
  </table>`;
}

export function NodeTable({ nodes }) {
  return html`<table class="grid">
    <thead><tr><th>Node</th><th>State</th><th>Emergencies</th><th>Rooms</th><th>Sockets</th><th>Memory</th><th>CPU</th></tr></thead>
    <tbody>${nodes.map((n) => html`<tr class=${n.alive ? "" : "overdue"}>
      <td>${n.name}</td><td>${n.alive ? "ALIVE" : html`<b class="flag">NOT SEEN</b>`}</td>
      <td class="num">${n.emergencies}</td><td class="num">${n.rooms}</td><td class="num">${n.clients}</td>
      <td class="num">${n.rssMb} MB</td><td class="num">${n.cpuPercent} %</td>
    </tr>`)}</tbody>
  </table>`;
}
