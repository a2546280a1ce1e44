/**
 * The virtual-time soak's short run inside `npm test` (the full one: `npm run soak`,
 * docs/soak.md): 20 simulated days of 30 shops with skewed activity, every entity kind, webhooks
 * on whole, sparse and filtered subscriptions, receivers down for minutes, hours and past the
 * retry window, daily prunes, secret and key rotations, pauses, subscription changes and
 * recoveries; then every poller's and receiver's copy against the database, every webhook's
 * deliveries against the change log, stops, the change log's size and the sweep's cost.
 * SOAK_DAYS, SOAK_SHOPS, SOAK_SEED... change it (test/soak/params.ts).
 */
import { defineSoak } from "./soak/run.ts";

defineSoak("short");
