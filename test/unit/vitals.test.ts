import { describe, expect, it } from "vitest";
import { VitalsStream } from "../../rooms/emergency/vitals.ts";
import { loadConfig } from "../../src/config.ts";
import { vitalOutOfRange } from "../../src/domain/vitals.ts";
import { fakeEmergency } from "./fakes.ts";

const fa = { sub: "fa-1", role: "first_aider" } as never;
const crew = { sub: "crew-1", role: "ambulance_crew" } as never;

function stream(minIntervalMs = 900) {
  const e = fakeEmergency();
  let changed = 0;
  let synced = 0;
  const thresholds = loadConfig({}).vitals.thresholds;
  const v = new VitalsStream({ ctx: e.ctx, config: { minIntervalMs, thresholds }, hospital: { sync: () => void synced++ }, changed: () => void changed++ });
  return { ...e, v, changed: () => changed, synced: () => synced };
}

describe("vitals", () => {
  it("ranges: a value equal to a bound is in range; the defaults are the documented ones", () => {
    const t = loadConfig({}).vitals.thresholds;
    expect(t).toEqual({
      heartRate: { low: 40, high: 140 }, systolic: { low: 90, high: 220 }, diastolic: { low: 0, high: 130 },
      spo2: { low: 90, high: 100 }, temperature: { low: 35, high: 39.5 }, respiratoryRate: { low: 8, high: 30 },
    });
    expect(vitalOutOfRange(40, t.heartRate)).toBe("");
    expect(vitalOutOfRange(39, t.heartRate)).toBe("low");
    expect(vitalOutOfRange(141, t.heartRate)).toBe("high");
    const custom = loadConfig({ HAVEN_VITALS_HR_HIGH: "120", HAVEN_VITALS_MIN_INTERVAL_MS: "500" }).vitals;
    expect(custom.thresholds.heartRate).toEqual({ low: 40, high: 120 });
    expect(custom.minIntervalMs).toBe(500);
    expect(() => loadConfig({ HAVEN_VITALS_SPO2_LOW: "120" })).toThrow();
  });

  it("keeps each sender's latest sample, overwriting only what a sample carries; refuses a sample sooner than the interval", () => {
    const s = stream();
    expect(s.v.sample(fa, { heartRate: 80, spo2: 97, device: { battery: 50, signal: 70 } }, s.clock.now())).toBe(false);
    expect(s.v.sample(crew, { heartRate: 82 }, s.clock.now())).toBe(false); // its own bound
    expect(() => s.v.sample(fa, { heartRate: 150 }, s.clock.now() + 899)).toThrow(expect.objectContaining({ code: "RATE_LIMITED" }));
    expect(s.state.medical.vitals.get("fa-1")!.heartRate).toBe(80);
    expect(s.v.sample(fa, { heartRate: 81, at: 1_700_000_000_000 }, s.clock.now() + 900)).toBe(false);
    const latest = s.state.medical.vitals.get("fa-1")!;
    expect({ hr: latest.heartRate, spo2: latest.spo2, battery: latest.battery, signal: latest.signal, at: latest.at, temperature: latest.temperature })
      .toEqual({ hr: 81, spo2: 97, battery: 50, signal: 70, at: 1_700_000_000_000, temperature: -1 });
    expect(s.changed()).toBe(3);
    expect(s.events).toEqual([]);
  });

  it("a crossing is reported once; the alert raises the priority, names the vital and direction only, and follows the vital back", () => {
    const s = stream(0);
    let now = s.clock.now();
    expect(s.v.sample(fa, { heartRate: 150, spo2: 95 }, now)).toBe(true);
    expect(s.v.alertChange(fa, { heartRate: 150, spo2: 95 })).toEqual({ alerts: ["heartRate:high"] });
    expect(s.state.priority).toBe("critical");
    expect(s.events.map((e) => [e.type, e.detail])).toEqual([["vitals_alert", "heartRate high"], ["priority_changed", "high -> critical (vitals)"]]);
    expect(s.synced()).toBe(1);
    // still high: nothing to report
    expect(s.v.sample(fa, { heartRate: 170 }, ++now)).toBe(false);
    // another sender's sample decides too: the latest carrying a vital
    expect(s.v.sample(crew, { heartRate: 30 }, ++now)).toBe(true);
    s.v.alertChange(crew, { heartRate: 30 });
    expect([...s.state.medical.vitalsAlerts]).toEqual(["heartRate:low"]);
    expect(s.v.sample(crew, { heartRate: 70 }, ++now)).toBe(true);
    s.v.alertChange(crew, { heartRate: 70 });
    expect([...s.state.medical.vitalsAlerts]).toEqual([]);
    expect(s.events.map((e) => [e.type, e.detail])).toEqual([
      ["vitals_alert", "heartRate high"], ["priority_changed", "high -> critical (vitals)"], ["vitals_alert", "heartRate low"], ["vitals_normal", "heartRate"],
    ]);
    expect(s.state.priority).toBe("critical"); // back in range does not lower it
  });
});
