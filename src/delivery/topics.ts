/**
 * Topics: what a webhook subscribes to, beyond eTop's `entities` (every change of an entity).
 * `order.created`, `order.updated`, `order.deleted`, `order.*` (Pancake's spelling), and Sapo's
 * `orders/create`, `orders/update`, `orders/delete` as aliases. Normalised to `entity:action`
 * (`order:create`, `order:*`), the form the delivery SQL matches on.
 */
import { ENTITY_NAMES, type EntityName } from "../entities/model.ts";

const ENTITY_ALIASES: Record<string, EntityName> = {
  orders: "order",
  products: "product",
  variants: "variant",
  customers: "customer",
  fulfillments: "fulfillment",
  inventory: "inventory_level",
  inventories: "inventory_level",
  inventory_levels: "inventory_level",
};
const ACTIONS: Record<string, "create" | "update" | "delete" | "*"> = {
  created: "create",
  create: "create",
  updated: "update",
  update: "update",
  deleted: "delete",
  delete: "delete",
  "*": "*",
};

/** `entity:action` for a topic, or an error message. */
export function parseTopic(topic: string): { sub: string } | { error: string } {
  const m = /^([a-z_]+)(?:\.|\/)([a-z*]+)$/.exec(topic.trim().toLowerCase());
  if (!m) return { error: `not a topic: "${topic.slice(0, 60)}" (use entity.action, e.g. order.created, product.*, or orders/create)` };
  const entity = (ENTITY_NAMES as readonly string[]).includes(m[1]!) ? (m[1] as EntityName) : ENTITY_ALIASES[m[1]!];
  if (!entity) return { error: `unknown entity in topic "${topic.slice(0, 60)}"; one of ${ENTITY_NAMES.join(", ")}` };
  const action = ACTIONS[m[2]!];
  if (!action) return { error: `unknown action in topic "${topic.slice(0, 60)}"; one of created, updated, deleted, *` };
  return { sub: `${entity}:${action}` };
}

/** The subscriptions of entities (every action) and topics, without duplicates. */
export function subscriptions(entities: string[], topicSubs: string[]): string[] {
  return [...new Set([...entities.map((e) => `${e}:*`), ...topicSubs])];
}

/** The entity.action name of a change, as history records and the event header carry it. */
export function eventName(entity: string, changeType: string): string {
  return `${entity}.${changeType}d`; // create -> created, update -> updated, delete -> deleted
}

/**
 * Whether subscriptions take an `entity:change_type` event: the subscription half of the rule in
 * db/sql/matching.ts, in memory, for wake-ups (a hint: the `fields` half is left to the turn).
 */
export function subscribes(subs: readonly string[], event: string): boolean {
  return subs.includes(event) || subs.includes(`${event.slice(0, event.indexOf(":"))}:*`);
}
