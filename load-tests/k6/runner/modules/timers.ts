import { rt } from "../runtime.ts";

/** The stand-in's `k6/timers`: timers that keep the VU's current call alive until they fire or are cleared. */

export function setTimeout(cb: (...args: any[]) => unknown, ms?: number, ...args: unknown[]): number {
  return rt.setTimer(cb, ms ?? 0, args, false);
}

export function setInterval(cb: (...args: any[]) => unknown, ms?: number, ...args: unknown[]): number {
  return rt.setTimer(cb, ms ?? 0, args, true);
}

export function clearTimeout(id: unknown): void {
  rt.clearTimer(id);
}

export function clearInterval(id: unknown): void {
  rt.clearTimer(id);
}

export default { setTimeout, setInterval, clearTimeout, clearInterval };
