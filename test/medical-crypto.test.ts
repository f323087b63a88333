import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { inspect } from "node:util";
import {
  MasterKey, MedicalDecryptError, dataKeyObject, newDataKey, openEmergencyPart, openProfile, sealEmergencyPart, sealProfile, unwrap, unwrapEmergencyKey, wrap,
  wrapEmergencyKey,
} from "../src/medical/crypto.ts";
import { EMERGENCY_SUMMARY_FIELDS, emergencySummary, validateProfile, type MedicalProfile } from "../src/medical/profile.ts";
import { chainHash, verifyChain, type AuditEntry, type ChainRow } from "../src/audit/chain.ts";
import { HavenError } from "../src/protocol/errors.ts";

/**
 * Pure tests of the medical-data building blocks: envelope encryption, the profile schema and
 * emergency summary, and the hash-chained audit record. No server, no database.
 */

const ALLERGY = "Zyxoprofen-7731 sulfa analogue"; // distinctive: must never appear in stored bytes
const CONTACT_PHONE = "+254700111222";
const MEMBER_NUMBER = "NHIF-99887766";

function profile(): MedicalProfile {
  return {
    bloodType: "O-",
    allergies: [
      { substance: "peanuts", severity: "mild" },
      { substance: ALLERGY, reaction: "anaphylaxis", severity: "life_threatening" },
    ],
    conditions: ["type 1 diabetes", "asthma"],
    medications: [{ name: "insulin glargine", dose: "20 units", frequency: "nightly" }, { name: "salbutamol" }],
    emergencyContacts: [{ name: "Wanjiru Kamau", relation: "sister", phone: CONTACT_PHONE }],
    insurance: { provider: "SHA", memberNumber: MEMBER_NUMBER },
    consent: { shareInEmergency: true, version: 1 },
  };
}

const contains = (haystack: Buffer, needle: string) =>
  haystack.includes(Buffer.from(needle, "utf8")) || haystack.includes(Buffer.from(needle, "utf16le"));

function expectDecryptFailure(fn: () => unknown): void {
  expect(fn).toThrow(MedicalDecryptError);
}

describe("master key", () => {
  const raw = randomBytes(32);

  it("parses 32 bytes as base64 (padded or not) and base64url, with a stable key id", () => {
    const a = MasterKey.fromEnvValue(raw.toString("base64"));
    const b = MasterKey.fromEnvValue(raw.toString("base64url"));
    const c = MasterKey.fromEnv({ HAVEN_MEDICAL_MASTER_KEY: raw.toString("base64").replace(/=+$/, "") });
    expect(a.keyId).toMatch(/^[0-9a-f]{8}$/);
    expect(b.keyId).toBe(a.keyId);
    expect(c.keyId).toBe(a.keyId);
    expect(a.development).toBe(false);
    // the same key under each encoding unwraps the others' wrapping
    const dk = newDataKey();
    expect(unwrap(wrap(dk, a, "p1"), b, "p1").equals(dk)).toBe(true);
    expect(MasterKey.fromEnvValue(randomBytes(32).toString("base64")).keyId).not.toBe(a.keyId);
  });

  it.each([
    ["31 bytes", randomBytes(31).toString("base64")],
    ["33 bytes", randomBytes(33).toString("base64")],
    ["31 bytes base64url", randomBytes(31).toString("base64url")],
    ["not base64", "this is not a key, it is a sentence!!"],
    ["hex", randomBytes(32).toString("hex")],
    ["stray character", raw.toString("base64").slice(0, 20) + "*" + raw.toString("base64").slice(21)],
    ["mixed alphabets", "+" + raw.toString("base64url").slice(1).replace(/[A-Za-z]/, "_")],
    ["empty", ""],
    ["missing", undefined],
  ])("refuses %s, naming HAVEN_MEDICAL_MASTER_KEY and not echoing the value", (_label, value) => {
    let error: unknown;
    try {
      MasterKey.fromEnvValue(value);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("HAVEN_MEDICAL_MASTER_KEY");
    if (value) expect((error as Error).message).not.toContain(value);
  });

  it("a development key is random and marked", () => {
    const a = MasterKey.generateDevelopmentKey();
    const b = MasterKey.generateDevelopmentKey();
    expect(a.development).toBe(true);
    expect(a.keyId).not.toBe(b.keyId);
  });

  it("does not expose key bytes through JSON, inspect or enumeration", () => {
    const key = MasterKey.fromEnvValue(raw.toString("base64"));
    const shown = JSON.stringify(key) + inspect(key, { showHidden: true, depth: 5 }) + JSON.stringify({ ...key });
    expect(shown).not.toContain(raw.toString("base64"));
    expect(shown).not.toContain(raw.toString("hex"));
    expect(JSON.parse(JSON.stringify(key))).toEqual({ keyId: key.keyId, development: false });
  });
});

describe("envelope encryption", () => {
  const master = MasterKey.generateDevelopmentKey();

  it("round-trips a data key and a profile", () => {
    const dataKey = newDataKey();
    expect(dataKey.length).toBe(32);
    const wrapped = wrap(dataKey, master, "patient-1");
    expect(wrapped.length).toBe(12 + 16 + 32);
    const unwrapped = unwrap(wrapped, master, "patient-1");
    expect(unwrapped.equals(dataKey)).toBe(true);

    const sealed = sealProfile(profile(), unwrapped, "patient-1");
    expect(sealed.iv.length).toBe(12);
    expect(sealed.tag.length).toBe(16);
    const opened = validateProfile(openProfile(sealed, dataKey, "patient-1"));
    expect(opened).toEqual(profile());
  });

  it("stores no plaintext in the ciphertext or the wrapped key", () => {
    const dataKey = newDataKey();
    const wrapped = wrap(dataKey, master, "patient-1");
    const sealed = sealProfile(profile(), dataKey, "patient-1");
    for (const bytes of [sealed.ciphertext, sealed.iv, sealed.tag, wrapped, Buffer.concat([sealed.iv, sealed.tag, sealed.ciphertext])]) {
      for (const needle of [ALLERGY, "Zyxoprofen", CONTACT_PHONE, MEMBER_NUMBER, "anaphylaxis", "bloodType", "\"allergies\""]) {
        expect(contains(bytes, needle)).toBe(false);
      }
    }
    expect(wrapped.includes(dataKey)).toBe(false);
    expect(sealed.ciphertext.includes(dataKey)).toBe(false);
  });

  it("refuses a wrong master key", () => {
    const dataKey = newDataKey();
    const wrapped = wrap(dataKey, master, "patient-1");
    expectDecryptFailure(() => unwrap(wrapped, MasterKey.generateDevelopmentKey(), "patient-1"));
  });

  it("refuses a wrong data key", () => {
    const sealed = sealProfile(profile(), newDataKey(), "patient-1");
    expectDecryptFailure(() => openProfile(sealed, newDataKey(), "patient-1"));
  });

  it("refuses another patient's id (AAD), for the profile and the wrapped key", () => {
    const dataKey = newDataKey();
    const wrapped = wrap(dataKey, master, "patient-1");
    const sealed = sealProfile(profile(), dataKey, "patient-1");
    expectDecryptFailure(() => unwrap(wrapped, master, "patient-2"));
    expectDecryptFailure(() => openProfile(sealed, dataKey, "patient-2"));
    // a prefix or extension of the id is another id too
    expectDecryptFailure(() => openProfile(sealed, dataKey, "patient-10"));
  });

  it("refuses a flipped bit anywhere: ciphertext, tag, iv, wrapped key", () => {
    const dataKey = newDataKey();
    const sealed = sealProfile(profile(), dataKey, "patient-1");
    const flip = (b: Buffer, index: number) => { const c = Buffer.from(b); c[index] ^= 0x01; return c; };
    for (const index of [0, Math.floor(sealed.ciphertext.length / 2), sealed.ciphertext.length - 1]) {
      expectDecryptFailure(() => openProfile({ ...sealed, ciphertext: flip(sealed.ciphertext, index) }, dataKey, "patient-1"));
    }
    expectDecryptFailure(() => openProfile({ ...sealed, tag: flip(sealed.tag, 7) }, dataKey, "patient-1"));
    expectDecryptFailure(() => openProfile({ ...sealed, iv: flip(sealed.iv, 3) }, dataKey, "patient-1"));
    const wrapped = wrap(dataKey, master, "patient-1");
    for (const index of [0, 20, 59]) expectDecryptFailure(() => unwrap(flip(wrapped, index), master, "patient-1"));
  });

  it("refuses a truncated tag and a truncated wrapped key", () => {
    const dataKey = newDataKey();
    const sealed = sealProfile(profile(), dataKey, "patient-1");
    expectDecryptFailure(() => openProfile({ ...sealed, tag: sealed.tag.subarray(0, 4) }, dataKey, "patient-1"));
    expectDecryptFailure(() => unwrap(wrap(dataKey, master, "patient-1").subarray(0, 59), master, "patient-1"));
  });

  it("two writes of the same profile differ (fresh IV each time); so do two wrappings", () => {
    const dataKey = newDataKey();
    const a = sealProfile(profile(), dataKey, "patient-1");
    const b = sealProfile(profile(), dataKey, "patient-1");
    expect(a.iv.equals(b.iv)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(wrap(dataKey, master, "patient-1").equals(wrap(dataKey, master, "patient-1"))).toBe(false);
  });

  it("crypto-shredding: without the wrapped key the ciphertext cannot be opened", () => {
    const dataKey = newDataKey();
    const sealed = sealProfile(profile(), dataKey, "patient-1");
    // the stored row without its wrapped key: any key the server can still produce fails
    expectDecryptFailure(() => openProfile(sealed, newDataKey(), "patient-1"));
    expectDecryptFailure(() => openProfile(sealed, Buffer.alloc(32), "patient-1"));
  });
});

describe("profile validation", () => {
  const refuse = (body: unknown, field?: string) => {
    let error: unknown;
    try {
      validateProfile(body);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HavenError);
    expect((error as HavenError).code).toBe("INVALID_PAYLOAD");
    if (field !== undefined) {
      const details = (error as HavenError).details as { field: string }[];
      expect(details.map((d) => d.field)).toContain(field);
    }
    return error as HavenError;
  };

  it("accepts a full profile and a minimal one", () => {
    expect(validateProfile(profile())).toEqual(profile());
    const minimal = { bloodType: "unknown", allergies: [], conditions: [], medications: [], emergencyContacts: [], consent: { shareInEmergency: false, version: 1 } };
    expect(validateProfile(minimal)).toEqual(minimal);
  });

  it("accepts a profile at every maximum (fits isPlainData's node budget)", () => {
    const big = {
      bloodType: "AB+",
      allergies: Array.from({ length: 50 }, () => ({ substance: "s".repeat(100), reaction: "r".repeat(200), severity: "severe" })),
      conditions: Array.from({ length: 50 }, () => "c".repeat(200)),
      medications: Array.from({ length: 50 }, () => ({ name: "n".repeat(100), dose: "d".repeat(100), frequency: "f".repeat(100) })),
      emergencyContacts: Array.from({ length: 5 }, () => ({ name: "n".repeat(120), relation: "r".repeat(60), phone: "+123456789012345" })),
      insurance: { provider: "p".repeat(120), memberNumber: "m".repeat(64) },
      consent: { shareInEmergency: true, version: 10_000 },
    };
    expect(() => validateProfile(big)).not.toThrow();
  });

  it("refuses an unknown field, at the top and inside nested objects", () => {
    const top = refuse({ ...profile(), ssn: "123" });
    expect((top.details as { rule: string }[])[0].rule).toBe("objectStrict");
    expect(top.message).toContain("ssn");
    refuse({ ...profile(), allergies: [{ substance: "x", notes: "y" }] });
    refuse({ ...profile(), insurance: { provider: "SHA", memberNumber: "1", group: "g" } });
    refuse({ ...profile(), consent: { shareInEmergency: true, version: 1, extra: 1 } });
  });

  it("refuses overlong strings and arrays", () => {
    refuse({ ...profile(), allergies: [{ substance: "x".repeat(101) }] }, "allergies[0].substance");
    refuse({ ...profile(), conditions: ["x".repeat(201)] }, "conditions[0]");
    refuse({ ...profile(), medications: [{ name: "m", dose: "d".repeat(101) }] }, "medications[0].dose");
    refuse({ ...profile(), insurance: { provider: "SHA", memberNumber: "9".repeat(65) } }, "insurance.memberNumber");
    refuse({ ...profile(), conditions: Array.from({ length: 51 }, () => "c") }, "conditions");
    refuse({ ...profile(), emergencyContacts: Array.from({ length: 6 }, () => ({ name: "n", phone: "+254700000000" })) }, "emergencyContacts");
  });

  it("refuses a bad phone", () => {
    for (const phone of ["12345", "+2547001112223334", "0700 111 222", "+254-700-111", "tel:+254700111222", ""]) {
      refuse({ ...profile(), emergencyContacts: [{ name: "A", phone }] }, "emergencyContacts[0].phone");
    }
  });

  it("refuses a bad blood type, severity, consent and a missing required field", () => {
    for (const bloodType of ["C+", "o-", "AB", "", 1]) refuse({ ...profile(), bloodType }, "bloodType");
    refuse({ ...profile(), allergies: [{ substance: "x", severity: "deadly" }] }, "allergies[0].severity");
    refuse({ ...profile(), consent: { shareInEmergency: "yes", version: 1 } }, "consent.shareInEmergency");
    refuse({ ...profile(), consent: { shareInEmergency: true, version: 0 } }, "consent.version");
    refuse({ ...profile(), consent: { shareInEmergency: true, version: 1.5 } }, "consent.version");
    const { consent: _consent, ...noConsent } = profile();
    refuse(noConsent, "consent");
  });

  it("does not convert: strings stay strings, numbers stay numbers", () => {
    refuse({ ...profile(), consent: { shareInEmergency: "true", version: "1" } });
    const body = profile();
    validateProfile(body);
    expect(body).toEqual(profile());
  });

  it("refuses Date, Set, RegExp, Map, class instances, cycles and non-objects", () => {
    refuse({ ...profile(), consent: { shareInEmergency: true, version: new Date() } });
    refuse({ ...profile(), conditions: new Set(["asthma"]) });
    refuse({ ...profile(), conditions: [/asthma/] });
    refuse({ ...profile(), insurance: new Map([["provider", "SHA"]]) });
    refuse({ ...profile(), bloodType: new String("O-") });
    refuse(new Date());
    refuse(/x/);
    const cyclic: Record<string, unknown> = profile() as never;
    cyclic.self = cyclic;
    refuse(cyclic);
    for (const body of [null, undefined, "profile", 42, [profile()]]) refuse(body);
    refuse(JSON.parse(`{"__proto__": {"polluted": true}, "bloodType": "O-"}`));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("keeps submitted values out of error messages and details", () => {
    const error = refuse({ ...profile(), allergies: [{ substance: ALLERGY, severity: "deadly-" + ALLERGY }] });
    expect(JSON.stringify(error.toJSON())).not.toContain(ALLERGY);
  });
});

describe("emergency summary", () => {
  it("holds only what a responder needs, as short strings, most severe allergy first", () => {
    const summary = emergencySummary(profile());
    expect(Object.keys(summary).sort()).toEqual([...EMERGENCY_SUMMARY_FIELDS].sort());
    expect(summary).toEqual({
      bloodType: "O-",
      allergies: [`${ALLERGY} (LIFE-THREATENING: anaphylaxis)`, "peanuts (mild)"],
      conditions: ["type 1 diabetes", "asthma"],
      medications: ["insulin glargine 20 units nightly", "salbutamol"],
    });
    for (const value of [...summary.allergies, ...summary.conditions, ...summary.medications]) {
      expect(typeof value).toBe("string");
      expect(value.length).toBeLessThanOrEqual(320);
    }
  });

  it("contains no contacts, insurance or consent", () => {
    const text = JSON.stringify(emergencySummary(profile()));
    for (const needle of [CONTACT_PHONE, "Wanjiru", "sister", MEMBER_NUMBER, "SHA", "emergencyContacts", "insurance", "consent"]) {
      expect(text).not.toContain(needle);
    }
  });

  it("does not alias the profile's arrays", () => {
    const p = profile();
    const summary = emergencySummary(p);
    summary.conditions.push("edited");
    expect(p.conditions).toEqual(["type 1 diabetes", "asthma"]);
  });
});

describe("audit chain", () => {
  const entry = (i: number, extra: Partial<AuditEntry> = {}): AuditEntry => ({
    at: new Date(Date.UTC(2025, 0, 1, 12, 0, i)),
    actor: `user-${i % 3}`,
    actorRole: i % 2 ? "ambulance_crew" : "patient",
    action: i % 2 ? "medical_profile.read" : "medical_profile.write",
    subject: "pt_7f3a",
    emergencyId: i % 2 ? "em-42" : undefined,
    fields: i % 2 ? [...EMERGENCY_SUMMARY_FIELDS] : undefined,
    breakGlass: false,
    node: "node-a",
    outcome: "ok",
    ...extra,
  });

  function build(entries: AuditEntry[]): ChainRow[] {
    const rows: ChainRow[] = [];
    let prev: Buffer | null = null;
    for (const e of entries) {
      const hash = chainHash(prev, e);
      rows.push({ prevHash: prev, hash, entry: e });
      prev = hash;
    }
    return rows;
  }

  const entries = () => [
    entry(0), entry(1), entry(2, { breakGlass: true, reason: "unconscious patient, consent unobtainable" }),
    entry(3, { outcome: "denied" }), entry(4),
  ];

  it("hashes deterministically: same entry, same hash; key order and optional absence handled", () => {
    const e = entry(1);
    const reordered = Object.fromEntries(Object.entries(e).reverse()) as unknown as AuditEntry;
    expect(chainHash(null, e).equals(chainHash(null, reordered))).toBe(true);
    expect(chainHash(null, e).length).toBe(32);
    expect(chainHash(null, e).equals(chainHash(chainHash(null, entry(0)), e))).toBe(false);
    // an absent optional field and a changed one both change the hash
    expect(chainHash(null, { ...e, node: undefined }).equals(chainHash(null, e))).toBe(false);
    expect(chainHash(null, { ...e, at: new Date(e.at.getTime() + 1) }).equals(chainHash(null, e))).toBe(false);
    // field values cannot be shifted between fields
    expect(chainHash(null, { ...e, actor: "a", actorRole: "b,c" }).equals(chainHash(null, { ...e, actor: "a,b", actorRole: "c" }))).toBe(false);
  });

  it("verifies an intact chain (and the empty one)", () => {
    expect(verifyChain(build(entries()))).toEqual({ ok: true });
    expect(verifyChain([])).toEqual({ ok: true });
  });

  it("detects an edited middle entry", () => {
    const rows = build(entries());
    rows[2] = { ...rows[2], entry: { ...rows[2].entry, reason: "routine check" } };
    expect(verifyChain(rows)).toEqual({ ok: false, brokenAt: 2 });
  });

  it("detects an edited middle entry whose own hash was recomputed", () => {
    const rows = build(entries());
    const edited = { ...rows[2].entry, breakGlass: false, reason: undefined };
    rows[2] = { prevHash: rows[2].prevHash, hash: chainHash(rows[2].prevHash, edited), entry: edited };
    expect(verifyChain(rows)).toEqual({ ok: false, brokenAt: 3 });
  });

  it("detects a deleted entry, a swapped pair and a removed first entry", () => {
    const rows = build(entries());
    expect(verifyChain([...rows.slice(0, 2), ...rows.slice(3)])).toEqual({ ok: false, brokenAt: 2 });
    expect(verifyChain([rows[0], rows[2], rows[1], rows[3], rows[4]])).toEqual({ ok: false, brokenAt: 1 });
    expect(verifyChain(rows.slice(1))).toEqual({ ok: false, brokenAt: 0 });
    // a window in the middle verifies against the hash of the row before it
    expect(verifyChain(rows.slice(2), rows[1].hash)).toEqual({ ok: true });
  });

  it("an edited field list or outcome is caught", () => {
    const rows = build(entries());
    rows[1] = { ...rows[1], entry: { ...rows[1].entry, fields: ["bloodType"] } };
    expect(verifyChain(rows)).toEqual({ ok: false, brokenAt: 1 });
    const again = build(entries());
    again[3] = { ...again[3], entry: { ...again[3].entry, outcome: "ok" } };
    expect(verifyChain(again)).toEqual({ ok: false, brokenAt: 3 });
  });
});

describe("emergency medical data (per-emergency keys)", () => {
  const E1 = "6f1c2a3b-0000-4000-8000-000000000001";
  const E2 = "6f1c2a3b-0000-4000-8000-000000000002";
  const record = { medical: { mechanism: ALLERGY, injuries: ["open fracture"] }, notes: [[1, "chest pain"]] };

  it("a wrapped emergency key opens only for its emergency and purpose, under its master key", () => {
    const master = MasterKey.generateDevelopmentKey();
    const key = newDataKey();
    const wrapped = wrapEmergencyKey(key, master, E1, "clinical");
    expect(wrapped.length).toBe(60);
    expect(unwrapEmergencyKey(wrapped, master, E1, "clinical").equals(key)).toBe(true);
    expectDecryptFailure(() => unwrapEmergencyKey(wrapped, master, E2, "clinical"));
    expectDecryptFailure(() => unwrapEmergencyKey(wrapped, master, E1, "profile"));
    expectDecryptFailure(() => unwrapEmergencyKey(wrapped, MasterKey.generateDevelopmentKey(), E1, "clinical"));
    expectDecryptFailure(() => unwrap(wrapped, master, E1)); // not a patient's profile key either
    const flipped = Buffer.from(wrapped);
    flipped[40] ^= 1;
    expectDecryptFailure(() => unwrapEmergencyKey(flipped, master, E1, "clinical"));
  });

  it("a sealed part holds no plaintext and opens only with its key, in its emergency, as its part", () => {
    const key = newDataKey();
    const sealed = sealEmergencyPart(record, key, E1, "clinical");
    expect(contains(sealed, ALLERGY)).toBe(false);
    expect(contains(sealed, "chest pain")).toBe(false);
    expect(openEmergencyPart(sealed, key, E1, "clinical")).toEqual(record);
    expect(openEmergencyPart(sealed, dataKeyObject(key), E1, "clinical")).toEqual(record); // a KeyObject works alike
    expect(sealEmergencyPart(record, key, E1, "clinical").equals(sealed)).toBe(false); // fresh IV every time
    expectDecryptFailure(() => openEmergencyPart(sealed, key, E2, "clinical"));
    expectDecryptFailure(() => openEmergencyPart(sealed, key, E1, "profile"));
    expectDecryptFailure(() => openEmergencyPart(sealed, key, E1, "event:1"));
    expectDecryptFailure(() => openEmergencyPart(sealed, newDataKey(), E1, "clinical"));
    expectDecryptFailure(() => openEmergencyPart(sealed.subarray(0, sealed.length - 1), key, E1, "clinical"));
    expectDecryptFailure(() => openEmergencyPart(sealed.subarray(0, 20), key, E1, "clinical"));
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1] ^= 1;
    expectDecryptFailure(() => openEmergencyPart(flipped, key, E1, "clinical"));
    // a note sealed for one event does not open as another's
    const note = sealEmergencyPart("chest pain", key, E1, "event:1");
    expect(openEmergencyPart(note, key, E1, "event:1")).toBe("chest pain");
    expectDecryptFailure(() => openEmergencyPart(note, key, E1, "event:2"));
  });

  it("refuses bad key sizes and context strings without echoing them", () => {
    expect(() => sealEmergencyPart(record, Buffer.alloc(31), E1, "clinical")).toThrow(TypeError);
    expect(() => sealEmergencyPart(record, newDataKey(), "", "clinical")).toThrow(TypeError);
    expect(() => sealEmergencyPart(record, newDataKey(), E1, "x".repeat(201))).toThrow(TypeError);
    expect(() => wrapEmergencyKey(Buffer.alloc(16), MasterKey.generateDevelopmentKey(), E1, "clinical")).toThrow(TypeError);
  });
});
