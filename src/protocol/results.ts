import { toWireError } from "./errors.ts";

/** The result shape of every method one actor calls on another (it survives IPC as JSON). */
export type CallResult<T = Record<string, unknown>> = ({ ok: true } & T) | { ok: false; error: { code: string; message: string } };

/** A refusal as a CallResult. */
export function fail(code: string, message: string): { ok: false; error: { code: string; message: string } } {
  return { ok: false, error: { code, message } };
}

/** Runs an action and answers its outcome as a CallResult: a thrown error becomes its wire error. */
export async function guard<T extends object>(action: () => T | Promise<T>): Promise<CallResult<T>> {
  try {
    const value = await action() as Record<string, unknown>;
    return { ...value, ok: true } as CallResult<T>;
  } catch (error) {
    return { ok: false, error: toWireError(error) };
  }
}
