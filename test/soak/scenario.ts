/**
 * The soak's plan, a pure function of the parameters and the seed: which shops there are and how
 * active they are (Zipf-skewed rates, a few busy shops, many quiet ones, some silent for weeks,
 * catalogue shops that write only products for a long time), their webhooks (whole entities,
 * sparse entities, topics, `fields` filters, thin format), when receivers are down (minutes,
 * hours, longer than the retry window), and when shops operate (secret and key rotations,
 * pauses, subscription changes, webhooks created late from a polling cursor).
 */
import type { Protocol } from "./api.ts";
import type { SoakParams } from "./params.ts";
import { Rng, zipf } from "./random.ts";
import type { OutageMode, Outage } from "./receivers.ts";
import { KINDS, type Kind, MIXES } from "./shop-model.ts";

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

export type Profile = "busy" | "regular" | "quiet" | "silent" | "catalog";

export interface Settings {
  entities: Kind[];
  topics: string[];
  fields: string[];
  format: "json" | "thin";
}

/** Topics as the docs spell them, and the entity:action each selects (docs/webhook-operations.md). */
export const TOPICS: Record<string, string> = {
  "order.created": "order:create",
  "order.updated": "order:update",
  "order.*": "order:*",
  "fulfillment.*": "fulfillment:*",
  "fulfillment.created": "fulfillment:create",
  "orders/create": "order:create",
  "customers/update": "customer:update",
  "product.deleted": "product:delete",
};

const s = (entities: Kind[], extra: Partial<Settings> = {}): Settings => ({ entities, topics: [], fields: [], format: "json", ...extra });

export const TEMPLATES = {
  mirror: s([...KINDS]),
  sales: s(["order", "fulfillment"]),
  customers: s(["customer"]),
  fulfillments: s(["fulfillment"]),
  newOrders: s([], { topics: ["order.created", "fulfillment.*"] }),
  sapo: s([], { topics: ["orders/create", "customers/update", "product.deleted"] }),
  orderStatus: s(["order"], { fields: ["status", "confirm_status"] }),
  pricing: s(["product", "variant"], { fields: ["name", "retail_price"] }),
  stock: s(["inventory_level"], { fields: ["available_quantity"] }),
  catalogThin: s(["product", "variant", "inventory_level"], { format: "thin" }),
  orders: s(["order"]),
} satisfies Record<string, Settings>;
export type Template = keyof typeof TEMPLATES;

/** The subscriptions of settings, as entity:action. */
export function subscriptionsOf(x: Settings): Set<string> {
  return new Set([...x.entities.map((e) => `${e}:*`), ...x.topics.map((t) => TOPICS[t]!)]);
}

export interface UpdatePlan {
  at: number;
  what: "widen" | "topics" | "fields" | "unfields" | "url";
  settings: Settings;
}

export interface WebhookPlan {
  name: string;
  template: Template;
  settings: Settings;
  /** 0: before any write; otherwise created then, with `after` = the shop's GetChanges cursor. */
  createAt: number;
  outages: Outage[];
  flaky: number;
  rotations: Array<{ at: number; graceSeconds: number; switchAt: number }>;
  pauses: Array<{ at: number; until: number }>;
  update?: UpdatePlan;
}

export interface ShopPlan {
  i: number;
  profile: Profile;
  /** Write RPCs per day while active. */
  rate: number;
  silent: Array<[number, number]>;
  /** Catalogue shops: when orders start coming in (never: undefined). */
  ordersFrom?: number;
  protocol: Protocol;
  pollChangesEvery: number;
  pollListsEvery: number;
  /** The List* poller's page size (clients choose their own). */
  listPage: number;
  keyRotationAt?: number;
  webhooks: WebhookPlan[];
}

export interface Plan {
  shops: ShopPlan[];
  /** Simulated ms of the run (days x 24 h). */
  length: number;
}

/** Share of the day's writes per hour (a shop's day: quiet at night). */
export const HOURLY = [0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1, 1.2, 1.3, 1.3, 1.2, 1.1, 1.2, 1.3, 1.3, 1.2, 1.1, 1.1, 1.2, 1.2, 1, 0.7, 0.4];

export function mixOf(shop: ShopPlan, t: number): Partial<Record<Kind, number>> {
  if (shop.profile !== "catalog") return MIXES.full;
  return shop.ordersFrom !== undefined && t >= shop.ordersFrom ? MIXES.catalogSelling : MIXES.catalog;
}

export function isSilent(shop: ShopPlan, t: number): boolean {
  return shop.silent.some(([a, b]) => a <= t && t < b);
}

export function makePlan(p: SoakParams): Plan {
  const rng = new Rng(p.seed);
  const length = p.days * DAY;
  const n = p.shops;
  const retention = p.retentionHours * HOUR;
  // Profiles, then Zipf ranks: catalogue shops sit in the middle ranks (steady, not the busiest).
  const catalog = Math.max(3, Math.round(n * 0.12));
  const silent = Math.max(2, Math.round(n * 0.12));
  const profiles: Profile[] = [];
  for (let i = 0; i < n; i++) profiles.push(i < catalog ? "catalog" : i < catalog + silent ? "silent" : "quiet");
  rng.shuffle(profiles);
  const weights = zipf(n, 1.1);
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  // The busiest ranks are busy/regular shops (not catalogue or silent ones).
  const byRank = [...order.filter((i) => profiles[i] !== "catalog" && profiles[i] !== "silent"), ...order.filter((i) => profiles[i] === "catalog" || profiles[i] === "silent")];
  const busy = Math.max(2, Math.round(n * 0.03));
  const regular = Math.max(3, Math.round(n * 0.2));
  const rank = new Map<number, number>();
  byRank.forEach((shop, r) => rank.set(shop, r));
  for (let r = 0; r < n; r++) {
    const i = byRank[r]!;
    if (profiles[i] === "quiet") profiles[i] = r < busy ? "busy" : r < busy + regular ? "regular" : "quiet";
  }
  // Catalogue shops take middle ranks' rates, so their product writes are steady.
  const middle = weights[Math.min(n - 1, busy + regular)]!;

  const shops: ShopPlan[] = [];
  let hookNo = 0;
  let catalogSeen = 0;
  for (let i = 0; i < n; i++) {
    const r = rng.fork(i + 1);
    const profile = profiles[i]!;
    const w = profile === "catalog" ? Math.max(middle, weights[rank.get(i)!]!) : weights[rank.get(i)!]!;
    const shop: ShopPlan = {
      i,
      profile,
      rate: Math.max(0.5, p.writesPerDay * w),
      silent: [],
      protocol: i % 3 === 0 ? "grpc" : "connect",
      pollChangesEvery: Math.round(r.between(0.25, 0.8) * retention),
      // Some List* pollers poll less often than the retention: their cursors may expire.
      pollListsEvery: 0,
      listPage: 0,
      webhooks: [],
    };
    // Some List* pollers poll less often than the retention (their cursors may expire, and they
    // resync from the start), with small pages: the busy shops' (a weekly export), and a fifth of the rest.
    const rare = profile === "busy" || r.chance(0.2);
    shop.pollListsEvery = Math.round((rare ? r.between(1.1, 1.6) : r.between(0.3, 0.9)) * retention);
    shop.listPage = rare ? 50 : r.pick([100, 100, 500]);
    if (profile === "silent") {
      // Silent for weeks (scaled to the run): 15-30% of it, once or twice.
      for (let k = 0; k < r.int(1, 2); k++) {
        const len = r.between(0.15, 0.3) * length;
        const start = r.between(DAY, length - len - 2 * DAY);
        shop.silent.push([start, start + len]);
      }
    }
    if (profile === "catalog") {
      // Orders come after the backlog window (the idle order webhook meets pruned changes), in the
      // middle of the run, or never (the webhook stays idle throughout).
      const c = catalogSeen++ % 3;
      if (c === 0) shop.ordersFrom = Math.min(length - 3 * DAY, p.backlogHours * HOUR + r.between(1, 3) * DAY);
      else if (c === 1) shop.ordersFrom = r.between(0.3, 0.6) * length;
    }
    if (r.chance(0.1) || i < 2) shop.keyRotationAt = r.between(DAY, length - 2 * DAY);

    const templates: Template[] =
      profile === "busy"
        ? r.shuffle<Template>(["mirror", "sales", "newOrders", "orderStatus", "stock", "sapo", "catalogThin"]).slice(0, r.int(3, 4))
        : profile === "regular"
          ? r.shuffle<Template>(["mirror", "sales", "customers", "newOrders", "pricing", "stock", "orderStatus"]).slice(0, 2)
          : profile === "quiet"
            ? r.chance(0.75)
              ? [r.pick<Template>(["mirror", "sales", "fulfillments", "customers", "sapo"])]
              : []
            : profile === "silent"
              ? [r.pick<Template>(["mirror", "sales"])]
              : // Catalogue shops: the sparse `order` subscription; some also follow their catalogue.
                catalogSeen % 2 === 0
                ? ["orders", catalogSeen % 4 === 0 ? "catalogThin" : "pricing"]
                : ["orders"];
    for (const template of templates) {
      shop.webhooks.push({ name: `w${hookNo++}`, template, settings: structuredClone(TEMPLATES[template]), createAt: 0, outages: [], flaky: 0, rotations: [], pauses: [] });
    }
    if ((profile === "regular" || profile === "quiet") && (r.chance(0.08) || !shops.some((x) => x.webhooks.some((w) => w.createAt > 0)))) {
      // Created later, handing over from polling with the GetChanges cursor.
      const template = r.pick<Template>(["sales", "customers", "mirror"]);
      shop.webhooks.push({ name: `w${hookNo++}`, template, settings: structuredClone(TEMPLATES[template]), createAt: r.between(2 * DAY, length / 2), outages: [], flaky: 0, rotations: [], pauses: [] });
    }
    shops.push(shop);
  }

  // Receivers down for longer than the retry window: on webhooks of the busiest shops that get
  // many changes (they fail for the whole window and must stop), one per shop.
  const candidates = byRank.map((i) => shops[i]!).filter((x) => x.profile === "busy" || x.profile === "regular").flatMap((x) => x.webhooks.filter((w) => w.createAt === 0 && (w.template === "mirror" || w.template === "sales")).slice(0, 1));
  const long = new Set<WebhookPlan>(candidates.slice(0, p.longOutages));
  let k = 0;
  for (const w of long) {
    const r = rng.fork(10_000 + k++);
    const len = (p.retryWindowHours + r.between(8, 24)) * HOUR;
    const start = r.between(DAY, length - len - 2.5 * DAY);
    w.outages.push({ start, end: start + len, mode: r.pick<OutageMode>(["503", "503", "reset"]), kind: "long" });
  }

  // Everything else, per webhook: short outages, random failures, rotations, pauses, changes.
  for (const shop of shops) {
    for (const w of shop.webhooks) {
      const r = rng.fork(20_000 + Number(w.name.slice(1)));
      const from = Math.max(w.createAt, HOUR);
      const until = length - DAY;
      const add = (lenLo: number, lenHi: number, kind: Outage["kind"]) => {
        const len = r.between(lenLo, lenHi);
        const start = r.between(from, until - len);
        const o: Outage = { start, end: start + len, mode: r.pick<OutageMode>(["503", "503", "503", "503", "reset", "reset", "hang"]), kind };
        if (!w.outages.some((x) => x.start < o.end + HOUR && o.start < x.end + HOUR)) w.outages.push(o);
      };
      if (r.chance(0.35)) for (let j = r.int(1, 3); j > 0; j--) add(10 * 60_000, 50 * 60_000, "minutes");
      if (r.chance(0.2)) for (let j = r.int(1, 2); j > 0; j--) add(2 * HOUR, 30 * HOUR, "hours");
      w.outages.sort((a, b) => a.start - b.start);
      if (r.chance(0.08)) w.flaky = 0.05;
      if (long.has(w)) continue;
      if (r.chance(0.12) || w.name === "w0") {
        const at = r.between(from + HOUR, until - DAY);
        const graceSeconds = r.chance(0.3) ? 0 : r.int(1, 24) * 3600;
        w.rotations.push({ at, graceSeconds, switchAt: at + graceSeconds * 1000 * r.between(0.2, 0.8) });
      }
      if (r.chance(0.1) || w.name === "w1") {
        const at = r.between(from + HOUR, until - DAY);
        w.pauses.push({ at, until: at + r.between(1, 20) * HOUR });
      }
      if (r.chance(0.1) || w.name === "w2") w.update = planUpdate(w, r, r.between(from + HOUR, until - DAY));
    }
  }
  return { shops, length };
}

function planUpdate(w: WebhookPlan, r: Rng, at: number): UpdatePlan {
  const x = structuredClone(w.settings);
  if (w.settings.topics.length) {
    x.topics = r.pick([["order.updated", "fulfillment.created"], ["order.*"]]);
    return { at, what: "topics", settings: x };
  }
  if (w.settings.fields.length) {
    x.fields = [];
    return { at, what: "unfields", settings: x };
  }
  if (w.settings.format === "json" && x.entities.includes("order") && r.chance(0.5)) {
    x.fields = ["status"];
    return { at, what: "fields", settings: x };
  }
  const missing = KINDS.filter((k) => !x.entities.includes(k));
  if (missing.length && r.chance(0.7)) {
    x.entities = [...x.entities, r.pick(missing)];
    return { at, what: "widen", settings: x };
  }
  return { at, what: "url", settings: x };
}
