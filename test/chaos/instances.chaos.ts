/**
 * Chaos 4: two and three service instances on one database, twelve webhooks. Work is shared
 * (every instance delivers), per-webhook order holds, and no webhook ever has two requests in
 * flight: not when an instance is SIGKILLed midway (the others take its webhooks over once its
 * heartbeat stops), and not when one is frozen (SIGSTOP) mid-request for longer than its
 * lease and heartbeat timeouts, a peer takes its webhooks over, and it then resumes (SIGCONT)
 * where it stopped.
 */
import { expect, it } from "vitest";
import { rounds, scenarioDatabases, spreadWebhooks, until, World } from "./harness.ts";

const database = scenarioDatabases();

async function newWorld(instances: number, webhooks = spreadWebhooks(12), env: Record<string, string> = {}): Promise<World> {
  const db = await database();
  const world = new World(db, env);
  await world.start(instances, { webhooks });
  return world;
}

for (const instances of [2, 3]) {
  it.each(rounds())(`round %i: ${instances} instances share the work, keep order, never overlap; one is SIGKILLed`, async () => {
    const world = await newWorld(instances);
    // Slow receivers keep requests in flight long enough for overlaps to show if they could happen.
    world.receiver.behave = () => ({ status: 200, delayMs: 5 + Math.random() * 60 });
    world.startPoller();
    world.startWriters(6);
    let counts: number[] = [];
    await until(
      "every instance to have delivered",
      async () => (counts = await Promise.all(world.services.map((_, i) => world.deliveredBy(i)))).every((n) => n >= 5),
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    // Kill it while it holds a webhook mid-request, so there is something to take over.
    await until("instance 0 to hold a webhook mid-request", async () => (await world.leasesOf(0)).some((id) => world.receiver.inFlight(id) > 0), { timeoutMs: 60_000, intervalMs: 5 });
    const victim = world.services[0]!;
    victim.child.kill("SIGKILL");
    await victim.exited;
    const killedAt = Date.now();
    // Its leases outlive it in the database: the survivors must take each of those webhooks over.
    const orphaned = await world.leasesOf(0);
    expect(orphaned.length, "leases the killed instance held").toBeGreaterThan(0);
    await until(
      "the survivors to deliver every webhook the killed instance held",
      () => orphaned.every((id) => world.receiver.delivered(id).some((a) => a.start > killedAt)),
      { timeoutMs: 90_000, intervalMs: 100 },
    );
    const takeover = orphaned.map((id) => world.receiver.delivered(id).find((a) => a.start > killedAt)!.start - killedAt);
    await world.deliveriesGo(1, "deliveries to every webhook after the kill");
    await world.stopWriters();
    const result = await world.verify();
    console.log(
      `${instances} instances: 2xx deliveries per instance before the kill ${JSON.stringify(counts)}; the killed one held ${orphaned.length} leases, taken over after ${JSON.stringify(takeover)} ms; ${result.changes} changes in ${result.requests} requests (${result.attempts} attempts), ${result.resent} re-sent`,
    );
    expect(counts.every((n) => n > 0), `every instance delivered before the kill: ${JSON.stringify(counts)}`).toBe(true);
    await world.stop();
  });
}

it.each(rounds())("round %i: an instance frozen mid-request (SIGSTOP) past its lease and heartbeat, then resumed: never two requests of one webhook at once", async () => {
  // Every other webhook is rate-limited (2/s): its turn waits between batches while holding the
  // lease with the next batch fixed, so a freeze lands there too, not only inside a request.
  // Batches of up to 200 changes keep those webhooks (400 changes/s) ahead of the writers.
  const world = await newWorld(2, spreadWebhooks(12, { rateLimitEvery: 2, rateLimit: 2 }), { SHOPHOOK_BATCH_MAX_CHANGES: "200" });
  // Answers take 100-500 ms (well under the 3 s timeout): the frozen instance's request gets its
  // answer while it is frozen; what it does with it, and with the sends it had lined up, is the test.
  world.receiver.behave = () => ({ status: 200, delayMs: 100 + Math.random() * 400 });
  world.startPoller();
  world.startWriters(4);
  const victim = 1;
  await until("both instances to have delivered", async () => (await world.deliveredBy(0)) > 0 && (await world.deliveredBy(victim)) > 0, { timeoutMs: 60_000, intervalMs: 250 });

  // A moment when the victim holds one webhook with a request in flight, and another between
  // requests (its next batch lined up, waiting out the rate limit).
  await until(
    "the victim to hold a webhook mid-request and another between requests",
    async () => {
      const leases = await world.leasesOf(victim);
      return leases.some((id) => world.receiver.inFlight(id) > 0) && leases.some((id) => world.receiver.inFlight(id) === 0);
    },
    { timeoutMs: 60_000, intervalMs: 5 },
  );
  // No API call of ours runs in it when it freezes: it must not hold a write transaction open
  // (that would stall the whole feed, another scenario), only its delivery work.
  await world.drain(victim);
  world.freeze(victim);
  const frozenAt = Date.now();
  const held = await world.leasesOf(victim);
  const midRequest = held.filter((id) => world.receiver.inFlight(id) > 0);
  const name = (id: string) => world.webhooks.find((w) => w.id === id)!.name;
  console.log(
    `sigstop: froze pid ${world.services[victim]!.child.pid} holding ${held.length} leases: mid-request on ${midRequest.map(name).join(", ") || "none"}; between requests on ${held.filter((id) => !midRequest.includes(id)).map(name).join(", ") || "none"}`,
  );
  expect(held.length, "the frozen instance held leases").toBeGreaterThan(0);

  // A peer takes each of its webhooks over (after its lease or heartbeat runs out) and delivers.
  await until(
    "the peer to take over every webhook the frozen instance held",
    async () => {
      const still = new Set(await world.leasesOf(victim));
      return held.every((id) => !still.has(id) && world.receiver.delivered(id).some((a) => a.start > frozenAt + 200));
    },
    { timeoutMs: 180_000, intervalMs: 100 },
  );
  const takeover = held.map((id) => world.receiver.delivered(id).find((a) => a.start > frozenAt + 200)!.start - frozenAt);
  // Thaw it while the peer is mid-request on one of those webhooks: the frozen one's lined-up
  // sends would overlap it if nothing stopped them.
  await until("the peer mid-request on a webhook the frozen instance held", () => held.some((id) => world.receiver.inFlight(id) > 0), { timeoutMs: 60_000, intervalMs: 5 });
  // From here on, tell who sends each request: what the resumed instance does is the point.
  const attemptsBefore = world.receiver.attempts.length;
  world.traceSenders(true);
  world.thaw(victim);
  const thawedAt = Date.now();
  await until("the resumed instance to answer", async () => (await fetch(`${world.services[victim]!.url}/healthz`).catch(() => undefined))?.status === 200, { timeoutMs: 30_000 });
  // It rejoins: takes API calls and delivers again.
  world.readmit(victim);
  const before = await world.deliveredBy(victim);
  await until("the resumed instance to deliver again", async () => (await world.deliveredBy(victim)) > before, { timeoutMs: 90_000, intervalMs: 250 });
  world.traceSenders(false);
  await world.deliveriesGo(1, "deliveries to every webhook after the thaw");
  await world.stopWriters();
  // The resumed instance's first requests: to webhooks it held when frozen (its lined-up sends,
  // which fencing must stop), or resends of batches a peer had delivered meanwhile.
  const pid = world.services[victim]!.child.pid;
  const fromVictim = world.receiver.attempts.slice(attemptsBefore).filter((a) => a.sender === pid && a.start < thawedAt + 5000);
  const stale = fromVictim.filter((a) => held.includes(a.webhookId) && world.receiver.attempts.some((b) => b !== a && b.callbackId === a.callbackId && b.outcome === "delivered" && b.start < a.start));
  console.log(
    `sigstop: frozen ${((thawedAt - frozenAt) / 1000).toFixed(1)} s; peer took over after ${JSON.stringify(takeover)} ms; in the 5 s after the thaw the resumed instance sent ${fromVictim.length} requests, ${stale.length} of them resends of batches already delivered to webhooks it had held${stale.length ? ` (${stale.map((a) => `${name(a.webhookId)} callback ${a.callbackId} at +${a.start - thawedAt} ms`).join("; ")})` : ""}; overlaps: ${world.receiver.overlaps.length}${world.receiver.overlaps.length ? `\n${world.describeOverlaps()}` : ""}`,
  );
  const result = await world.verify();
  console.log(`sigstop: ${result.changes} changes in ${result.requests} requests (${result.attempts} attempts), ${result.resent} re-sent`);
  await world.stop();
});
