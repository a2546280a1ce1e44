/**
 * A tiny DNS server for tests: answers A queries from a table, leaves names listed in `hang`
 * unanswered (a DNS server that never replies), and answers everything else with no records.
 */
import dgram from "node:dgram";

export interface FakeDns {
  /** "127.0.0.1:port", for SHOPHOOK_DNS_SERVERS / AddressPolicy. */
  server: string;
  queries: string[];
  close(): Promise<void>;
}

function qname(msg: Buffer): { name: string; end: number } {
  const labels: string[] = [];
  let i = 12;
  while (msg[i]) {
    labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString());
    i += msg[i]! + 1;
  }
  return { name: labels.join(".").toLowerCase(), end: i + 1 };
}

export async function startFakeDns(records: Record<string, string>, hang: string[] = []): Promise<FakeDns> {
  const sock = dgram.createSocket("udp4");
  const queries: string[] = [];
  sock.on("message", (msg, rinfo) => {
    const { name, end } = qname(msg);
    const type = msg.readUInt16BE(end);
    queries.push(`${name}/${type}`);
    if (hang.includes(name)) return;
    const question = msg.subarray(12, end + 4);
    const ip = type === 1 ? records[name] : undefined;
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // id
    header.writeUInt16BE(0x8180, 2); // response, recursion available, no error
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(ip ? 1 : 0, 6);
    const answer = ip ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, ...ip.split(".").map(Number)]) : Buffer.alloc(0);
    sock.send(Buffer.concat([header, question, answer]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, "127.0.0.1", resolve));
  return {
    server: `127.0.0.1:${sock.address().port}`,
    queries,
    close: () => new Promise((resolve) => sock.close(() => resolve())),
  };
}
