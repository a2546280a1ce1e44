/** Field validation shared by the RPCs; every error names the field. */
import { invalidArgument } from "./errors.ts";

const INT64_MAX = 9223372036854775807n;
/** Money is int64 in the shop's currency unit; bounded far below int64 so sums cannot overflow. */
export const MONEY_MAX = 1_000_000_000_000_000n;

/** A required positive int64 id (as the string protobuf-es gives for jstype=JS_STRING). */
export function requireId(field: string, id: string): string {
  if (id === "" || id === "0") throw invalidArgument(field, "required");
  return optionalId(field, id);
}

/** An id that may be 0 / empty (meaning none); returns "0" for none. */
export function optionalId(field: string, id: string): string {
  if (id === "" || id === "0") return "0";
  if (!/^[1-9]\d{0,18}$/.test(id) || BigInt(id) > INT64_MAX) throw invalidArgument(field, `not a valid id: "${id.slice(0, 40)}"`);
  return id;
}

/** Trimmed text of at most `max` characters, no control characters; `required` refuses "". */
export function text(field: string, value: string, max: number, required = false): string {
  const v = value.trim();
  if (required && !v) throw invalidArgument(field, "required");
  if (v.length > max) throw invalidArgument(field, `at most ${max} characters, got ${v.length}`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(v)) throw invalidArgument(field, "must not contain control characters");
  return v;
}

export function oneOf<T extends string>(field: string, value: string, allowed: readonly T[], fallback?: T): T {
  if (value === "" && fallback !== undefined) return fallback;
  if (!allowed.includes(value as T)) throw invalidArgument(field, `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got "${value.slice(0, 40)}"`);
  return value as T;
}

/** A non-negative amount of money (int64), as the decimal string stored in the database. */
export function money(field: string, value: bigint): string {
  if (value < 0n) throw invalidArgument(field, `must not be negative, got ${value}`);
  if (value > MONEY_MAX) throw invalidArgument(field, `at most ${MONEY_MAX}, got ${value}`);
  return value.toString();
}

export function urls(field: string, values: string[], max = 20): string[] {
  if (values.length > max) throw invalidArgument(field, `at most ${max} urls, got ${values.length}`);
  return values.map((u, i) => {
    const v = text(`${field}[${i}]`, u, 2000, true);
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      throw invalidArgument(`${field}[${i}]`, `not an absolute URL: "${v.slice(0, 80)}"`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw invalidArgument(`${field}[${i}]`, "must be an http or https URL");
    return v;
  });
}

export function quantity(field: string, value: number, min: number, max = 1_000_000): number {
  if (!Number.isInteger(value) || value < min || value > max) throw invalidArgument(field, `must be an integer from ${min} to ${max}, got ${value}`);
  return value;
}

/** Applies `check` to an optional (proto3 `optional`) field: undefined stays undefined. */
export function ifSet<T, R>(value: T | undefined, check: (v: T) => R): R | undefined {
  return value === undefined ? undefined : check(value);
}

/** Drops undefined values: what is left is the patch of an Update* RPC. */
export function patchOf<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
