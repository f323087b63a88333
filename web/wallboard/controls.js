// The hospital's own settings from the wall: capacity and divert (docs/protocol.md §3, `capacity`, `divert`).
import { html } from "htm/preact";
import { useState } from "preact/hooks";

export function HospitalControls({ board, request }) {
  const [beds, setBeds] = useState(String(board.emergencyBeds));
  const [icu, setIcu] = useState(String(board.icuBeds));
  const [accepting, setAccepting] = useState(board.accepting);
  const [reason, setReason] = useState("");
  const [hours, setHours] = useState("2");
  const [message, setMessage] = useState("");

  const send = async (type, payload, done) => {
    setMessage("");
    try {
      await request(type, payload);
      setMessage(done);
    } catch (err) {
      setMessage(`${type} failed: ${err.reason?.code ?? ""} ${err.reason?.message ?? err.message}`);
    }
  };
  const saveCapacity = (e) => {
    e.preventDefault();
    void send("capacity", { emergencyBeds: Number(beds), icuBeds: Number(icu), accepting }, "Capacity updated.");
  };
  const divert = (e) => {
    e.preventDefault();
    if (board.divertActive) void send("divert", { active: false, reason: reason.trim() || "lifted from the wallboard" }, "Divert lifted.");
    else void send("divert", { active: true, reason: reason.trim(), until: Date.now() + Number(hours) * 3_600_000 }, "Divert declared.");
  };

  return html`<section class="forms">
    <form onSubmit=${saveCapacity}><fieldset><legend>Capacity</legend>
      <label>Emergency beds <input type="number" min="0" max="10000" required size="4" value=${beds} onInput=${(e) => setBeds(e.currentTarget.value)} /></label>
      <label>ICU beds <input type="number" min="0" max="10000" size="4" value=${icu} onInput=${(e) => setIcu(e.currentTarget.value)} /></label>
      <label><input type="checkbox" checked=${accepting} onChange=${(e) => setAccepting(e.currentTarget.checked)} /> Accepting</label>
      <button type="submit">Update capacity</button>
    </fieldset></form>
    <form onSubmit=${divert}><fieldset><legend>Divert</legend>
      <label>Reason <input required=${!board.divertActive} maxlength="200" value=${reason} onInput=${(e) => setReason(e.currentTarget.value)} /></label>
      ${!board.divertActive && html`<label>for <select value=${hours} onChange=${(e) => setHours(e.currentTarget.value)}>
        ${["1", "2", "4", "8", "12", "24"].map((h) => html`<option value=${h}>${h} h</option>`)}</select></label>`}
      <button type="submit" class=${board.divertActive ? "" : "danger"}>${board.divertActive ? "Lift divert" : "Declare divert"}</button>
    </fieldset></form>
    ${message && html`<p class="notice" role="status">${message}</p>`}
  </section>`;
}
