/** Field validation shared by the RPCs; every error names the field. */
import { invalidArgument } from "./errors.ts";

const INT64_MAX = 9223372036854775807n;

/** A required positive int64 id (as the string protobuf-es gives for jstype=JS_STRING). */
export function requireId(field: string, id: string): string {
  if (id === "" || id === "0") throw invalidArgument(field, "required");
  if (!/^\d{1,19}$/.test(id) || BigInt(id) > INT64_MAX) throw invalidArgument(field, `not a valid id: "${id.slice(0, 40)}"`);
  return id;
}
