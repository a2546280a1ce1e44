/**
 * Where webhooks may send: never to loopback, private, link-local (cloud metadata, 169.254.169.254),
 * CGNAT, multicast, reserved or unspecified addresses, nor IPv6 forms that embed one (IPv4-mapped,
 * NAT64), unless an allow-list permits them (tests and local development). Checked when a webhook
 * is created and again at every connection, since DNS can change (see `lookup`).
 *
 * Names are resolved with c-ares (dns.Resolver, with a timeout), not the OS resolver: that one
 * runs on libuv's four threads, so a few endpoints whose DNS hangs would stall every
 * webhook's connections. Names DNS does not know (/etc/hosts: localhost...) fall back to it.
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

/** The 16 bytes of an IPv6 address (any textual form: "::", embedded dotted IPv4), or undefined. */
export function v6Bytes(address: string): number[] | undefined {
  if (!net.isIPv6(address)) return undefined;
  let text = address.toLowerCase().split("%")[0]!;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split(".").map(Number) as [number, number, number, number];
    text = text.slice(0, -dotted[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8) return undefined;
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 255];
  });
}

const dottedOf = (b: number[]) => b.join(".");
const startsWith = (b: number[], prefix: number[]) => prefix.every((x, i) => b[i] === x);
const zeros = (n: number) => Array<number>(n).fill(0);

/**
 * The IPv4 address an IPv6 address carries, if any: IPv4-mapped (::ffff:a.b.c.d),
 * IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96 and the
 * local 64:ff9b:1::/48), 6to4 (2002:aabb:ccdd::/16) and Teredo (2001::/32, the client address
 * inverted in the last 32 bits).
 */
export function embeddedV4(v6: string): string | undefined {
  const b = v6Bytes(v6);
  if (!b) return undefined;
  if (startsWith(b, [...zeros(10), 0xff, 0xff])) return dottedOf(b.slice(12));
  if (startsWith(b, [...zeros(8), 0xff, 0xff, 0, 0])) return dottedOf(b.slice(12));
  if (startsWith(b, zeros(12)) && !(startsWith(b, zeros(15)) && b[15]! <= 1)) return dottedOf(b.slice(12)); // not :: or ::1
  if (startsWith(b, [0, 0x64, 0xff, 0x9b, ...zeros(8)]) || startsWith(b, [0, 0x64, 0xff, 0x9b, 0, 1])) return dottedOf(b.slice(12));
  if (startsWith(b, [0x20, 0x02])) return dottedOf(b.slice(2, 6));
  if (startsWith(b, [0x20, 0x01, 0, 0])) return dottedOf(b.slice(12).map((x) => x ^ 0xff));
  return undefined;
}

export class AddressPolicy {
  private readonly allowed = new net.BlockList();
  private readonly allowAll: boolean;
  private readonly resolver: dns.promises.Resolver;

  /**
   * `allow`: CIDRs (or single addresses) permitted even though private; "*" permits everything.
   * `dnsServers`: resolvers to ask instead of the system's (tests).
   */
  constructor(allow: string[], dnsServers?: string[]) {
    // A hung DNS server costs a connection about 4.5 s (1.5 s, then a 3 s retry), then fails it like a refused one.
    this.resolver = new dns.promises.Resolver({ timeout: 1500, tries: 2 });
    if (dnsServers?.length) this.resolver.setServers(dnsServers);
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

  /** Every address of `host` (A and AAAA, by c-ares with a timeout; the OS resolver for names DNS does not know). */
  async resolve(host: string): Promise<dns.LookupAddress[]> {
    if (net.isIP(host)) return [{ address: host, family: net.isIP(host) }];
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)]);
    const out: dns.LookupAddress[] = [
      ...(v4.status === "fulfilled" ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === "fulfilled" ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ];
    if (out.length) return out;
    const codes = [v4, v6].map((r) => (r.status === "rejected" ? (r.reason as NodeJS.ErrnoException).code : "ENODATA"));
    // Timeouts and refusals stay errors; a name DNS does not have may be in /etc/hosts.
    if (codes.some((c) => c !== "ENOTFOUND" && c !== "ENODATA")) throw Object.assign(new Error(`DNS lookup of ${host} failed (${codes.join(", ")})`), { code: codes.find((c) => c !== "ENOTFOUND" && c !== "ENODATA") });
    return dns.promises.lookup(host, { all: true, verbatim: true });
  }

  /** Resolves `host` and returns the first refusal among its addresses (all must be allowed). */
  async checkHost(host: string): Promise<string | undefined> {
    const bare = host.startsWith("[") ? host.slice(1, -1) : host;
    if (net.isIP(bare)) return this.refusal(bare);
    let addresses: dns.LookupAddress[];
    try {
      addresses = await this.resolve(bare);
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
    this.resolve(hostname).then(
      (all) => {
        const addresses = options.family ? all.filter((a) => a.family === options.family) : all;
        if (!addresses.length) return callback(Object.assign(new Error(`${hostname} has no IPv${options.family} address`), { code: "ENOTFOUND" }));
        for (const a of addresses) {
          const why = this.refusal(a.address);
          if (why) return callback(Object.assign(new Error(`refused: ${hostname} resolves to ${why}`), { code: "ESHOPHOOKBLOCKED" }));
        }
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: unknown) => callback(err),
    );
  };
}
