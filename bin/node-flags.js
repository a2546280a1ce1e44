// V8 flags `shophook serve` runs with (bin/shophook.js, test/support/process.ts).
// --max-semi-space-size=4: V8 otherwise grows the young generation to 3 x 32 MiB under the
// delivery path's allocation rate; at 4 MiB the service drains a 1M-change backlog at the same
// rate with ~140 MiB less RSS (docs/performance.md, bench/backlog.ts).
export const SERVE_NODE_FLAGS = ["--max-semi-space-size=4"];
