/**
 * The engine's heartbeat, on a connection of its own: peers judge the engine's leases by its
 * heartbeat and by whether this connection's session still exists (src/db/sql/webhooks.ts), so
 * it must not be a pooled connection that idles out, nor queue behind delivery queries.
 */
import { SafeClient } from "../db/pool.ts";
import * as sql from "../db/sql/webhooks.ts";

export class Heartbeat {
  private client: SafeClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private readonly url: string;
  private readonly owner: string;

  constructor(url: string, owner: string) {
    this.url = url;
    this.owner = owner;
  }

  /** One heartbeat; reconnects first when the connection was lost (a database restart). */
  beat(): Promise<void> {
    return (this.beating ??= this.send().finally(() => (this.beating = undefined)));
  }

  private async send() {
    try {
      if (!this.client) {
        const client = new SafeClient({ connectionString: this.url, application_name: "shophook heartbeat", options: "-c synchronous_commit=off", connectionTimeoutMillis: 5_000 });
        client.on("error", () => {
          if (this.client === client) this.client = undefined;
        });
        await client.connect();
        this.client = client;
      }
      await this.client.query(sql.heartbeat(this.owner));
    } catch (err) {
      const broken = this.client;
      this.client = undefined;
      await broken?.end().catch(() => undefined);
      throw err;
    }
  }

  /** Beats every `intervalMs`; failures go to `onError` (the next beat reconnects). */
  start(intervalMs: number, onError: (err: Error) => void) {
    this.timer = setInterval(() => void this.beat().catch(onError), intervalMs);
    this.timer.unref();
  }

  async stop() {
    clearInterval(this.timer);
    await this.beating?.catch(() => undefined);
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}
