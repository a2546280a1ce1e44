/** Assembles every service onto a router. */
import type { ConnectRouter } from "@connectrpc/connect";
import { ApiKey } from "../../gen/shop/api_key_pb.ts";
import { Misc } from "../../gen/shop/misc_pb.ts";
import type { AppContext } from "../context.ts";
import { apiKeyService } from "./api-keys.ts";
import { miscService } from "./misc.ts";

export function routes(ctx: AppContext) {
  const services = { misc: miscService(), apiKey: apiKeyService(ctx) };
  return (router: ConnectRouter) => {
    router.service(Misc, services.misc);
    router.service(ApiKey, services.apiKey);
  };
}
