/** Structured JSON logs (pino) to stdout. */
import { type DestinationStream, pino, type Logger } from "pino";

export type { Logger };

/** JSON lines at `level` and above, to stdout or to `destination` (tests read their lines back). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: "shophook" },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: {
      // Errors keep their cause chain in logs (clients never see them), without the pg client
      // object some driver errors carry.
      err: (e: Error) => {
        const s = pino.stdSerializers.errWithCause(e) as Record<string, unknown>;
        delete s.client;
        return s;
      },
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * Logs a recurring failure (a poll while the database is away) at most once per `everyMs` per
 * kind, saying how many were silenced since.
 */
export function throttled(log: Logger, everyMs = 60_000, maxKinds = 1_000) {
  const seen = new Map<string, { at: number; silenced: number }>();
  return (level: "warn" | "error", kind: string, obj: object, msg: string) => {
    // Kinds may carry an error's text, which can be unique: past `maxKinds`, forget those whose
    // window is over (they throttle nothing), and if that is not enough, all of them.
    if (seen.size >= maxKinds) {
      const now = Date.now();
      for (const [k, v] of seen) if (now - v.at >= everyMs) seen.delete(k);
      if (seen.size >= maxKinds) seen.clear();
    }
    const s = seen.get(kind);
    if (s && Date.now() - s.at < everyMs) {
      s.silenced++;
      return;
    }
    seen.set(kind, { at: Date.now(), silenced: 0 });
    log[level]({ ...obj, silencedSinceLast: s?.silenced ?? 0 }, msg);
  };
}
