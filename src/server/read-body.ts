/** Reading a request body up to a size limit, for the HTTP handler and the direct JSON path. */
import type { NodeServerRequest } from "./one-port.ts";

/**
 * The body's chunks, or undefined as soon as it runs over `limit` bytes (the rest is then read
 * and dropped, so an HTTP/1.1 client still writing it gets the answer rather than a reset).
 */
export function readBody(req: NodeServerRequest, limit: number): Promise<Buffer[] | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: Buffer[] | undefined, err?: Error) => {
      if (settled) return;
      settled = true;
      req.off("data", onData);
      if (err) reject(err);
      else resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      settle(undefined);
      req.resume(); // flowing with no listener: the rest is dropped
    };
    req.on("data", onData);
    req.once("end", () => settle(chunks));
    req.once("error", (err: Error) => settle(undefined, err));
    req.once("close", () => settle(undefined, new Error("request closed before its body ended")));
  });
}

/** A body the HTTP handler already read (to size a chunked one) travels as the request's own async iterator. */
export function handOver(req: NodeServerRequest, chunks: Buffer[]) {
  Object.defineProperty(req, Symbol.asyncIterator, {
    value: async function* () {
      yield* chunks;
    },
  });
}

/** The chunks `handOver` left on the request, if any. */
export async function handedOver(req: NodeServerRequest): Promise<Buffer[] | undefined> {
  if (!Object.hasOwn(req, Symbol.asyncIterator)) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return chunks;
}
