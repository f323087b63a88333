// The signed-in session of a page: Haven's login answer (docs/protocol.md §1), kept in
// sessionStorage (gone when the tab closes), refreshed before the access token expires.

const KEY = "haven.session";
const REFRESH_AHEAD_MS = 3 * 60_000;
const listeners = new Set();

export function currentSession() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) ?? "null");
  } catch {
    return null;
  }
}

function store(session) {
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
  else sessionStorage.removeItem(KEY);
  for (const l of listeners) l(session);
}

/** Calls `listener(session | null)` whenever the session changes; returns the unsubscribe. */
export function onSession(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** JSON both ways; a refusal throws an Error with `status` and Haven's `code`. */
export async function api(method, path, body, token) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(answer.message ?? `HTTP ${res.status}`), { status: res.status, code: answer.code });
  return answer;
}

export async function signIn(email, password) {
  const s = await api("POST", "/api/auth/login", { email, password });
  store(s);
  return s;
}

export function signOut() {
  const s = currentSession();
  store(null);
  if (s?.refreshToken) api("POST", "/api/auth/logout", { refreshToken: s.refreshToken }).catch(() => {});
}

let refreshing;
/** A new session from the refresh token; a refused refresh signs out, a network failure keeps the old one. */
export function refresh() {
  refreshing ??= (async () => {
    const s = currentSession();
    if (!s) return null;
    try {
      const next = await api("POST", "/api/auth/refresh", { refreshToken: s.refreshToken });
      store(next);
      return next;
    } catch (error) {
      if (error.status === 401) store(null);
      return currentSession();
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

/** The access token, refreshed first when it is about to expire. */
export async function accessToken() {
  let s = currentSession();
  if (s && s.accessTokenExpiresAt - Date.now() < REFRESH_AHEAD_MS) s = await refresh();
  return s?.accessToken;
}

// keep the session fresh while the page is open, whether or not anything is joined
setInterval(() => { void accessToken(); }, 30_000);
