/**
 * The delivery engine's notion of "now" for retry scheduling: the system clock in production,
 * a hand-moved one in tests (so a 30 s backoff or a 72 h retry window takes no real time).
 * HTTP timeouts and leases use real time.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
