import { rt } from "../runtime.ts";

/** The stand-in's `k6` module: check, group, sleep, fail. */

export function check(value: unknown, sets: Record<string, unknown>, tags?: Record<string, unknown>): boolean {
  let all = true;
  for (const [name, test] of Object.entries(sets ?? {})) {
    const ok = typeof test === "function" ? Boolean((test as (v: unknown) => unknown)(value)) : Boolean(test);
    rt.emit("checks", ok ? 1 : 0, { ...(tags ?? {}), check: name });
    if (!ok) all = false;
  }
  return all;
}

export function group<T>(name: string, fn: () => T): T {
  if (name.includes("::")) throw new Error("group and check names may not contain '::'");
  const outer = rt.tags.group ?? "";
  const started = performance.now();
  rt.tags.group = `${outer}::${name}`;
  try {
    return fn();
  } finally {
    rt.emit("group_duration", performance.now() - started);
    rt.tags.group = outer;
  }
}

export function sleep(seconds: number): void {
  rt.sleep(Number(seconds));
}

export function fail(message?: string): never {
  throw new Error(message ?? "");
}

export default { check, group, sleep, fail };
