import type { Language } from "./templates.ts";

/**
 * The USSD menu, on plain values: the gateway sends every answer of the session so far joined
 * by `*` (`1*2*3`); each step answers `CON …` (another question) or `END …` (the last screen).
 *
 *   ""          → the menu: raise an alert, or the status of mine
 *   "1"         → what happened
 *   "1*w"       → where: one of the towns, or type a landmark
 *   "1*w*t"     → raise (town t)                          → END with the emergency's reference
 *   "1*w*0"     → type the landmark
 *   "1*w*0*x"   → raise (landmark x)                      → END
 *   "2"         → the status of my alert                  → END
 */
export type UssdStep =
  | { kind: "reply"; text: string }
  | { kind: "raise"; what: string; priority: "critical" | "high"; where: string }
  | { kind: "status" };

export const WHAT = [
  { en: "Injury or accident", sw: "Jeraha au ajali", priority: "high" },
  { en: "Breathing or chest pain", sw: "Kupumua au maumivu ya kifua", priority: "critical" },
  { en: "Unconscious or fitting", sw: "Amepoteza fahamu au degedege", priority: "critical" },
  { en: "Birth or pregnancy", sw: "Kujifungua au ujauzito", priority: "high" },
  { en: "Other", sw: "Nyingine", priority: "high" },
] as const;

const T = {
  menu: { en: "CON Haven emergency\n1. Raise an alert\n2. Status of my alert", sw: "CON Haven dharura\n1. Tuma ombi la dharura\n2. Hali ya ombi langu" },
  what: { en: "CON What happened?", sw: "CON Nini kimetokea?" },
  where: { en: "CON Where are you?", sw: "CON Uko wapi?" },
  other: { en: "0. Type a landmark", sw: "0. Andika alama ya mahali" },
  landmark: { en: "CON Type the nearest landmark:", sw: "CON Andika alama ya mahali karibu nawe:" },
  invalid: { en: "END Invalid choice. Dial again.", sw: "END Chaguo si sahihi. Piga tena." },
} as const;

/** The next step of a session whose answers so far are `text`; `towns` are offered by number. */
export function ussdStep(text: string, language: Language, towns: readonly string[]): UssdStep {
  const answers = text === "" ? [] : text.split("*");
  const reply = (t: string): UssdStep => ({ kind: "reply", text: t });
  const invalid = reply(T.invalid[language]);
  if (answers.length === 0) return reply(T.menu[language]);
  if (answers[0] === "2" && answers.length === 1) return { kind: "status" };
  if (answers[0] !== "1") return invalid;
  if (answers.length === 1) return reply(`${T.what[language]}\n${WHAT.map((w, i) => `${i + 1}. ${w[language]}`).join("\n")}`);
  const w = Number(answers[1]);
  const what = Number.isInteger(w) && w >= 1 && w <= WHAT.length ? WHAT[w - 1] : undefined;
  if (!what) return invalid;
  if (answers.length === 2) return reply(`${T.where[language]}\n${towns.map((t, i) => `${i + 1}. ${t}`).join("\n")}\n${T.other[language]}`);
  if (answers[2] === "0") {
    if (answers.length === 3) return reply(T.landmark[language]);
    const landmark = answers.slice(3).join(" ").trim().slice(0, 120);
    return landmark ? { kind: "raise", what: what.en, priority: what.priority, where: landmark } : reply(T.landmark[language]);
  }
  const t = Number(answers[2]);
  if (answers.length === 3 && Number.isInteger(t) && t >= 1 && t <= towns.length) return { kind: "raise", what: what.en, priority: what.priority, where: towns[t - 1] };
  return invalid;
}

/** The last screen once the alert is raised (or joined). */
export function ussdRaised(language: Language, ref: string, joined: boolean): string {
  return language === "sw"
    ? `END ${joined ? "Ombi lako liko tayari" : "Msaada unakuja"}. Dharura ${ref}. Tutakutumia habari kwa SMS.`
    : `END ${joined ? "Your alert is already open" : "Help is coming"}. Emergency ${ref}. We will send news by SMS.`;
}
