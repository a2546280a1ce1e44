/**
 * Standard Webhooks v1 signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
 * `${webhook-id}.${webhook-timestamp}.${body}` with the secret's bytes (base64 after "whsec_"),
 * sent as `webhook-signature: v1,<base64>`; several space-separated during a secret rotation.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes } from "node:crypto";

const PREFIX = "whsec_";

/** A new secret: "whsec_" + base64 of 24 random bytes (192 bits). */
export function newSecret(): string {
  return PREFIX + randomBytes(24).toString("base64");
}

/** Keys by secret: a raw key given to createHmac becomes a new KeyObject on every call (measurable per delivery). */
const keys = new Map<string, KeyObject>();

function keyOf(secret: string): KeyObject {
  let key = keys.get(secret);
  if (!key) {
    if (keys.size >= 10_000) keys.clear();
    key = createSecretKey(Buffer.from(secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret, "base64"));
    keys.set(secret, key);
  }
  return key;
}

export function sign(secret: string, id: string, timestampSec: number, body: string): string {
  return "v1," + createHmac("sha256", keyOf(secret)).update(`${id}.${timestampSec}.${body}`).digest("base64");
}

/** The three Standard Webhooks headers for one request, signed with every given secret. */
export function signatureHeaders(secrets: string[], id: string, timestampSec: number, body: string): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampSec),
    "webhook-signature": secrets.map((s) => sign(s, id, timestampSec, body)).join(" "),
  };
}
