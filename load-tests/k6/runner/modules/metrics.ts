import { rt } from "../runtime.ts";
import type { MetricType } from "../protocol.ts";

/** The stand-in's `k6/metrics`: custom metrics, declared in the init context, added to in VU code. */

class Metric {
  readonly name: string;
  readonly type: MetricType;
  readonly isTime: boolean;
  constructor(name: string, type: MetricType, isTime: boolean) {
    rt.defineMetric(name, type, isTime);
    this.name = name;
    this.type = type;
    this.isTime = isTime;
  }

  add(value: unknown, tags?: Record<string, unknown>): boolean {
    let v: number;
    if (this.type === "rate") v = typeof value === "number" ? (value !== 0 ? 1 : 0) : value ? 1 : 0;
    else v = Number(value);
    if (!Number.isFinite(v)) throw new Error(`${this.name}: "${String(value)}" is not a number`);
    rt.emit(this.name, v, tags);
    return true;
  }
}

export class Counter extends Metric {
  constructor(name: string, isTime = false) { super(name, "counter", isTime); }
}

export class Gauge extends Metric {
  constructor(name: string, isTime = false) { super(name, "gauge", isTime); }
}

export class Rate extends Metric {
  constructor(name: string, isTime = false) { super(name, "rate", isTime); }
}

export class Trend extends Metric {
  constructor(name: string, isTime = false) { super(name, "trend", isTime); }
}

export default { Counter, Gauge, Rate, Trend };
