/**
 * LISTEN on a connection of its own, reconnecting with backoff. NOTIFY only wakes: a
 * notification lost while the connection was down is made good by `onConnect`, which runs after
 * every (re)connect so the caller can look at everything once (delivery/engine.ts sweeps).
 */
import { SafeClient } from "./pool.ts";

export interface ListenerOptions {
  url: string;
  channels: string[];
  onNotify(channel: string, payload: string): void;
  /** After every connect, the first included: what was missed meanwhile is found here. */
  onConnect(): void;
  onError(err: Error): void;
}

export class Listener {
  private client: SafeClient | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private attempt = 0;
  private readonly opts: ListenerOptions;

  constructor(opts: ListenerOptions) {
    this.opts = opts;
  }

  /** Connects (the first time, failures are thrown: the database must be reachable to start). */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new SafeClient({ connectionString: this.opts.url, application_name: "shophook listener", connectionTimeoutMillis: 5_000 });
    client.on("notification", (n) => this.opts.onNotify(n.channel, n.payload ?? ""));
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    await client.connect();
    try {
      for (const ch of this.opts.channels) await client.query(`LISTEN ${client.escapeIdentifier(ch)}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.client = client;
    this.attempt = 0;
    this.opts.onConnect();
  }

  private lost(client: SafeClient) {
    if (this.client !== client || this.stopped) return;
    this.client = undefined;
    void client.end().catch(() => undefined);
    this.schedule();
  }

  private schedule() {
    if (this.stopped) return;
    // 0.1 s, doubling to 5 s, with jitter: a restarted database is not stormed by every instance at once.
    const delay = Math.min(5_000, 100 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    this.retry = setTimeout(() => {
      this.connect().catch((err: unknown) => {
        this.opts.onError(err as Error);
        this.schedule();
      });
    }, delay);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}
