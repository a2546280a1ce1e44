/** The figures a soak prints at the end (docs/soak.md records a full run's). */
import { calls } from "./api.ts";
import type { Soak } from "./run.ts";

/** "a 3, b 1": how often each value occurs, most frequent first. */
function count(xs: string[]): string {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ");
}

export function figures(soak: Soak): string {
  const hooks = [...soak.hooksById.values()];
  const requests = hooks.reduce((a, h) => a + h.rec.requests, 0);
  const delivered = hooks.reduce((a, h) => a + h.rec.first.length, 0);
  const dup = hooks.reduce((a, h) => a + h.rec.duplicates, 0);
  const stops = hooks.flatMap((h) => h.stops);
  const outages = hooks.flatMap((h) => h.endpoint.outages);
  const refused = soak.shops.reduce((a, s) => a + s.model.refused, 0);
  const rpcs = new Map<string, number>();
  for (const s of soak.shops) for (const [k, v] of s.model.counts) rpcs.set(k, (rpcs.get(k) ?? 0) + v);
  const lines = [
    `${soak.p.name} soak: ${soak.p.days} simulated days, ${soak.shops.length} shops (${["busy", "regular", "quiet", "silent", "catalog"].map((x) => `${soak.shops.filter((s) => s.plan.profile === x).length} ${x}`).join(", ")}), seed ${soak.p.seed}, tick ${soak.p.tickMinutes} min`,
    `retention ${soak.p.retentionHours} h, webhook backlog ${soak.p.backlogHours} h, retry window ${soak.p.retryWindowHours} h`,
    `writes: ${soak.writes} (${refused} refused by the API: the model's misses), busiest shop ${Math.max(...soak.shops.map((s) => s.writes))}, quietest ${Math.min(...soak.shops.map((s) => s.writes))}; RPCs ${calls.connect} Connect JSON + ${calls.grpc} gRPC`,
    `write RPCs: ${[...rpcs].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `webhooks: ${hooks.length} (${soak.lateWebhooks} created late from a cursor); receiver outages: ${["minutes", "hours", "long"].map((k) => `${outages.filter((o) => o.kind === k).length} ${k}`).join(", ")}; ${hooks.filter((h) => h.endpoint.flaky).length} flaky receivers`,
    `subscriptions: ${count(hooks.map((h) => h.plan.template))}`,
    `operations: ${soak.secretRotations} secret rotations (${hooks.filter((h) => h.rec.rotations.some((r) => r.graceEnd > r.at)).length} with a grace period), ${soak.keyRotations} API key rotations, ${soak.pauses} pauses, ${soak.updates} UpdateWebhook (${count(soak.updateKinds)}), ${hooks.reduce((a, h) => a + h.recoveries, 0)} recoveries (${count(stops.map((x) => x.recovery ?? "pending"))})`,
    `deliveries: ${requests} requests (${hooks.reduce((a, h) => a + h.rec.attempts.filter((x) => !x.ok).length, 0)} failed, ${hooks.reduce((a, h) => a + h.rec.attempts.filter((x) => x.status === "hang").length, 0)} of them unanswered until the timeout), ${delivered} changes delivered, ${dup} received again (at least once)`,
    `stops: ${stops.length} (${stops.filter((x) => x.legit).length} after the retry window, ${stops.filter((x) => x.pruned).length} for pruned changes, ${stops.filter((x) => !x.legit && !x.pruned).length} other)`,
    `pollers: ${soak.shops.reduce((a, s) => a + s.changes.polls, 0)} GetChanges polls, ${soak.shops.reduce((a, s) => a + s.lists.polls, 0)} List* polls, ${soak.shops.reduce((a, s) => a + s.lists.resyncs, 0)} List* resyncs after an expired cursor, ${soak.shops.reduce((a, s) => a + s.lists.broken.size, 0)} List* syncs refused from the start`,
  ];
  const peak = soak.days.reduce((m, d) => (d.changesInLog > m.changesInLog ? d : m), soak.days[0]!);
  const kept = soak.days.reduce((m, d) => (d.keptPastRetention > m.keptPastRetention ? d : m), soak.days[0]!);
  const reads = soak.days.map((d) => d.sweep.rows);
  // A run that failed before its first simulated midnight has no daily figures.
  if (soak.days.length) lines.push(
    `change log after each daily prune: at most ${peak.changesInLog} rows (day ${peak.day}); changes older than the retention kept at most ${kept.keptPastRetention}${kept.keptPastRetention ? ` (day ${kept.day})` : ""}; oldest change at most ${Math.max(...soak.days.map((d) => d.oldestHours))} h old`,
    `idle sweep pass, daily: ${Math.min(...reads)}-${Math.max(...reads)} rows read (first day ${reads[0]}, last day ${reads.at(-1)}), ${Math.max(...soak.days.map((d) => d.sweep.ms))} ms at most; JIT-compiled on ${soak.days.filter((d) => d.sweep.jitMs > 0).length} of ${soak.days.length} days`,
  );
  lines.push(`wall time by phase: ${[...soak.phases].map(([k, v]) => `${k} ${Math.round(v / 1000)} s`).join(", ")}`);
  if (soak.burst) {
    const { before: b, after: a } = soak.burst;
    lines.push(`burst: ${soak.burst.writes} product updates in ${soak.burst.shops} shops without product webhooks: idle sweep pass ${b.rows} -> ${a.rows} rows (changes ${b.changesRows} -> ${a.changesRows}), buffers ${b.buffers} -> ${a.buffers}, ${b.ms} -> ${a.ms} ms`);
  }
  lines.push("", "| day | writes | changes in log | kept past retention | oldest (h) | pruned | idle sweep: rows (changes) | buffers | ms (JIT) | plan cost | requests | stops | wall (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  const every = Math.max(1, Math.round(soak.days.length / 30));
  for (const d of soak.days.filter((x, i) => i % every === 0 || i === soak.days.length - 1)) {
    lines.push(`| ${d.day} | ${d.writes} | ${d.changesInLog} | ${d.keptPastRetention} | ${d.oldestHours} | ${d.pruned} | ${d.sweep.rows} (${d.sweep.changesRows}) | ${d.sweep.buffers} | ${d.sweep.ms} (${d.sweep.jitMs}) | ${d.sweep.planCost} | ${d.deliveries} | ${d.stops} | ${d.wall} |`);
  }
  return lines.join("\n");
}
