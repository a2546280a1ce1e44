/** shop.Customer. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { Customer } from "../../gen/shop/customer_pb.ts";
import type { AppContext } from "../context.ts";
import { customerEntity as C, type CustomerRow } from "../entities/customer.ts";
import { createOne, updateOne } from "../store/write.ts";
import { principal } from "./auth.ts";
import { invalidArgument } from "./errors.ts";
import { live, readLive, removed, removeOne } from "./entity-rpc.ts";
import { idsFilter, listPage, readerOf } from "./paging.ts";
import { STATUSES } from "./products.ts";
import { ifSet, oneOf, patchOf, requireId, text } from "./validate.ts";

const GENDERS = ["male", "female", "other"] as const;

function email(field: string, v: string) {
  const e = text(field, v, 320);
  if (e && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(e)) throw invalidArgument(field, `not an email address: "${e.slice(0, 80)}"`);
  return e;
}

function phone(field: string, v: string) {
  const p = text(field, v, 30);
  if (p && !/^\+?[0-9 ().-]{3,30}$/.test(p)) throw invalidArgument(field, `not a phone number: "${p}"`);
  return p;
}

function birthday(field: string, v: string) {
  const b = text(field, v, 10);
  if (!b) return b;
  const d = new Date(`${b}T00:00:00Z`);
  if (!/^\d{4}-\d\d-\d\d$/.test(b) || Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== b) throw invalidArgument(field, `must be a date YYYY-MM-DD, got "${b}"`);
  return b;
}

const gender = (field: string, v: string) => (v === "" ? "" : oneOf(field, v, GENDERS));

export function customerService(ctx: AppContext): ServiceImpl<typeof Customer> {
  return {
    async createCustomer(req, hc) {
      const shopId = principal(hc).shopId;
      const id = await ctx.ids.next();
      const data = {
        external_id: text("external_id", req.externalId, 100),
        code: text("code", req.code, 50) || `CUS${BigInt(id).toString(36).toUpperCase()}`,
        full_name: text("full_name", req.fullName, 200),
        phone: phone("phone", req.phone),
        email: email("email", req.email),
        gender: gender("gender", req.gender),
        birthday: birthday("birthday", req.birthday),
        note: text("note", req.note, 2000),
        status: oneOf("status", req.status, STATUSES, "active"),
      };
      return C.toMessage(await createOne(ctx, shopId, C, { id, ...data }));
    },

    async getCustomer(req, hc) {
      return C.toMessage(await readLive(ctx, C, principal(hc).shopId, requireId("id", req.id)));
    },

    async updateCustomer(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      const patch = patchOf<Partial<CustomerRow>>({
        external_id: ifSet(req.externalId, (v) => text("external_id", v, 100)),
        code: ifSet(req.code, (v) => text("code", v, 50, true)),
        full_name: ifSet(req.fullName, (v) => text("full_name", v, 200)),
        phone: ifSet(req.phone, (v) => phone("phone", v)),
        email: ifSet(req.email, (v) => email("email", v)),
        gender: ifSet(req.gender, (v) => gender("gender", v)),
        birthday: ifSet(req.birthday, (v) => birthday("birthday", v)),
        note: ifSet(req.note, (v) => text("note", v, 2000)),
        status: ifSet(req.status, (v) => oneOf("status", v, STATUSES)),
      });
      return C.toMessage(await updateOne(ctx, shopId, C, id, (old) => (live(old, C, id), patch)));
    },

    async deleteCustomer(req, hc) {
      const shopId = principal(hc).shopId;
      const id = requireId("id", req.id);
      return removed(await removeOne(ctx, shopId, C, id));
    },

    async listCustomers(req, hc) {
      const shopId = principal(hc).shopId;
      const { rows, paging } = await listPage(ctx, readerOf(ctx, hc), shopId, C, "customers", req.paging, req.includeDeleted, idsFilter("id", "filter.id", req.filter?.id ?? []));
      return { customers: rows.map(C.toMessage), paging };
    },
  };
}
