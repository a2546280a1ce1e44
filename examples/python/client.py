#!/usr/bin/python3
"""A shophook client in Python, over gRPC (cleartext HTTP/2), with stubs generated from proto/.

It creates a product, subscribes a webhook to product changes, lists the webhooks, then syncs:
ListProducts sorted by updated_at and GetChanges, each paged through until an empty page.
Every step prints one JSON object on stdout. On an RPC error it prints the gRPC status code and
message on stderr and exits 1.

    ./generate.sh
    /usr/bin/python3 client.py --server 127.0.0.1:8080 --key shk_... --webhook-url http://127.0.0.1:9000/hook
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))

import grpc  # noqa: E402  (Debian: python3-grpcio)

try:
    from shop import (  # noqa: E402
        change_pb2,
        common_pb2,
        product_pb2,
        product_pb2_grpc,
        webhook_pb2,
        webhook_pb2_grpc,
    )
except ImportError as e:
    sys.exit(f"client.py: generated stubs missing ({e}); run {os.path.join(HERE, 'generate.sh')} first")


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def ts(t):
    """A google.protobuf.Timestamp as RFC 3339, as the JSON API shows it."""
    return t.ToJsonString() if t.seconds or t.nanos else None


def main():
    p = argparse.ArgumentParser(description="Call shophook over gRPC from Python.")
    p.add_argument("--server", default=os.environ.get("SHOPHOOK_ADDR", "127.0.0.1:8080"),
                   help="host:port of the server (env SHOPHOOK_ADDR; default %(default)s)")
    p.add_argument("--key", default=os.environ.get("SHOPHOOK_API_KEY"),
                   help="the shop's API key, shk_... (env SHOPHOOK_API_KEY)")
    p.add_argument("--webhook-url", default=os.environ.get("SHOPHOOK_WEBHOOK_URL", "http://127.0.0.1:9000/hook"),
                   help="URL to subscribe to product changes (env SHOPHOOK_WEBHOOK_URL; default %(default)s)")
    p.add_argument("--product-name", default="Python example product")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default %(default)s)")
    p.add_argument("--tls-ca", default=os.environ.get("SHOPHOOK_TLS_CA"),
                   help="PEM file of the CA to trust: connect over TLS (a server with SHOPHOOK_TLS_CERT; env SHOPHOOK_TLS_CA)")
    args = p.parse_args()
    if not args.key:
        p.error("an API key is required: --key or SHOPHOOK_API_KEY")

    auth = [("authorization", f"Bearer {args.key}")]
    step = "connect"
    try:
        if args.tls_ca:
            with open(args.tls_ca, "rb") as f:
                channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=f.read()))
        else:
            channel = grpc.insecure_channel(args.server)
        with channel:
            products = product_pb2_grpc.ProductStub(channel)
            webhooks = webhook_pb2_grpc.WebhookStub(channel)

            def call(rpc, request):
                return rpc(request, metadata=auth, timeout=args.timeout)

            step = "CreateProduct"
            product = call(products.CreateProduct, product_pb2.CreateProductRequest(name=args.product_name))
            emit(step, id=str(product.id), name=product.name, updated_at=ts(product.updated_at))

            step = "CreateWebhook"
            hook = call(webhooks.CreateWebhook,
                        webhook_pb2.CreateWebhookRequest(url=args.webhook_url, entities=["product"]))
            # The signing secret is shown only in this response: store it to verify deliveries.
            # Printed here by its prefix only.
            emit(step, id=str(hook.id), url=hook.url, entities=list(hook.entities),
                 state=hook.states.state, secret_prefix=hook.secret[:6])

            step = "GetWebhooks"
            listed = call(webhooks.GetWebhooks, webhook_pb2.GetWebhooksRequest())
            emit(step, webhooks=[{"id": str(w.id), "url": w.url, "active": w.active, "state": w.states.state}
                                 for w in listed.webhooks])

            # Full sync in updated_at order; keep the last cursor to poll for what changes next.
            step = "ListProducts"
            seen, pages = [], 0
            paging = common_pb2.Paging(sort="updated_at", limit=args.page_size)
            while True:
                page = call(products.ListProducts, product_pb2.ListProductsRequest(paging=paging))
                pages += 1
                if not page.products:
                    break
                seen += [{"id": str(x.id), "name": x.name, "updated_at": ts(x.updated_at), "deleted": x.deleted}
                         for x in page.products]
                paging = common_pb2.Paging(after=page.paging.next, limit=args.page_size)
            emit(step, pages=pages, products=seen, next=page.paging.next)

            # The change log, oldest first, until an empty page (its cursor is where to poll from next).
            step = "GetChanges"
            seen, pages, after = [], 0, ""
            while True:
                page = call(webhooks.GetChanges, change_pb2.GetChangesRequest(
                    paging=change_pb2.ChangesPaging(after=after, limit=args.page_size)))
                pages += 1
                after = page.paging.next
                if not page.changes:
                    break
                seen += [{"id": str(c.id), "change_type": c.change_type, "entity": c.entity,
                          "entity_id": str(c.entity_id), "time": ts(c.time)}
                         for c in page.changes]
            emit(step, pages=pages, changes=seen, next=after)
    except grpc.RpcError as e:
        print(f"{step} failed: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
