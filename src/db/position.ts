/** Change-log positions [xid, seq] (as text, int64), ordered as the feed reads them. */
export type Position = readonly [string, string] | readonly string[];

/** Orders two positions: negative, zero or positive. */
export function comparePositions(a: Position, b: Position): number {
  const d = BigInt(a[0]!) - BigInt(b[0]!) || BigInt(a[1]!) - BigInt(b[1]!);
  return d > 0n ? 1 : d < 0n ? -1 : 0;
}

/** The later of two positions (the first when equal). */
export function maxPosition<P extends Position>(a: P, b: P): P {
  return comparePositions(a, b) >= 0 ? a : b;
}
