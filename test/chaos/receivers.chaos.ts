/**
 * Chaos 3: receivers that fail in every way (500, timeout, slow body, reset, refused, 429 with
 * Retry-After, 410, an invalid TLS certificate) while writers keep writing and a poller follows
 * GetChanges; then they recover. While they fail, each webhook's state, last_error and retry
 * schedule are as specified (docs/delivery.md), checked failure by failure: the delay the
 * service chose (next_attempt_at - sent_at) within the schedule's jitter, and the next attempt
 * made no earlier than that (a 429's no earlier than its Retry-After); 410 stops at once. Three
 * healthy webhooks deliver meanwhile. After recovery the scenario ends with the final check
 * (every change, in order, no overlap, the poller's copy equals the database) and every state ok.
 *
 * Real time, with a short schedule: base 1 s, step cap 4 s (so 1, 2, 4, 4 s, each ±25%), 1 s timeout.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { ALL_ENTITIES, ENTITY_GROUPS, type Reply, rounds, scenarioDatabases, until, type WebhookSpec, World } from "./harness.ts";

const database = scenarioDatabases();

const TIMEOUT_MS = 1000;
const BASE_S = 1;
const MAX_STEP_S = 4;
const RETRY_AFTER_S = 3;
/** Failures observed per webhook before recovery. */
const FAILURES = 3;
/** Our clock and the service's are the same machine's; rounding to ms and timer granularity only. */
const EARLY_MS = 100;
/** How late a retry may start after it is due (sweep every 200 ms, pg-boss polling 0.5 s; a loaded machine). */
const LATE_MS = 5_000;

type Kind = "500" | "hang" | "slow-body" | "reset" | "429" | "410" | "refused" | "tls";
const KINDS: Kind[] = ["500", "hang", "slow-body", "reset", "429", "410", "refused", "tls"];
/** Kinds that retry (all but 410), and the last_error each must show. */
const ERRORS: Record<Exclude<Kind, "410">, RegExp> = {
  "500": /^unexpected status: 500$/,
  hang: new RegExp(`^timeout after ${TIMEOUT_MS} ms$`),
  "slow-body": new RegExp(`^timeout after ${TIMEOUT_MS} ms$`),
  reset: /^connection reset$/,
  "429": /^unexpected status: 429$/,
  refused: /^connection refused$/,
  tls: /^tls error: /,
};
const RETRYING = Object.keys(ERRORS) as Array<Exclude<Kind, "410">>;
/** How the receiver answers while failing (refused and tls never reach it). */
const FAULTS: Partial<Record<Kind, Reply>> = {
  "500": { status: 500 },
  hang: { fault: "hang" },
  "slow-body": { fault: "slow-body" },
  reset: { fault: "reset" },
  "429": { status: 429, headers: { "retry-after": String(RETRY_AFTER_S) } },
  "410": { status: 410 },
};

/** The delay after failure n as specified: base * 2^(n-1), capped, ±25% (never above the cap). */
function schedule(n: number): [number, number] {
  const e = Math.min(BASE_S * 2 ** (n - 1), MAX_STEP_S) * 1000;
  return [0.75 * e, Math.min(MAX_STEP_S * 1000, 1.25 * e)];
}

function selfSigned() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shophook-tls-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1", "-subj", "/CN=localhost"], { stdio: "ignore" });
  const pair = { key: fs.readFileSync(`${dir}/key.pem`, "utf8"), cert: fs.readFileSync(`${dir}/cert.pem`, "utf8") };
  fs.rmSync(dir, { recursive: true, force: true });
  return pair;
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A failure as the webhook row showed it right after it was recorded. */
interface Failure {
  n: number;
  state: string;
  error: string;
  retried: number;
  sentAt: number;
  next: number | null;
  active: boolean;
  disabledReason: string;
}

interface Row {
  id: string;
  state: string;
  attempts: number;
  active: boolean;
  disabled_reason: string;
  last_error: { error: string; retried: number; sent_at: string } | null;
  next_attempt_at: Date | null;
}

it.each(rounds())("round %i: every kind of failing receiver during a burst, then recovery: states, schedule, nothing lost", async () => {
  const db = await database();
  const world = new World(db, {
    SHOPHOOK_DELIVERY_TIMEOUT_MS: String(TIMEOUT_MS),
    SHOPHOOK_RETRY_BASE_SECONDS: String(BASE_S),
    SHOPHOOK_RETRY_MAX_STEP_SECONDS: String(MAX_STEP_S),
  });
  await world.receiver.start();
  const tlsUrl = await world.receiver.listen({ tls: selfSigned() });
  const refusedPort = await closedPort();
  const url: Partial<Record<Kind, string>> = { refused: `http://127.0.0.1:${refusedPort}/hook`, tls: tlsUrl };
  const specs: WebhookSpec[] = [
    ...KINDS.map((k) => ({ entities: ALL_ENTITIES, url: url[k], name: k })),
    ...ENTITY_GROUPS.map((entities) => ({ entities, name: `healthy ${entities.join("+")}` })),
  ];
  const kindOf = new Map<string, Kind>();
  let recovered = false;
  world.receiver.behave = (id) => {
    const k = kindOf.get(id);
    return !recovered && k && FAULTS[k] ? FAULTS[k] : { status: 200, delayMs: Math.random() * 20 };
  };
  const idOf = (k: Kind) => world.webhooks[KINDS.indexOf(k)]!.id;
  // Watch every failure as it is recorded (the next one comes at least 0.75 s later), from the
  // moment the webhooks exist (the seed writes are their first changes).
  const failures = new Map<Kind, Map<number, Failure>>(KINDS.map((k) => [k, new Map()]));
  let watching = true;
  let watcher: Promise<void> = Promise.resolve();
  const watch = async () => {
    while (watching) {
      const { rows } = await world.pool.query<Row>("SELECT id::text, state, attempts, active, disabled_reason, last_error, next_attempt_at FROM webhooks WHERE id = ANY($1::bigint[])", [KINDS.map(idOf)]);
      for (const r of rows) {
        const seen = failures.get(kindOf.get(r.id)!)!;
        if (!r.last_error || r.attempts === 0 || seen.has(r.attempts)) continue;
        seen.set(r.attempts, {
          n: r.attempts,
          state: r.state,
          error: r.last_error.error,
          retried: r.last_error.retried,
          sentAt: Date.parse(r.last_error.sent_at),
          next: r.next_attempt_at?.getTime() ?? null,
          active: r.active,
          disabledReason: r.disabled_reason,
        });
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  await world.start(1, {
    webhooks: specs,
    afterWebhooks: () => {
      KINDS.forEach((k, i) => kindOf.set(world.webhooks[i]!.id, k));
      // A failed query ends the watch (the scenario then times out naming what it waited for).
      watcher = watch().catch((err: unknown) => {
        if (watching) console.error(`failure watch stopped: ${(err as Error).message}`);
      });
    },
  });
  world.startPoller();
  world.startWriters(4);
  try {
    await until(
      `${FAILURES} failures of every failing webhook and 410's stop`,
      () => RETRYING.every((k) => failures.get(k)!.size >= FAILURES) && failures.get("410")!.size >= 1,
      { timeoutMs: 90_000, intervalMs: 100 },
    );
  } finally {
    watching = false;
    await watcher;
  }

  // Failure by failure: state, error, the delay chosen, and when the next attempt came.
  for (const k of RETRYING) {
    const id = idOf(k);
    const { rows: history } = await world.pool.query<{ attempt: number; created_at: Date; duration_ms: number }>(
      "SELECT attempt, created_at, duration_ms FROM deliveries WHERE webhook_id = $1 AND NOT test ORDER BY created_at",
      [id],
    );
    const arrivals = world.receiver.attempts.filter((a) => a.webhookId === id);
    for (let n = 1; n <= FAILURES; n++) {
      const f = failures.get(k)!.get(n);
      expect(f, `${k}: failure ${n} observed (saw ${[...failures.get(k)!.keys()]})`).toBeDefined();
      expect(f!.state, `${k}: state after failure ${n}`).toBe("retry");
      expect(f!.error, `${k}: last_error after failure ${n}`).toMatch(ERRORS[k]);
      expect(f!.retried, `${k}: last_error.retried after failure ${n}`).toBe(n);
      const delay = f!.next! - f!.sentAt;
      if (k === "429") {
        expect(delay, `429: the delay after failure ${n} is the Retry-After (${RETRY_AFTER_S} s)`).toBeGreaterThanOrEqual(RETRY_AFTER_S * 1000 - 1);
        expect(delay, `429: the delay after failure ${n} is the Retry-After (${RETRY_AFTER_S} s)`).toBeLessThanOrEqual(RETRY_AFTER_S * 1000 + 1);
      } else {
        const [lo, hi] = schedule(n);
        expect(delay, `${k}: delay after failure ${n} within ${lo}-${hi} ms`).toBeGreaterThanOrEqual(lo - 1);
        expect(delay, `${k}: delay after failure ${n} within ${lo}-${hi} ms`).toBeLessThanOrEqual(hi + 1);
      }
      if (n === FAILURES) continue;
      // Attempt n+1 (from the history: its end minus its duration) came when due, not before.
      const next = history.find((h) => h.attempt === n + 1);
      expect(next, `${k}: attempt ${n + 1} in the delivery history`).toBeDefined();
      const started = next!.created_at.getTime() - next!.duration_ms;
      expect(started, `${k}: attempt ${n + 1} no earlier than due`).toBeGreaterThanOrEqual(f!.next! - EARLY_MS);
      expect(started, `${k}: attempt ${n + 1} no later than ${LATE_MS} ms after due`).toBeLessThanOrEqual(f!.next! + LATE_MS);
      if (k === "refused" || k === "tls") continue; // these never reach the receiver
      // The receiver's own clock agrees: one request per attempt, each no earlier than due.
      expect(arrivals.length, `${k}: requests received for ${n + 1} attempts`).toBeGreaterThanOrEqual(n + 1);
      expect(arrivals[n]!.start, `${k}: request ${n + 1} arrived no earlier than due`).toBeGreaterThanOrEqual(f!.next! - EARLY_MS);
      if (k === "429") {
        expect(arrivals[n]!.start - arrivals[n - 1]!.start, `429: request ${n + 1} no earlier than Retry-After after request ${n}`).toBeGreaterThanOrEqual(RETRY_AFTER_S * 1000 - EARLY_MS);
      }
    }
    expect(new Set(arrivals.map((a) => a.callbackId)).size, `${k}: every attempt resends the same batch`).toBeLessThanOrEqual(1);
  }
  // 410 stops at once: one attempt, no retry, deactivated with a reason.
  const gone = failures.get("410")!.get(1)!;
  expect(gone.state, "410: state").toBe("stop");
  expect(gone.next, "410: no next attempt").toBeNull();
  expect(gone.active, "410: deactivated").toBe(false);
  expect(gone.disabledReason).toMatch(/410 Gone/);
  expect(world.receiver.attempts.filter((a) => a.webhookId === idOf("410")), "410: never retried").toHaveLength(1);

  // The same through the API (GetWebhook), as integrators see it.
  const get = async (k: Kind) => (await world.call("/v1/shop.Webhook/GetWebhook", { id: idOf(k) })).body;
  for (const k of RETRYING) {
    const w = await get(k);
    expect(w.states.state, `${k}: API state`).toBe("retry");
    expect(w.states.last_error.error, `${k}: API last_error`).toMatch(ERRORS[k]);
    expect(w.states.last_error.retried, `${k}: API last_error.retried`).toBeGreaterThanOrEqual(FAILURES);
    expect(w.states.next_attempt_at, `${k}: API next_attempt_at`).toBeTruthy();
    expect(w.health.status, `${k}: API health`).toBe("error");
  }
  const w410 = await get("410");
  expect(w410.active).toBe(false);
  expect(w410.states.state).toBe("stop");
  expect(w410.disabled_reason).toMatch(/410 Gone/);
  const healthyMeanwhile = world.webhooks.slice(KINDS.length).map((w) => world.receiver.delivered(w.id).length);
  expect(healthyMeanwhile.every((n) => n > 0), `healthy webhooks delivered while the others failed: ${JSON.stringify(healthyMeanwhile)}`).toBe(true);

  // Recovery: every receiver answers, the refused port opens, the TLS webhook moves to a valid
  // URL, the 410 one is re-enabled (SetActive resumes from its pending batch).
  recovered = true;
  const recoveredAt = Date.now();
  await world.receiver.listen({ port: refusedPort });
  expect((await world.call("/v1/shop.Webhook/UpdateWebhook", { id: idOf("tls"), url: world.receiver.url })).status).toBe(200);
  expect((await world.call("/v1/shop.Webhook/SetActive", { id: idOf("410"), active: true })).status).toBe(200);
  await until("every failing webhook to deliver after recovery", () => KINDS.every((k) => world.receiver.delivered(idOf(k)).some((a) => a.start >= recoveredAt)), { timeoutMs: 60_000, intervalMs: 100 });
  const recoveredIn = Object.fromEntries(KINDS.map((k) => [k, world.receiver.delivered(idOf(k)).find((a) => a.start >= recoveredAt)!.start - recoveredAt]));
  await world.deliveriesGo(1, "deliveries to every webhook after recovery");
  await world.stopWriters();
  const result = await world.verify();
  for (const k of KINDS) {
    const w = await get(k);
    expect(w.states.state, `${k}: state after recovery`).toBe("ok");
    expect(w.active, `${k}: active after recovery`).toBe(true);
  }
  console.log(
    `receivers: ${world.acknowledged} writes; ${FAILURES} failures each, delays ${JSON.stringify(Object.fromEntries(RETRYING.map((k) => [k, [...failures.get(k)!.values()].slice(0, FAILURES).map((f) => f.next! - f.sentAt)])))} ms; first delivery after recovery ${JSON.stringify(recoveredIn)} ms; ${result.changes} changes delivered in ${result.requests} requests (${result.attempts} attempts), ${result.resent} re-sent`,
  );
  await world.stop();
});
