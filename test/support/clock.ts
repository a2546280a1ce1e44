/** A clock the test moves by hand: retry delays and the retry window pass without waiting. */
import type { Clock } from "../../src/clock.ts";

export class ManualClock implements Clock {
  private t: number;
  constructor(start = Date.now()) {
    this.t = start;
  }
  now(): Date {
    return new Date(this.t);
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
