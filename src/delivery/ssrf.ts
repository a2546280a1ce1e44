/**
 * Where webhooks may send: never to loopback, private, link-local (cloud metadata, 169.254.169.254),
 * CGNAT, multicast, reserved or unspecified addresses, nor IPv6 forms that embed one (IPv4-mapped,
 * NAT64), unless an allow-list permits them (tests and local development). Checked when a webhook
 * is created and again at every connection, since DNS can change (see `safeLookup`).
 */
import dns from "node:dns";
import net from "node:net";

const BLOCKED_V4: Array<[string, number]> = [
  ["0.0.0.0", 8], // "this" network, unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // CGNAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.88.99.0", 24], // 6to4 relay
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
];
const BLOCKED_V6: Array<[string, number]> = [
  ["::", 128], // unspecified
  ["::1", 128],
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
  ["2001:db8::", 32], // documentation
  ["100::", 64], // discard
];

const blocked = new net.BlockList();
for (const [a, p] of BLOCKED_V4) blocked.addSubnet(a, p, "ipv4");
for (const [a, p] of BLOCKED_V6) blocked.addSubnet(a, p, "ipv6");

/** The IPv4 address an IPv6 address carries (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96), if any. */
function embeddedV4(v6: string): string | undefined {
  const lower = v6.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

export class AddressPolicy {
  private readonly allowed = new net.BlockList();
  private readonly allowAll: boolean;

  /** `allow`: CIDRs (or single addresses) permitted even though private; "*" permits everything. */
  constructor(allow: string[]) {
    this.allowAll = allow.includes("*");
    for (const entry of allow) {
      if (entry === "*") continue;
      const [addr, bits] = entry.split("/");
      const type = net.isIPv6(addr!) ? "ipv6" : "ipv4";
      if (!net.isIP(addr!)) throw new Error(`allow-list entry is not an IP or CIDR: "${entry}"`);
      this.allowed.addSubnet(addr!, bits === undefined ? (type === "ipv6" ? 128 : 32) : Number(bits), type);
    }
  }

  /** Why `address` may not be sent to, or undefined when it may. */
  refusal(address: string): string | undefined {
    if (this.allowAll) return undefined;
    const family = net.isIP(address);
    if (family === 0) return `not an IP address: ${address}`;
    const type = family === 6 ? "ipv6" : "ipv4";
    if (this.allowed.check(address, type)) return undefined;
    const v4 = family === 6 ? embeddedV4(address) : undefined;
    if (v4 !== undefined) {
      if (this.allowed.check(v4, "ipv4")) return undefined;
      if (blocked.check(v4, "ipv4")) return `${address} embeds the non-public address ${v4}`;
    }
    if (blocked.check(address, type)) return `${address} is not a public address (loopback, private, link-local, multicast or reserved)`;
    return undefined;
  }

  /** Resolves `host` and returns the first refusal among its addresses (all must be allowed). */
  async checkHost(host: string): Promise<string | undefined> {
    const bare = host.startsWith("[") ? host.slice(1, -1) : host;
    if (net.isIP(bare)) return this.refusal(bare);
    let addresses: dns.LookupAddress[];
    try {
      addresses = await dns.promises.lookup(bare, { all: true, verbatim: true });
    } catch (err) {
      return `host ${bare} does not resolve (${(err as NodeJS.ErrnoException).code ?? "error"})`;
    }
    for (const a of addresses) {
      const why = this.refusal(a.address);
      if (why) return `${bare} resolves to ${why}`;
    }
    return undefined;
  }

  /**
   * A `lookup` for net/tls connect options: resolves, then refuses when any address is not
   * allowed, so a name that starts resolving to an internal address is caught at connect time.
   */
  lookup = (hostname: string, options: dns.LookupOptions, callback: (...args: any[]) => void): void => {
    dns.lookup(hostname, { ...options, all: true, verbatim: true }, (err, addresses) => {
      if (err) return callback(err);
      for (const a of addresses) {
        const why = this.refusal(a.address);
        if (why) return callback(Object.assign(new Error(`refused: ${hostname} resolves to ${why}`), { code: "ESHOPHOOKBLOCKED" }));
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
