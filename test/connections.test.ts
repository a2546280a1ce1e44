/**
 * Connection limits of the one port (SHOPHOOK_MAX_CONNECTIONS, _HEADERS_TIMEOUT_MS,
 * _KEEP_ALIVE_TIMEOUT_MS, _H2_IDLE_TIMEOUT_MS, _H2_MAX_STREAMS, and Node's rapid-reset limit),
 * each shown against the real server with small values.
 */
import http2 from "node:http2";
import net from "node:net";
import { describe, expect, it } from "vitest";
import { useApp } from "./support/app.ts";

const LIMITS = { maxConnections: 30, headersTimeoutMs: 500, requestTimeoutMs: 2_000, keepAliveTimeoutMs: 300, h2IdleTimeoutMs: 600, h2MaxStreams: 10 };
const t = useApp({ connections: LIMITS });

const port = () => Number(new URL(t.app.url).port);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw TCP connection and when it closed (ms after it opened), if it did. */
function socket() {
  const s = net.connect(port(), "127.0.0.1");
  const opened = performance.now();
  const state = { s, closedAfter: undefined as number | undefined, data: "" };
  s.on("data", (d) => (state.data += d.toString()));
  s.on("error", () => undefined);
  s.on("close", () => (state.closedAfter = performance.now() - opened));
  return state;
}

async function healthy(): Promise<number> {
  return (await fetch(`${t.app.url}/healthz`)).status;
}

describe("HTTP/1.1", () => {
  it("a slowloris (a header byte at a time) is cut off after the headers timeout; the port serves meanwhile", async () => {
    const slow = socket();
    await new Promise((r) => slow.s.once("connect", r));
    slow.s.write("POST /v1/shop.Misc/VersionInfo HTTP/1.1\r\nHost: x\r\n");
    const drip = setInterval(() => slow.s.writable && slow.s.write("x"), 100);
    try {
      expect(await healthy()).toBe(200);
      await expect.poll(() => slow.closedAfter, { timeout: 5_000 }).toBeDefined();
    } finally {
      clearInterval(drip);
    }
    expect(slow.data).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
    expect(slow.closedAfter!).toBeGreaterThanOrEqual(LIMITS.headersTimeoutMs - 50);
    expect(slow.closedAfter!).toBeLessThan(LIMITS.headersTimeoutMs + 1_500);
  });

  it("a connection that sends nothing is closed after the headers timeout", async () => {
    const mute = socket();
    await expect.poll(() => mute.closedAfter, { timeout: 5_000 }).toBeDefined();
    expect(mute.closedAfter!).toBeGreaterThanOrEqual(LIMITS.headersTimeoutMs - 50);
  });

  it("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const c = socket();
    await new Promise((r) => c.s.once("connect", r));
    c.s.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await expect.poll(() => c.data, { timeout: 5_000 }).toContain('"ok"');
    const answered = performance.now();
    await expect.poll(() => c.closedAfter, { timeout: 5_000 }).toBeDefined();
    const idle = performance.now() - answered;
    expect(idle).toBeLessThan(LIMITS.keepAliveTimeoutMs + 1_500);
  });
});

describe("HTTP/2", () => {
  it("advertises its stream limit, and closes an idle session after the idle timeout", async () => {
    const session = http2.connect(t.app.url);
    session.on("error", () => undefined);
    await new Promise((r) => session.once("remoteSettings", r));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(LIMITS.h2MaxStreams);
    const req = session.request({ ":method": "GET", ":path": "/healthz" });
    req.resume();
    await new Promise((r) => req.once("end", r));
    const idleFrom = performance.now();
    const goaway = new Promise<number>((r) => session.once("goaway", () => r(performance.now() - idleFrom)));
    const closed = new Promise<number>((r) => session.once("close", () => r(performance.now() - idleFrom)));
    const after = await Promise.race([goaway, closed]);
    expect(after).toBeGreaterThanOrEqual(LIMITS.h2IdleTimeoutMs - 100);
    expect(after).toBeLessThan(LIMITS.h2IdleTimeoutMs + 2_000);
    await closed;
  });

  it("a rapid-reset flood closes the flooding session; another client is served throughout", async () => {
    const attacker = http2.connect(t.app.url);
    attacker.on("error", () => undefined);
    let goawayCode: number | undefined;
    attacker.on("goaway", (code) => (goawayCode = code));
    const closed = new Promise<void>((r) => attacker.once("close", () => r()));
    await new Promise((r) => attacker.once("remoteSettings", r));
    const flood = (async () => {
      for (let i = 0; i < 5_000 && !attacker.destroyed && !attacker.closed; i++) {
        try {
          const s = attacker.request({ ":method": "POST", ":path": "/shop.Misc/VersionInfo", "content-type": "application/grpc" }, { endStream: false });
          s.on("error", () => undefined);
          s.close(http2.constants.NGHTTP2_CANCEL);
        } catch {
          break; // the session is going away
        }
        if (i % 100 === 0) await sleep(0);
      }
    })();
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      expect(await healthy()).toBe(200);
      latencies.push(performance.now() - t0);
    }
    await flood;
    await Promise.race([closed, sleep(5_000)]);
    expect(attacker.destroyed || attacker.closed, "the flooding session was closed").toBe(true);
    // The server ended it (nghttp2 answers the flood with GOAWAY; its code varies with the limit hit first).
    expect(goawayCode, "GOAWAY from the server").toBeDefined();
    expect(await healthy()).toBe(200);
    attacker.destroy();
  });
});

describe("connections", () => {
  it("connections over the limit are closed as they arrive; room again once others close", async () => {
    // More than the limit at once (this process's own keep-alive connections count too).
    const held = Array.from({ length: LIMITS.maxConnections + 10 }, () => socket());
    await sleep(150);
    // The ones over the limit were closed at once, well before the headers timeout.
    expect(held.filter((h) => h.closedAfter !== undefined).length).toBeGreaterThanOrEqual(10);
    expect(held.filter((h) => h.closedAfter === undefined).length).toBeLessThanOrEqual(LIMITS.maxConnections);
    for (const h of held) h.s.destroy();
    await expect.poll(() => healthy().catch(() => 0), { timeout: 3_000 }).toBe(200);
  });
});
