/** shop.Misc: the account a key belongs to, and the server version. */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { ApiKeyInfoSchema, ShopSchema } from "../../gen/shop/common_pb.ts";
import { CurrentAccountResponseSchema, type Misc, VersionInfoResponseSchema } from "../../gen/shop/misc_pb.ts";
import { version } from "../version.ts";
import { principal } from "./auth.ts";
import { ts } from "./convert.ts";

export function miscService(): Partial<ServiceImpl<typeof Misc>> {
  return {
    currentAccount(_req, ctx) {
      const p = principal(ctx);
      return create(CurrentAccountResponseSchema, {
        shop: create(ShopSchema, { id: p.shopId, name: p.shopName, createdAt: ts(p.shopCreatedAt) }),
        apiKey: create(ApiKeyInfoSchema, { id: p.keyId, prefix: p.keyPrefix, name: p.keyName, createdAt: ts(p.keyCreatedAt) }),
      });
    },
    versionInfo() {
      return create(VersionInfoResponseSchema, { service: "shophook", version });
    },
  };
}
