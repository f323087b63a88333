/**
 * What each notification says, in English and Swahili. A template names its parameters in
 * braces; a parameter missing from a message renders as "-". No template carries medical detail:
 * an SMS may be read by anyone holding the phone.
 */
export const LANGUAGES = ["en", "sw"] as const;
export type Language = (typeof LANGUAGES)[number];

export const TEMPLATES = {
  /** The receiving hospital: an emergency is routed to it (its webhook). */
  hospital_routed: {
    en: "Haven: a {priority} patient is being routed to {hospital}, ETA {eta} min. Emergency {ref}. Acknowledge on the wallboard.",
    sw: "Haven: mgonjwa wa dharura ({priority}) anaelekezwa {hospital}, atafika baada ya dakika {eta}. Dharura {ref}. Thibitisha kwenye skrini.",
  },
  /** The receiving hospital's duty phone: its wallboard did not acknowledge in time. */
  hospital_unacknowledged: {
    en: "Haven URGENT: a {priority} patient is coming to {hospital} and nobody has acknowledged on the wallboard. Emergency {ref}. Open the wallboard now.",
    sw: "Haven HARAKA: mgonjwa wa dharura ({priority}) anakuja {hospital} na hakuna aliyethibitisha kwenye skrini. Dharura {ref}. Fungua skrini sasa.",
  },
  /** A patient's emergency contact: the patient raised an alert. */
  contact_alert: {
    en: "Haven: {name} raised an emergency alert. Responders are being sent. You will be told when {name} is handed over to a hospital.",
    sw: "Haven: {name} ametuma ombi la dharura. Wahudumu wanatumwa. Utaarifiwa {name} akikabidhiwa hospitali.",
  },
  /** A patient's emergency contact: the patient was handed over to a hospital. */
  contact_handover: {
    en: "Haven: {name} has been handed over to {hospital}.",
    sw: "Haven: {name} amekabidhiwa kwa {hospital}.",
  },
  /** An on-duty responder whose app is away: an offer waits for them. */
  responder_offer: {
    en: "Haven: an emergency {distance} m from you needs help. Open the Haven app to accept.",
    sw: "Haven: dharura iliyo mita {distance} kutoka kwako inahitaji msaada. Fungua programu ya Haven ukubali.",
  },
  /** Operations: an emergency escalated (no responder, or no hospital acknowledgement). */
  ops_escalation: {
    en: "Haven OPS: emergency {ref} ({priority}) needs a human: {reason}.",
    sw: "Haven OPS: dharura {ref} ({priority}) inahitaji mtu: {reason}.",
  },
  /** A patient who alerted by SMS or USSD: the alert is in. */
  alert_received: {
    en: "Haven: your emergency alert is received. Help is being sent. Reply STATUS for news.",
    sw: "Haven: ombi lako la dharura limepokelewa. Msaada unatumwa. Jibu HALI kupata habari.",
  },
  /** A patient who alerted by SMS or USSD: where things stand. */
  status_update: {
    en: "Haven: {status}. Responder: {responder}. ETA {eta} min. Hospital: {hospital}.",
    sw: "Haven: {status}. Mhudumu: {responder}. Atafika baada ya dakika {eta}. Hospitali: {hospital}.",
  },
  /** A text to the inbound number that Haven did not understand. */
  sms_usage: {
    en: "Haven: to raise an emergency, text HELP, what happened and where you are (e.g. HELP accident near Kencom). Text STATUS for news of your alert.",
    sw: "Haven: kutuma ombi la dharura, tuma MSAADA, kilichotokea na ulipo (mfano MSAADA ajali karibu na Kencom). Tuma HALI kupata habari za ombi lako.",
  },
  /** An alert by SMS or USSD that could not be raised (the caller's limit is spent, or the service is down). */
  alert_refused: {
    en: "Haven: your alert could not be raised ({reason}). If you can, call 999 or 112 now.",
    sw: "Haven: ombi lako halikuweza kutumwa ({reason}). Ikiwezekana, piga 999 au 112 sasa.",
  },
} as const satisfies Record<string, Record<Language, string>>;

/** Words a parameter named `status` is translated by (an emergency's status). */
const STATUS_WORDS: Record<Language, Record<string, string>> = {
  en: {
    alerted: "Alert received, looking for a responder", dispatched: "A responder is on the way", on_scene: "A responder is with you",
    transporting: "On the way to hospital", at_hospital: "At the hospital", handed_over: "Handed over to the hospital",
    cancelled: "Alert cancelled", expired: "Alert closed", none: "You have no open alert",
  },
  sw: {
    alerted: "Ombi limepokelewa, tunatafuta mhudumu", dispatched: "Mhudumu yuko njiani", on_scene: "Mhudumu yuko nawe",
    transporting: "Njiani kwenda hospitali", at_hospital: "Hospitalini", handed_over: "Umekabidhiwa hospitali",
    cancelled: "Ombi limesitishwa", expired: "Ombi limefungwa", none: "Huna ombi lililo wazi",
  },
};

export type TemplateEvent = keyof typeof TEMPLATES;
export type TemplateParams = Record<string, string | number>;

export function isTemplateEvent(event: string): event is TemplateEvent {
  return Object.prototype.hasOwnProperty.call(TEMPLATES, event);
}

/** The text of `event` in `language` with its parameters filled in (an SMS's text, a push's body). */
export function render(event: TemplateEvent, language: Language, params: TemplateParams): string {
  return TEMPLATES[event][language].replace(/\{([a-z]+)\}/g, (_, name: string) => {
    const v = name === "status" ? STATUS_WORDS[language][String(params.status)] ?? params.status : params[name];
    return v === undefined || v === "" ? "-" : String(v).slice(0, 80);
  });
}
