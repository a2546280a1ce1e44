/**
 * Integrators that poll: per shop, one follows GetChanges (every change, in log order) and one
 * follows every List* sorted by updated_at, each keeping a copy. GetChanges pollers poll within
 * the retention window, so their cursors never expire (docs/change-feed.md); some List* pollers
 * poll less often than that and must resync from the start when their cursor expired.
 * The GetChanges poller's log is also the soak's record of every change of the shop: the
 * receivers' deliveries are checked against it.
 */
import type { DescService } from "@bufbuild/protobuf";
import { Customer } from "../../gen/shop/customer_pb.ts";
import { Fulfillment } from "../../gen/shop/fulfillment_pb.ts";
import { History } from "../../gen/shop/change_pb.ts";
import { Inventory } from "../../gen/shop/inventory_pb.ts";
import { Order } from "../../gen/shop/order_pb.ts";
import { Product } from "../../gen/shop/product_pb.ts";
import { Variant } from "../../gen/shop/variant_pb.ts";
import { RpcError, type Protocol, type ShopApi } from "./api.ts";
import type { Kind } from "./shop-model.ts";

/** A change as GetChanges returns it (changed: null for creates and deletes). */
export interface Change {
  id: string;
  time: string;
  change_type: "create" | "update" | "delete";
  entity: Kind;
  entity_id: string;
  latest: Record<string, any>;
  changed: Record<string, Record<string, unknown>> | null;
}

const PAGE = 1000;

export class ChangesPoller {
  cursor = "";
  readonly log: Change[] = [];
  /** Change id -> index in the log. */
  readonly index = new Map<string, number>();
  /** entity:entity_id -> latest, applying the log in order. */
  readonly copy = new Map<string, any>();
  readonly problems: string[] = [];
  polls = 0;
  lastPoll = 0;
  private readonly api: ShopApi;
  private readonly protocol: Protocol;

  constructor(api: ShopApi, protocol: Protocol) {
    this.api = api;
    this.protocol = protocol;
  }

  /** Reads every change after the cursor (the feed must be settled: see run.ts `settle`). */
  async poll(now: number): Promise<void> {
    this.polls++;
    this.lastPoll = now;
    for (;;) {
      let res: any;
      try {
        res = await this.api.call(History, "GetChanges", { paging: { after: this.cursor, limit: PAGE } }, this.protocol);
      } catch (err) {
        if (err instanceof RpcError && err.code === "failed_precondition") {
          // Never expected: this poller polls within the retention window.
          this.problems.push(`GetChanges cursor refused at ${new Date(now).toISOString()}: ${err.message}`);
          throw err;
        }
        throw err;
      }
      for (const c of res.changes as Change[]) {
        if (this.index.has(c.id)) {
          if (this.problems.length < 20) this.problems.push(`change ${c.id} served twice`);
          continue;
        }
        const change: Change = { ...c, changed: c.changed ?? null };
        this.index.set(c.id, this.log.length);
        this.log.push(change);
        this.copy.set(`${c.entity}:${c.entity_id}`, c.latest[c.entity]);
      }
      this.cursor = res.paging.next;
      if (res.changes.length < PAGE) return;
    }
  }
}

export const LISTS: Record<Kind, { service: DescService; method: string; items: string; key: string }> = {
  product: { service: Product, method: "ListProducts", items: "products", key: "id" },
  variant: { service: Variant, method: "ListVariants", items: "shop_variants", key: "id" },
  customer: { service: Customer, method: "ListCustomers", items: "customers", key: "id" },
  order: { service: Order, method: "ListOrders", items: "orders", key: "id" },
  fulfillment: { service: Fulfillment, method: "ListFulfillments", items: "fulfillments", key: "id" },
  inventory_level: { service: Inventory, method: "ListInventoryLevels", items: "inventory_levels", key: "variant_id" },
};

export class ListPoller {
  readonly cursors = new Map<Kind, string>();
  readonly copies = new Map<Kind, Map<string, any>>();
  /** Cursors found expired (the poller resynced from the start). */
  resyncs = 0;
  /** Lists this poller could not sync at all, and why (see pollList). */
  readonly broken = new Map<Kind, string>();
  polls = 0;
  lastPoll = 0;
  private readonly api: ShopApi;
  private readonly protocol: Protocol;
  private readonly pageSize: number;

  constructor(api: ShopApi, protocol: Protocol, pageSize: number) {
    this.api = api;
    this.protocol = protocol;
    this.pageSize = pageSize;
    for (const k of Object.keys(LISTS) as Kind[]) this.copies.set(k, new Map());
  }

  async poll(now: number): Promise<void> {
    this.polls++;
    this.lastPoll = now;
    for (const kind of Object.keys(LISTS) as Kind[]) if (!this.broken.has(kind)) await this.pollList(kind);
  }

  private async pollList(kind: Kind): Promise<void> {
    const { service, method, items, key } = LISTS[kind];
    const copy = this.copies.get(kind)!;
    // A sync from the start (no cursor), now or after an expired cursor: its own cursors follow rows it has read.
    let fresh = !this.cursors.has(kind);
    let page = 0;
    for (;;) {
      page++;
      const cursor = this.cursors.get(kind);
      let res: any;
      try {
        res = await this.api.call(service, method, { paging: cursor ? { after: cursor, limit: this.pageSize } : { sort: "updated_at", limit: this.pageSize } }, this.protocol);
      } catch (err) {
        if (err instanceof RpcError && err.code === "failed_precondition" && err.message.includes("cursor expired")) {
          if (fresh) {
            // Resyncing again would meet the same refusal: the sync can never complete.
            this.broken.set(kind, `a sync from the start (no cursor) was refused on its page ${page} (${this.pageSize} rows a page, ${copy.size} rows read): "${err.message}"`);
            return;
          }
          // Documented: rows behind the cursor were pruned; resync from the start.
          fresh = true;
          page = 0;
          this.resyncs++;
          this.cursors.delete(kind);
          copy.clear();
          continue;
        }
        throw err;
      }
      for (const item of res[items] as any[]) {
        // A product's variants are read at request time; variant writes do not move the product.
        if (kind === "product") delete item.variants;
        copy.set(String(item[key]), item);
      }
      this.cursors.set(kind, res.paging.next);
      if (res[items].length < this.pageSize) return;
    }
  }
}
