// The operations desk (placeholder until the ops room is available).
import { html } from "htm/preact";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { currentSession, onSession, signOut } from "../shared/session.js";
import { SignIn } from "../shared/ui.js";

const ROLES = ["ops_admin"];

function App() {
  const [session, setSession] = useState(currentSession());
  useEffect(() => onSession(setSession), []);
  if (!session || !ROLES.includes(session.user.role)) return html`<${SignIn} title="Operations desk — sign-in" roles=${ROLES} onSignedIn=${setSession} />`;
  return html`<header class="top"><h1>Operations desk</h1><span class="spacer"></span><button onClick=${signOut}>Sign out</button></header>`;
}

const mount = document.getElementById("app");
mount.textContent = ""; // the "Loading…" placeholder
render(html`<${App} />`, mount);
