// What both pages share: the sign-in form, the connection banner, clocks and labels.
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { signIn } from "./session.js";

export const PRIORITY_RANK = { critical: 0, high: 1, medium: 2 };

export const hhmmss = (ms) => (ms > 0 ? new Date(ms).toLocaleTimeString("en-GB", { hour12: false }) : "—");

/** "4 min 05 s", "45 s"; a negative count is "due". */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

/** Re-renders the caller every `ms` (clocks, countdowns). */
export function useTick(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function Priority({ value }) {
  return html`<span class=${`badge priority-${value}`}>${(value || "unknown").toUpperCase()}</span>`;
}

export function SignIn({ title, roles, onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const s = await signIn(email, password);
      if (!roles.includes(s.user.role)) setError(`This page is for ${roles.join(" or ")} accounts; you signed in as ${s.user.role}.`);
      else onSignedIn(s);
    } catch (err) {
      setError(err.code === "INVALID_CREDENTIALS" ? "Wrong email or password." : `Sign-in failed: ${err.message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>${title}</h1>
    <form onSubmit=${submit}>
      <label>Email <input name="email" type="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.currentTarget.value)} /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} /></label>
      <button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
  </main>`;
}

/** LIVE, or RECONNECTING with the time since which what is shown may be stale. */
export function Connection({ status }) {
  if (status.ended) return html`<div class="conn conn-ended" role="status">DISCONNECTED — ${status.error ?? `closed (${status.ended})`}; reload the page</div>`;
  if (status.live) return html`<div class="conn conn-live" role="status">● LIVE</div>`;
  return html`<div class="conn conn-stale" role="status">RECONNECTING… — stale since ${hhmmss(status.since)}</div>`;
}
