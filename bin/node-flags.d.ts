/** V8 flags `shophook serve` runs with (see node-flags.js). */
export declare const SERVE_NODE_FLAGS: string[];
