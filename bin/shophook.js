#!/usr/bin/env node
// Entry of the `shophook` command. shophook runs on Node 24; when the node on PATH is older
// (these machines ship Node 20), it re-runs itself on the Node 24 the project installs
// (the `node` devDependency), forwarding signals so `shophook serve` still stops gracefully.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { SERVE_NODE_FLAGS } from "./node-flags.js";

const entry = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const args = process.argv.slice(2);
const onNode24 = Number(process.versions.node.split(".")[0]) >= 24;
// `serve` needs its V8 flags, which only a fresh process can take.
const flags = args[0] === "serve" ? SERVE_NODE_FLAGS.filter((f) => !process.execArgv.includes(f)) : [];

if (onNode24 && !flags.length) {
  const { run } = await import(entry);
  await run(args);
} else {
  const node24 = onNode24 ? process.execPath : fileURLToPath(new URL("../node_modules/node/bin/node", import.meta.url));
  if (!existsSync(node24)) {
    process.stderr.write(`shophook needs Node 24 (this is ${process.version}); run npm install in ${fileURLToPath(new URL("..", import.meta.url))}\n`);
    process.exit(1);
  }
  const child = spawn(node24, [...process.execArgv, ...flags, entry, ...args], { stdio: "inherit" });
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}
