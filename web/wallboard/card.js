// One incoming emergency on the wallboard: priority, ETA, handover summary, latest vitals, a
// live map, the readiness checklist, who acknowledged and when, and the staff's actions.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { LiveMap } from "../shared/map.js";
import { Priority, duration, hhmmss } from "../shared/ui.js";

const VITALS = [
  ["heartRate", "HR", (v) => `${v}`, "bpm"],
  ["bp", "BP", (v) => v, "mmHg"],
  ["spo2", "SpO₂", (v) => `${v}`, "%"],
  ["respiratoryRate", "RR", (v) => `${v}`, "/min"],
  ["temperature", "Temp", (v) => v.toFixed(1), "°C"],
];

/** The newest sample of each vital across the senders (first-aider, crew). */
function latestVitals(medical) {
  const samples = Object.values(medical?.vitals ?? {}).sort((a, b) => a.at - b.at);
  const v = {};
  let at = 0;
  for (const s of samples) {
    for (const k of ["heartRate", "systolic", "diastolic", "spo2", "respiratoryRate", "temperature"]) if (s[k] >= 0) v[k] = s[k];
    at = Math.max(at, s.at);
  }
  if (v.systolic >= 0 && v.diastolic >= 0) v.bp = `${v.systolic}/${v.diastolic}`;
  return { v, at };
}

function Vitals({ medical, alerts }) {
  const { v, at } = latestVitals(medical);
  const flag = (key) => {
    const names = key === "bp" ? ["systolic", "diastolic"] : [key];
    const a = alerts.find((x) => names.includes(x.split(":")[0]));
    return a ? ` ${a.split(":")[1].toUpperCase()}` : "";
  };
  if (at === 0 && alerts.length === 0) return html`<div class="vitals muted">No vitals yet</div>`;
  return html`<div class="vitals" aria-label="Latest vitals">
    ${VITALS.map(([key, label, fmt, unit]) => {
      const f = flag(key);
      return html`<span class=${f ? "vital-out" : ""}>${label} ${v[key] !== undefined ? fmt(v[key]) : "—"} ${unit}${f && html` ⚠${f}`}</span>`;
    })}
    ${at > 0 && html`<span class="muted">at ${hhmmss(at)}</span>`}
  </div>`;
}

function mapPoints(detail) {
  if (!detail) return [];
  const pts = [{ kind: "patient", lat: detail.patient?.lat, lng: detail.patient?.lng }];
  for (const p of Object.values(detail.firstAiders ?? {})) pts.push({ kind: "first_aider", lat: p.lat, lng: p.lng, label: "First-aider" });
  for (const p of Object.values(detail.ambulance ?? {})) pts.push({ kind: "ambulance", lat: p.lat, lng: p.lng, label: "Ambulance" });
  if (detail.hospital?.id) pts.push({ kind: "hospital", lat: detail.hospital.lat, lng: detail.hospital.lng, label: detail.hospital.name });
  return pts;
}

function acknowledgedBy(detail, user) {
  const ev = [...(detail?.timeline ?? [])].reverse().find((e) => e.type === "hospital_acknowledged");
  if (!ev) return "";
  const [role, id] = ev.actor.split(":");
  return id === user.id ? `you (${user.name})` : `${role.replace("_", " ")} ${id.slice(0, 8)}`;
}

/** The emergency's chat (docs/protocol.md §12): the newest messages, and a line to answer the crew. */
function Chat({ messages, send }) {
  const [text, setText] = useState("");
  const submit = async (ev) => {
    ev.preventDefault();
    if (!text.trim()) return;
    if (await send(text.trim())) setText("");
  };
  return html`<div class="chat" aria-label="Chat with the crew">
    <ol>${messages.slice(-4).map((m) => html`<li><span class="muted">${hhmmss(m.at)}</span> <b>${m.name}</b>: ${m.text}</li>`)}</ol>
    <form class="inline" onSubmit=${submit}>
      <input aria-label="Message to the crew" placeholder="message to the crew" maxlength="500" value=${text} onInput=${(ev) => setText(ev.currentTarget.value)} />
      <button type="submit" disabled=${!text.trim()}>Send</button>
    </form>
  </div>`;
}

export function EmergencyCard({ entry: e, eta, detail, user, request }) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState("");
  const [declining, setDeclining] = useState(false);
  const [reason, setReason] = useState("");
  const [notes, setNotes] = useState("");
  const active = e.hospitalStatus === "notified" || e.hospitalStatus === "acknowledged";

  const act = async (type, payload) => {
    setBusy(true);
    setMessage("");
    try {
      await request(type, { emergencyId: e.emergencyId, ...payload });
      return true;
    } catch (err) {
      setMessage(`${type} failed: ${err.reason?.code ?? ""} ${err.reason?.message ?? err.message}`);
      return false;
    } finally {
      setBusy(false);
    }
  };
  const key = () => crypto.randomUUID();
  const readiness = Object.values(e.readiness ?? {});

  return html`<article class=${`card p-${e.priority}${active ? "" : " closed"}`} data-emergency=${e.emergencyId} aria-label=${`${e.priority} emergency`}>
    <div class="row">
      <${Priority} value=${e.priority} />
      <span class=${`state state-${e.hospitalStatus}`}>${e.hospitalStatus === "notified" ? "NOT ACKNOWLEDGED" : e.hospitalStatus.replace("_", " ").toUpperCase()}</span>
      <span class="muted">patient ${e.status.replace("_", " ")} · alerted ${hhmmss(e.notifiedAt)} · #${e.emergencyId.slice(0, 8)}</span>
    </div>
    <div class="row">
      <span class="eta" data-eta=${Math.round(eta)}>ETA ${active ? duration(eta) : "—"}</span>
      ${e.acknowledgedAt > 0 && html`<span>Acknowledged at <b>${hhmmss(e.acknowledgedAt)}</b>${detail ? html` by <b>${acknowledgedBy(detail, user) || "staff"}</b>` : ""}</span>`}
      ${e.handedOverAt > 0 && html`<span>Handed over at <b>${hhmmss(e.handedOverAt)}</b></span>`}
    </div>
    <div class="summary" aria-label="Handover summary (ATMIST)">${e.handoverSummary || "No assessment yet"}</div>
    ${active && html`<${Vitals} medical=${detail?.medical} alerts=${e.vitalsAlerts ?? []} />`}
    ${active && html`<${LiveMap} points=${mapPoints(detail)} />`}
    ${active && detail?.chat && html`<${Chat} messages=${detail.chat.messages ?? []} send=${(text) => act("chat", { text, clientId: key() })} />`}
    <ul class="checklist" aria-label="Readiness">
      ${readiness.map((r) => html`<li><button class=${r.ready ? "ready" : "not-ready"} disabled=${busy || !active}
        onClick=${() => act("readiness", { key: r.key, label: r.label || undefined, ready: !r.ready, idempotencyKey: key() })}>
        ${r.ready ? "✓" : "✗"} ${r.label || r.key}: ${r.ready ? "READY" : "NOT READY"}</button></li>`)}
    </ul>
    ${active && html`<div class="row">
      ${e.hospitalStatus === "notified" && html`<button disabled=${busy} onClick=${() => act("acknowledge", { idempotencyKey: key() })}>Acknowledge</button>`}
      ${(e.status === "transporting" || e.status === "at_hospital") && html`<span class="inline">
        <input aria-label="Handover notes" placeholder="handover notes" maxlength="1000" value=${notes} onInput=${(ev) => setNotes(ev.currentTarget.value)} />
        <button disabled=${busy} onClick=${() => act("handover", { notes: notes || undefined, idempotencyKey: key() })}>Confirm handover</button></span>`}
      ${declining
        ? html`<span class="inline"><input aria-label="Reason for declining" placeholder="reason (required)" maxlength="200" value=${reason} onInput=${(ev) => setReason(ev.currentTarget.value)} />
            <button class="danger" disabled=${busy || !reason.trim()} onClick=${() => act("decline", { reason: reason.trim(), idempotencyKey: key() })}>Decline patient</button>
            <button onClick=${() => setDeclining(false)}>Keep</button></span>`
        : html`<button class="danger" disabled=${busy} onClick=${() => setDeclining(true)}>Decline…</button>`}
    </div>`}
    ${message && html`<p class="error" role="alert">${message}</p>`}
  </article>`;
}
