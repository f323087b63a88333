// The desk's actions on one emergency (open, reassign hospital, assign a responder, cancel) and
// the broadcast notice; each carries the reason it is taken (audited, docs/protocol.md §11).
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { liveRoom } from "../shared/live.js";
import { LiveMap } from "../shared/map.js";
import { Priority, hhmmss } from "../shared/ui.js";

const CANCEL_REASONS = ["false_alarm", "resolved_on_scene", "patient_declined", "transported_otherwise", "duplicate", "other"];

function useAction(request) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const run = async (type, payload, done) => {
    setBusy(true);
    setMessage(null);
    try {
      const answer = await request(type, payload);
      setMessage({ ok: true, text: done(answer) });
      return answer;
    } catch (err) {
      setMessage({ ok: false, text: `${type} refused: ${err.reason?.code ?? ""} ${err.reason?.message ?? err.message}` });
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  const shown = message && html`<p class=${message.ok ? "notice" : "error"} role=${message.ok ? "status" : "alert"}>${message.text}</p>`;
  return { busy, run, shown };
}

/** The emergency's own room, joined after `open`: its live map and timeline (ops never sees `medical`). */
function OpenedEmergency({ roomId }) {
  const [state, setState] = useState(null);
  const [status, setStatus] = useState({ live: false });
  useEffect(() => {
    const r = liveRoom(roomId, { onState: setState, onStatus: setStatus });
    return () => r.stop();
  }, [roomId]);
  if (!state) return html`<p class="muted">${status.ended ? "The emergency's room closed." : "Joining the emergency…"}</p>`;
  const points = [{ kind: "patient", lat: state.patient.lat, lng: state.patient.lng }];
  for (const p of Object.values(state.firstAiders)) points.push({ kind: "first_aider", lat: p.lat, lng: p.lng, label: p.name || "First-aider" });
  for (const p of Object.values(state.ambulance)) points.push({ kind: "ambulance", lat: p.lat, lng: p.lng, label: p.name || "Ambulance" });
  if (state.hospital.id) points.push({ kind: "hospital", lat: state.hospital.lat, lng: state.hospital.lng, label: state.hospital.name });
  return html`<div class="opened">
    <${LiveMap} points=${points} height=${240} />
    <ol class="timeline">${[...state.timeline].reverse().slice(0, 8).map((e) => html`<li><span class="muted">${hhmmss(e.at)}</span> ${e.type.replaceAll("_", " ")} <span class="muted">${e.actor}${e.detail ? ` — ${e.detail}` : ""}</span></li>`)}</ol>
  </div>`;
}

export function EmergencyActions({ emergency: e, hospitals, units, request, onClose }) {
  const { busy, run, shown } = useAction(request);
  const [reason, setReason] = useState("");
  const [hospitalId, setHospitalId] = useState("");
  const [responderId, setResponderId] = useState("");
  const [cancelReason, setCancelReason] = useState("other");
  const [opened, setOpened] = useState("");
  const why = reason.trim();
  const key = () => crypto.randomUUID();
  const free = units.filter((u) => u.status === "available" || u.status === "offered");

  return html`<div class="actions" data-actions=${e.id}>
    <h2>Emergency #${e.id.slice(0, 8)} <${Priority} value=${e.priority} /> <button onClick=${onClose}>Close</button></h2>
    <p>${e.status.replace("_", " ")} · alerted ${hhmmss(e.createdAt)} · hospital ${e.hospitalId || "none"} (${e.hospitalStatus})</p>
    <label class="block">Reason (required for every action, kept in the audit log)
      <input name="reason" maxlength="200" value=${reason} onInput=${(ev) => setReason(ev.currentTarget.value)} placeholder="why" /></label>
    <div class="action-row">
      <button disabled=${busy || !why} onClick=${async () => { const a = await run("open", { emergencyId: e.id, reason: why }, () => "Opened."); if (a) setOpened(a.roomId); }}>Open</button>
    </div>
    <div class="action-row">
      <select aria-label="Hospital" value=${hospitalId} onChange=${(ev) => setHospitalId(ev.currentTarget.value)}>
        <option value="">— hospital —</option>
        ${hospitals.map((h) => html`<option value=${h.id}>${h.name}${h.divertActive ? " (on divert)" : ""}</option>`)}
      </select>
      <button disabled=${busy || !why || !hospitalId} onClick=${() => run("reassign_hospital", { emergencyId: e.id, hospitalId, reason: why, idempotencyKey: key() }, (a) => `Reassigned to ${a.hospitalId}: ${a.hospitalStatus}.`)}>Reassign hospital</button>
    </div>
    <div class="action-row">
      <select aria-label="Responder" value=${responderId} onChange=${(ev) => setResponderId(ev.currentTarget.value)}>
        <option value="">— responder on duty —</option>
        ${free.map((u) => html`<option value=${u.id}>${u.name} (${u.kind === "ambulance_crew" ? "ambulance" : "first-aider"}, ${u.status})</option>`)}
      </select>
      <button disabled=${busy || !why || !responderId} onClick=${() => run("assign_responder", { emergencyId: e.id, responderId, reason: why, idempotencyKey: key() }, () => "Responder assigned.")}>Assign responder</button>
    </div>
    <div class="action-row">
      <select aria-label="Cancel reason" value=${cancelReason} onChange=${(ev) => setCancelReason(ev.currentTarget.value)}>
        ${CANCEL_REASONS.map((r) => html`<option value=${r}>${r.replaceAll("_", " ")}</option>`)}
      </select>
      <button class="danger" disabled=${busy || !why} onClick=${() => run("cancel", { emergencyId: e.id, cancelReason, reason: why, idempotencyKey: key() }, () => "Cancelled.")}>Cancel emergency</button>
    </div>
    ${shown}
    ${opened && html`<${OpenedEmergency} roomId=${opened} />`}
  </div>`;
}

export function NoticeForm({ request }) {
  const { busy, run, shown } = useAction(request);
  const [text, setText] = useState("");
  const [reason, setReason] = useState("");
  const [region, setRegion] = useState({ lat: "", lng: "", km: "" });
  const regional = region.lat !== "" && region.lng !== "" && region.km !== "";
  const send = (ev) => {
    ev.preventDefault();
    const payload = { text: text.trim(), reason: reason.trim() };
    if (regional) payload.region = { lat: Number(region.lat), lng: Number(region.lng), radiusM: Number(region.km) * 1000 };
    void run("notice", payload, () => `Notice sent to ${regional ? `everyone within ${region.km} km` : "everyone"}.`);
  };
  const set = (k) => (ev) => setRegion({ ...region, [k]: ev.currentTarget.value });
  return html`<form class="notice-form" onSubmit=${send}>
    <h2>Broadcast a notice</h2>
    <label class="block">Notice <input name="notice" required maxlength="500" value=${text} onInput=${(ev) => setText(ev.currentTarget.value)} /></label>
    <label class="block">Reason <input name="notice-reason" required maxlength="200" value=${reason} onInput=${(ev) => setReason(ev.currentTarget.value)} /></label>
    <div class="action-row">Region (optional):
      <input aria-label="Latitude" size="8" placeholder="lat" value=${region.lat} onInput=${set("lat")} />
      <input aria-label="Longitude" size="8" placeholder="lng" value=${region.lng} onInput=${set("lng")} />
      <input aria-label="Radius in km" size="4" placeholder="km" value=${region.km} onInput=${set("km")} /></div>
    <button type="submit" disabled=${busy || !text.trim() || !reason.trim()}>Send notice</button>
    ${shown}
  </form>`;
}
