/** Structured JSON logs (pino) to stdout. */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "shophook" },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Errors keep their cause chain in logs; clients never see them.
    serializers: { err: pino.stdSerializers.errWithCause },
  });
}
