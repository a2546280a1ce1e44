/**
 * When to try a failed batch again: exponential from the base delay (30 s by default), doubling
 * per failure, with ±25% jitter so webhooks that failed together do not retry together, capped
 * per step; after failing for longer than the window, the webhook stops.
 */
import type { Config } from "../config.ts";

export type RetryConfig = Pick<Config, "retryBaseSeconds" | "retryMaxStepSeconds" | "retryWindowHours">;

/** Delay before attempt `failures + 1`, after `failures` consecutive failures (≥ 1). */
export function retryDelayMs(failures: number, cfg: RetryConfig, random: () => number = Math.random): number {
  const cap = cfg.retryMaxStepSeconds * 1000;
  const exp = cfg.retryBaseSeconds * 1000 * 2 ** Math.min(failures - 1, 30);
  return Math.round(Math.min(cap, Math.min(exp, cap) * (0.75 + 0.5 * random())));
}

/** After a failure at `now`: stop, or retry at the returned time. */
export function afterFailure(failures: number, failingSince: Date, now: Date, cfg: RetryConfig, random?: () => number): { state: "retry"; at: Date } | { state: "stop" } {
  if (now.getTime() - failingSince.getTime() >= cfg.retryWindowHours * 3_600_000) return { state: "stop" };
  return { state: "retry", at: new Date(now.getTime() + retryDelayMs(failures, cfg, random)) };
}
