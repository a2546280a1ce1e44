/**
 * What an API key may do. A key has every scope, or the ones it was created with:
 * - `read`: every Get and List of shop data, and the change feeds (GetChanges);
 * - `write`: entity writes (create, update, delete, stock);
 * - `webhooks`: webhook management and delivery history;
 * - `keys`: API key management.
 * shop.Misc (VersionInfo, CurrentAccount) needs none. Keys made before scopes existed, and keys
 * created without any, have them all.
 */
export const SCOPES = ["read", "write", "webhooks", "keys"] as const;
export type Scope = (typeof SCOPES)[number];

/** The scope an RPC needs (service type name without the `shop.` package), or undefined: any key. */
export function scopeOf(service: string, method: string): Scope | undefined {
  switch (service) {
    case "shop.Misc":
      return undefined;
    case "shop.ApiKey":
      return "keys";
    case "shop.History":
      return "read";
    case "shop.Webhook":
      // eTop's GetChanges lives under Webhook, but it is the feed: polling needs only `read`.
      return method === "GetChanges" ? "read" : "webhooks";
    default:
      return /^(Get|List)/.test(method) ? "read" : "write";
  }
}

/** Parses a list of scope names (`read,webhooks`); throws RangeError naming an unknown one. */
export function parseScopes(names: readonly string[]): Scope[] {
  const out = new Set<Scope>();
  for (const raw of names) {
    const name = raw.trim();
    if (!name) continue;
    if (!(SCOPES as readonly string[]).includes(name)) throw new RangeError(`unknown scope "${name.slice(0, 40)}": use ${SCOPES.join(", ")}`);
    out.add(name as Scope);
  }
  return SCOPES.filter((s) => out.has(s));
}
