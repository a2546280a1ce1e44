/**
 * GET /dashboard: the webhook dashboard. A static page (Preact + htm as ES modules, no build
 * step) that asks for the shop's API key and calls the JSON API with it; the files themselves
 * are public, the data is not (docs/dashboard.md).
 *
 * Only files named here are served, looked up by exact path in a map built once: the page's own
 * files from src/dashboard/public/ and a fixed list of modules from node_modules. No part of a
 * request's path ever reaches the file system, so `..`, encoded or not, finds nothing.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Logger } from "../logger.ts";
import type { PlainRoute } from "../server/plain-routes.ts";

const BASE = "/dashboard";
const PUBLIC_DIR = new URL("./public/", import.meta.url);
const NODE_MODULES = new URL("../../node_modules/", import.meta.url);

/** The page's own files (besides index.html), served at /dashboard/<name>. */
const PAGE_FILES = ["app.js", "style.css", "favicon.svg"];

/**
 * Bare specifiers the page imports -> the ES module file in the package. The import map in
 * index.html is generated from this list; the URL carries the package version, so these files
 * can be cached for good.
 */
const MODULES: Array<{ specifier: string; pkg: string; file: string }> = [
  { specifier: "preact", pkg: "preact", file: "dist/preact.mjs" },
  { specifier: "preact/hooks", pkg: "preact", file: "hooks/dist/hooks.mjs" },
  { specifier: "htm", pkg: "htm", file: "dist/htm.mjs" },
  { specifier: "htm/preact", pkg: "htm", file: "preact/index.mjs" },
];

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  cacheControl: string;
}

const REVALIDATE = "no-cache"; // page files: always revalidated (ETag), so a deploy shows at once
const IMMUTABLE = "public, max-age=31536000, immutable"; // versioned module URLs

const sha256 = (data: string | Buffer, encoding: "hex" | "base64") => createHash("sha256").update(data).digest(encoding);

function asset(name: string, body: Buffer, cacheControl: string): Asset {
  const type = TYPES[name.slice(name.lastIndexOf(".") + 1)];
  if (!type) throw new Error(`dashboard: no content type for ${name}`);
  return { body, type, etag: `"${sha256(body, "hex").slice(0, 32)}"`, cacheControl };
}

/** Reads every file once; returns the path -> asset map and the page's Content-Security-Policy. */
async function loadAssets() {
  const assets = new Map<string, Asset>();
  const imports: Record<string, string> = {};
  const versions = new Map<string, string>();
  for (const m of MODULES) {
    if (!versions.has(m.pkg)) {
      const pkg = JSON.parse(await readFile(new URL(`${m.pkg}/package.json`, NODE_MODULES), "utf8")) as { version: string };
      versions.set(m.pkg, pkg.version);
    }
    const url = `${BASE}/vendor/${m.pkg}@${versions.get(m.pkg)}/${m.file}`;
    imports[m.specifier] = url;
    assets.set(url, asset(m.file, await readFile(new URL(`${m.pkg}/${m.file}`, NODE_MODULES)), IMMUTABLE));
  }
  for (const name of PAGE_FILES) assets.set(`${BASE}/${name}`, asset(name, await readFile(new URL(name, PUBLIC_DIR)), REVALIDATE));

  // The import map is the page's only inline script: allowed by its hash, nothing else inline.
  const importMap = JSON.stringify({ imports });
  const template = await readFile(new URL("index.html", PUBLIC_DIR), "utf8");
  if (!template.includes("<!--importmap-->")) throw new Error("dashboard: index.html lacks the <!--importmap--> placeholder");
  const html = template.replace("<!--importmap-->", () => `<script type="importmap">${importMap}</script>`);
  assets.set(`${BASE}/`, asset("index.html", Buffer.from(html), REVALIDATE));
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${sha256(importMap, "base64")}'`,
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { assets, csp };
}

function text(res: Parameters<PlainRoute>[1], status: number, body: string, headers: Record<string, string> = {}) {
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.setHeader("content-length", Buffer.byteLength(body));
  res.setHeader("cache-control", "no-store");
  res.end(body);
}

/** The dashboard's files at /dashboard (the page) and /dashboard/... (its scripts and styles). */
export function dashboardRoute(log: Logger): PlainRoute {
  let loading: ReturnType<typeof loadAssets> | undefined;
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0]!;
    if (path !== BASE && !path.startsWith(`${BASE}/`)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      text(res, 405, "method not allowed: the dashboard is read with GET\n", { allow: "GET, HEAD" });
      return true;
    }
    loading ??= loadAssets();
    loading.then(
      ({ assets, csp }) => {
        const a = assets.get(path === BASE ? `${BASE}/` : path);
        if (!a) return text(res, 404, `not found: ${path.slice(0, 200)}\n`);
        res.setHeader("content-security-policy", csp);
        res.setHeader("x-content-type-options", "nosniff");
        res.setHeader("referrer-policy", "no-referrer");
        res.setHeader("cache-control", a.cacheControl);
        res.setHeader("etag", a.etag);
        if (req.headers["if-none-match"] === a.etag) {
          res.statusCode = 304;
          return res.end();
        }
        res.statusCode = 200;
        res.setHeader("content-type", a.type);
        res.setHeader("content-length", a.body.length);
        if (req.method === "HEAD") res.end();
        else res.end(a.body);
      },
      (err: unknown) => {
        loading = undefined; // try again on the next request
        log.error({ err }, "dashboard: cannot read its files");
        text(res, 500, "dashboard unavailable\n");
      },
    );
    return true;
  };
}
