/**
 * Group commit for queries: calls made while a flush is running wait for the next flush, which
 * runs them all as one query. The first call flushes at once, so a lone caller pays no delay;
 * under load, many callers share one round trip (this machine's round trips, not the queries,
 * were what limited delivery throughput: docs/performance.md).
 */
export class Batcher<In, Out> {
  private queue: Array<{ input: In; resolve: (o: Out) => void; reject: (e: unknown) => void }> = [];
  private flushing = false;
  private readonly run: (inputs: In[]) => Promise<Out[]>;
  private readonly max: number;

  /** `run` must answer one output per input, in order. */
  constructor(run: (inputs: In[]) => Promise<Out[]>, max = 500) {
    this.run = run;
    this.max = max;
  }

  call(input: In): Promise<Out> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush() {
    this.flushing = true;
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.max);
      try {
        const outs = await this.run(batch.map((b) => b.input));
        batch.forEach((b, i) => b.resolve(outs[i]!));
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.flushing = false;
  }
}
