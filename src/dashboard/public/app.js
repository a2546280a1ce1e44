// The webhook dashboard: each webhook's state and health, its recent deliveries, a success-rate
// chart and actions, all from the shop's JSON API with the shop's API key (docs/dashboard.md).
// Preact + htm as ES modules, no build step; the import map in index.html resolves the imports.
import { html, render } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";

const KEY_STORAGE = "shophook.dashboard.apiKey";
const POLL_MS = 2000;
const DELIVERIES_SHOWN = 20;
const CHART_DAYS = 14;
const DAY_MS = 86_400_000;

// --- API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** POST /v1/shop.<service>/<method> with the key; resolves to the JSON body, rejects with ApiError. */
async function rpc(key, service, method, body = {}) {
  let res;
  try {
    res = await fetch(`/v1/shop.${service}/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError("unavailable", `cannot reach the server (${err.message})`, 0);
  }
  const text = await res.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  if (!res.ok) throw new ApiError(data?.code ?? `http ${res.status}`, data?.message ?? (text.slice(0, 200) || res.statusText), res.status);
  return data;
}

const webhookRpc = (key, method, body) => rpc(key, "Webhook", method, body);

/** Every webhook with its recent deliveries and stats; one failed detail call does not hide the rest. */
async function loadWebhooks(key) {
  const { webhooks } = await webhookRpc(key, "GetWebhooks");
  const from = new Date(Date.now() - (CHART_DAYS - 1) * DAY_MS);
  from.setUTCHours(0, 0, 0, 0);
  return Promise.all(
    webhooks.map(async (webhook) => {
      const [deliveries, stats] = await Promise.allSettled([
        webhookRpc(key, "ListDeliveries", { filter: { webhook_id: webhook.id }, paging: { limit: DELIVERIES_SHOWN } }),
        webhookRpc(key, "GetStats", { id: webhook.id, from: from.toISOString() }),
      ]);
      const failed = [deliveries, stats].find((r) => r.status === "rejected");
      if (failed?.reason?.status === 401) throw failed.reason;
      return {
        webhook,
        deliveries: deliveries.status === "fulfilled" ? deliveries.value.deliveries : null,
        stats: stats.status === "fulfilled" ? stats.value : null,
        error: failed ? describe(failed.reason) : "",
      };
    }),
  );
}

// --- Formatting --------------------------------------------------------------------------------

const describe = (err) => (err instanceof ApiError ? `${err.code}: ${err.message}` : String(err?.message ?? err));
const pct = (rate) => `${Math.round((rate ?? 1) * 1000) / 10}%`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function fmtTime(ts) {
  if (!ts) return "never";
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

const fmtDay = (day) => new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });

/** The event TestWebhook simulates: an update of the first entity, else the first topic. */
function testEvent(w) {
  if (w.entities.length) return `${w.entities[0]}.updated`;
  return (w.topics[0] ?? "").replace(/\*$/, "updated");
}

const STATE_HELP = {
  ok: "ok: deliveries succeed",
  retry: "retry: the last attempt failed; the batch will be sent again",
  stop: "stop: attempts failed for longer than the retry window; nothing more is sent",
};

// --- Components --------------------------------------------------------------------------------

function StateBadge({ state }) {
  return html`<span class="badge badge-${state}" data-testid="state" data-state=${state} title=${STATE_HELP[state] ?? state}>
    <span class="sr-only">state: </span>${state}
  </span>`;
}

function Health({ health }) {
  if (!health) return "unknown";
  return html`<span class="health health-${health.status}" data-testid="health">
    <span class="dot" aria-hidden="true"></span>${health.status}
  </span>
  <span class="muted"> · ${pct(health.success_rate)} success over 24 h</span>`;
}

/** 100% stacked bars per UTC day: green is the success rate, red the failed share; grey: no attempts. */
function Chart({ stats }) {
  if (!stats) return html`<p class="muted">Stats unavailable.</p>`;
  const byDay = new Map(stats.by_day.map((d) => [d.day, d]));
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const days = Array.from({ length: CHART_DAYS }, (_, i) => {
    const day = new Date(today - (CHART_DAYS - 1 - i) * DAY_MS).toISOString().slice(0, 10);
    return byDay.get(day) ?? { day, total: 0, success: 0, failed: 0 };
  });
  const W = 16, GAP = 4, H = 64;
  const label = days
    .filter((d) => d.total)
    .map((d) => `${d.day}: ${pct(d.success / d.total)} of ${d.total}`)
    .join("; ");
  return html`<figure class="chart" data-testid="chart">
    <svg viewBox="0 0 ${CHART_DAYS * (W + GAP) - GAP} ${H}" preserveAspectRatio="none" role="img"
      aria-label=${`Success rate per day, last ${CHART_DAYS} days. ${label || "No attempts."}`}>
      ${days.map((d, i) => {
        const x = i * (W + GAP);
        // data-* carry each day's figures, for tests and for anyone reading the DOM.
        const data = { "data-testid": "chart-day", "data-day": d.day, "data-total": d.total, "data-success": d.success };
        if (!d.total) return html`<rect key=${d.day} ...${data} x=${x} y=${H - 2} width=${W} height="2" class="bar-none"><title>${d.day}: no attempts</title></rect>`;
        const ok = Math.round((d.success / d.total) * H);
        return html`<g key=${d.day} ...${data}>
          <title>${`${d.day}: ${d.success} of ${d.total} succeeded (${pct(d.success / d.total)})`}</title>
          <rect x=${x} y="0" width=${W} height=${H - ok} class="bar-failed" />
          <rect x=${x} y=${H - ok} width=${W} height=${ok} class="bar-success" />
        </g>`;
      })}
    </svg>
    <figcaption>
      <div class="axis muted"><span>${fmtDay(days[0].day)}</span><span>today</span></div>
      <div>
        <span class="key key-success" aria-hidden="true"></span>succeeded <span class="key key-failed" aria-hidden="true"></span>failed
        <span class="muted"> · ${plural(stats.total, "attempt")}, ${pct(stats.success_rate)} success, p50 ${stats.p50_duration_ms} ms, p95 ${stats.p95_duration_ms} ms</span>
      </div>
    </figcaption>
  </figure>`;
}

function HeaderList({ headers }) {
  const entries = Object.entries(headers ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return html`<p class="muted">none</p>`;
  return html`<dl class="headers">
    ${entries.map(([k, v]) => html`<div key=${k}><dt>${k}</dt><dd>${v}</dd></div>`)}
  </dl>`;
}

function DeliveryItem({ d }) {
  return html`<li class="delivery delivery-${d.status}" data-testid="delivery" data-delivery-id=${d.id} data-status=${d.status}>
    <details>
      <summary>
        <span class="code" data-testid="delivery-status" title=${d.status}>${d.response_status || "ERR"}</span>
        <span class="sr-only">${d.status}</span>
        <time datetime=${d.created_at}>${fmtTime(d.created_at)}</time>
        <span class="events">${d.events.join(", ") || "no events"}</span>
        <span class="muted">${plural(d.change_count, "change")} · ${d.duration_ms} ms · attempt ${d.attempt}</span>
        ${d.test && html`<span class="tag">test</span>`}
      </summary>
      <div class="detail" data-testid="delivery-detail">
        ${d.error && html`<p class="error-text">${d.error}</p>`}
        <dl class="facts small">
          <div><dt>Callback id</dt><dd>${d.callback_id}</dd></div>
          <div><dt>URL</dt><dd>${d.url}</dd></div>
          <div><dt>Body</dt><dd>${d.body_size} bytes</dd></div>
        </dl>
        <h4>Request headers</h4>
        <${HeaderList} headers=${d.request_headers} />
        <h4>Response headers</h4>
        <${HeaderList} headers=${d.response_headers} />
        <h4>Response body (first KiB)</h4>
        <pre>${d.response_body || "(empty)"}</pre>
      </div>
    </details>
  </li>`;
}

function Deliveries({ deliveries }) {
  if (!deliveries) return html`<p class="muted">Deliveries unavailable.</p>`;
  if (!deliveries.length) return html`<p class="muted">No deliveries yet.</p>`;
  return html`<ol class="deliveries" data-testid="deliveries">
    ${deliveries.map((d) => html`<${DeliveryItem} key=${d.id} d=${d} />`)}
  </ol>`;
}

function WebhookCard({ item, apiKey, refresh }) {
  const { webhook: w, deliveries, stats, error } = item;
  const [busy, setBusy] = useState("");
  const [result, setResult] = useState(null);
  const state = w.states?.state || "ok";
  const lastError = w.states?.last_error;
  const failed = deliveries?.find((d) => d.status === "failed" && !d.test);
  const event = testEvent(w);
  const titleId = `webhook-${w.id}-url`;

  const act = async (name, fn) => {
    setBusy(name);
    setResult(null);
    try {
      setResult(await fn());
    } catch (err) {
      setResult({ ok: false, text: `${name}: ${describe(err)}` });
    }
    setBusy("");
    refresh();
  };
  const test = () =>
    act("Test", async () => {
      const r = await webhookRpc(apiKey, "TestWebhook", { id: w.id, event });
      const outcome = r.ok ? `${r.status} in ${r.duration_ms} ms` : `failed: ${r.error || `status ${r.status}`}`;
      return { ok: r.ok, text: `Test ${event}: ${outcome}${r.response_body ? ` · ${r.response_body.slice(0, 80)}` : ""}` };
    });
  const retry = () =>
    act("Retry", async () => {
      const r = await webhookRpc(apiKey, "RetryDelivery", { id: failed.id });
      if (r.queued) return { ok: true, text: "Retry queued: the failed batch goes out now." };
      const d = r.delivery;
      return { ok: d.status === "success", text: `Re-sent batch ${d.callback_id}: ${d.response_status || d.error}` };
    });
  const toggle = () =>
    act(w.active ? "Disable" : "Enable", async () => {
      const r = await webhookRpc(apiKey, "SetActive", { id: w.id, active: !w.active });
      return { ok: true, text: r.active ? "Delivery resumed." : "Delivery paused; changes keep accumulating." };
    });

  return html`<article class="webhook" data-testid="webhook" data-webhook-id=${w.id} aria-labelledby=${titleId}>
    <header class="webhook-head">
      <${StateBadge} state=${state} />
      <h2 id=${titleId} class="url">${w.url}</h2>
      ${!w.active && html`<span class="tag tag-paused" data-testid="paused">paused</span>`}
      <div class="actions">
        <button type="button" onClick=${test} disabled=${!!busy || !event} data-testid="test" title=${`Send a signed test request (${event})`}>
          ${busy === "Test" ? "Testing…" : "Test"}
        </button>
        <button type="button" onClick=${retry} disabled=${!!busy || !failed} data-testid="retry"
          title=${failed ? `Send the batch of failed delivery ${failed.id} again now` : "No failed delivery to retry"}>
          ${busy === "Retry" ? "Retrying…" : "Retry"}
        </button>
        <button type="button" class="secondary" onClick=${toggle} disabled=${!!busy} data-testid="toggle-active">
          ${w.active ? "Disable" : "Enable"}
        </button>
      </div>
    </header>
    ${result && html`<p class=${`result ${result.ok ? "result-ok" : "result-error"}`} role="status" data-testid="action-result">${result.text}</p>`}
    ${error && html`<p class="result result-error" role="alert">${error}</p>`}
    <dl class="facts">
      <div><dt>Subscribed</dt><dd>${[...w.entities, ...w.topics].map((s) => html`<span key=${s} class="chip">${s}</span>`)}</dd></div>
      <div><dt>Health</dt><dd><${Health} health=${w.health} /></dd></div>
      <div><dt>Last sent</dt><dd>${fmtTime(w.states?.last_sent_at)}</dd></div>
      ${state === "retry" && html`<div><dt>Next attempt</dt><dd>${fmtTime(w.states?.next_attempt_at)}</dd></div>`}
      ${lastError?.error &&
      html`<div class="wide"><dt>${state === "ok" ? "Last error (since resolved)" : "Last error"}</dt><dd class=${state === "ok" ? "muted" : "error-text"} data-testid="last-error">
        ${lastError.error}${lastError.retried ? ` (${plural(lastError.retried, "failed attempt")} of this batch)` : ""} · ${fmtTime(lastError.sent_at)}
      </dd></div>`}
      ${w.disabled_reason && html`<div class="wide"><dt>Disabled</dt><dd class="error-text">${w.disabled_reason}</dd></div>`}
      ${w.description && html`<div class="wide"><dt>Description</dt><dd>${w.description}</dd></div>`}
    </dl>
    <div class="panels">
      <section aria-label="Success rate over time">
        <h3>Success rate, last ${CHART_DAYS} days</h3>
        <${Chart} stats=${stats} />
      </section>
      <section aria-label="Recent deliveries">
        <h3>Recent deliveries</h3>
        <${Deliveries} deliveries=${deliveries} />
      </section>
    </div>
  </article>`;
}

function Dashboard({ apiKey, onSignOut }) {
  const [shop, setShop] = useState(null);
  const [items, setItems] = useState(null);
  const [error, setError] = useState("");
  const [updatedAt, setUpdatedAt] = useState(null);
  const refresh = useRef(() => {});

  useEffect(() => {
    rpc(apiKey, "Misc", "CurrentAccount").then(
      (r) => setShop(r.shop),
      () => {},
    );
  }, [apiKey]);

  // Poll every POLL_MS (not while the tab is hidden); refresh() loads now, or again right after
  // the load in flight, so an action's effect shows at once.
  useEffect(() => {
    let stopped = false;
    let inFlight = false;
    let again = false;
    let timer;
    const loadOnce = async () => {
      try {
        const data = await loadWebhooks(apiKey);
        if (stopped) return;
        setItems(data);
        setError("");
        setUpdatedAt(new Date());
      } catch (err) {
        if (stopped) return;
        if (err.status === 401) onSignOut(`Signed out: ${describe(err)}`);
        else setError(describe(err));
      }
    };
    const run = async () => {
      if (inFlight) return void (again = true);
      clearTimeout(timer);
      inFlight = true;
      do {
        again = false;
        if (!document.hidden) await loadOnce();
      } while (again && !stopped);
      inFlight = false;
      if (!stopped) timer = setTimeout(run, POLL_MS);
    };
    const onVisible = () => !document.hidden && run();
    refresh.current = run;
    document.addEventListener("visibilitychange", onVisible);
    run();
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [apiKey]);

  return html`<header class="top">
      <h1>Webhooks</h1>
      <span class="shop" data-testid="shop">${shop ? `${shop.name} · ${shop.id}` : ""}</span>
      <span class="muted updated">${updatedAt ? `updated ${updatedAt.toLocaleTimeString()}` : "loading…"}</span>
      <button type="button" class="secondary" onClick=${() => onSignOut("")} data-testid="sign-out">Sign out</button>
    </header>
    <main class="content">
      ${error && html`<p class="banner" role="alert" data-testid="error">${error}</p>`}
      ${items === null
        ? !error && html`<p class="muted">Loading…</p>`
        : items.length === 0
          ? html`<p class="empty">No webhooks yet: create one with <code>shop.Webhook/CreateWebhook</code>.</p>`
          : items.map((item) => html`<${WebhookCard} key=${item.webhook.id} item=${item} apiKey=${apiKey} refresh=${() => refresh.current()} />`)}
    </main>`;
}

function SignIn({ onSignIn, notice }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState(notice);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const key = value.trim();
    if (!key) return setError("Enter the shop's API key.");
    setBusy(true);
    setError("");
    try {
      await rpc(key, "Misc", "CurrentAccount");
      onSignIn(key);
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <form onSubmit=${submit} aria-labelledby="signin-title">
      <h1 id="signin-title">shophook webhooks</h1>
      <p class="muted">Enter the shop's API key. It stays in this tab (session storage) and goes only to this server's API.</p>
      <label for="api-key">API key</label>
      <input id="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="shk_…"
        value=${value} onInput=${(e) => setValue(e.currentTarget.value)} data-testid="api-key" />
      <button type="submit" disabled=${busy} data-testid="sign-in">${busy ? "Checking…" : "Open dashboard"}</button>
      ${error && html`<p class="banner" role="alert" data-testid="error">${error}</p>`}
    </form>
  </main>`;
}

function App() {
  const [key, setKey] = useState(() => sessionStorage.getItem(KEY_STORAGE) ?? "");
  const [notice, setNotice] = useState("");
  const signIn = (k) => {
    sessionStorage.setItem(KEY_STORAGE, k);
    setNotice("");
    setKey(k);
  };
  const signOut = (message) => {
    sessionStorage.removeItem(KEY_STORAGE);
    setNotice(message);
    setKey("");
  };
  return key ? html`<${Dashboard} apiKey=${key} onSignOut=${signOut} />` : html`<${SignIn} onSignIn=${signIn} notice=${notice} />`;
}

render(html`<${App} />`, document.getElementById("app"));
