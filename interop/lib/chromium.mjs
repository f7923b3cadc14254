// What the headless Chromium harnesses share (interop/chromium-login.mjs, interop/federation/
// chromium.mjs): Debian's /usr/bin/chromium driven by playwright-core (no browser download), a
// fresh profile per run, the watch for console errors, page errors, failed requests and HTTP
// errors, the sideways-scrolling check, full-page screenshots, the client's loopback callback
// listener, PKCE, the code exchange, and the PASS/FAIL tally ending in "N passed, M failed".

import { createServer } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const EXECUTABLE = process.env.MCPAUTH_CHROMIUM || "/usr/bin/chromium";
// What the machine's notes say Chromium needs here (no sandbox as root, no background traffic).
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const TIMEOUT = 15000;
export const DESKTOP = { viewport: { width: 1280, height: 800 }, mobile: false };
export const PHONE = { viewport: { width: 390, height: 844 }, mobile: true };

/** Reads a required environment variable. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through its interop script)`);
  return v;
}

let passed = 0;
let failed = 0;
/** Counts and prints one check. */
export function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`  ${ok ? "PASS" : "FAIL"}  ${name}${detail ? `  (${detail})` : ""}`);
  return ok;
}

/** Prints the tally and exits: 0 only when something passed and nothing failed. */
export function finish(extraFailures = 0) {
  failed += extraFailures;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

/** The client's loopback redirect listener on `port`: answers with a small page. */
export async function callbackListener(port) {
  const server = createServer((req, res) => {
    if (req.url === "/favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Back at the client</title><body style="font:16px system-ui;margin:2rem">
<h1>Back at the client</h1><p>The authorization server redirected here. You can close this tab.</p></body>`);
  });
  await new Promise((r, j) => server.listen(port, "127.0.0.1", r).on("error", j));
  return server;
}

/** A PKCE S256 pair (RFC 7636). */
export function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

/** A random `state`. */
export const newState = () => randomBytes(16).toString("base64url");

/** The authorization server metadata (RFC 8414) of `issuer`. */
export async function metadata(issuer) {
  const resp = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
  if (!resp.ok) throw new Error(`metadata: HTTP ${resp.status}`);
  return resp.json();
}

/** Everything a page should not do: console errors, uncaught errors, failed requests. */
export function watch(page) {
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}${m.location()?.url ? ` [${m.location().url}]` : ""}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  return problems;
}

async function shoot(page, dir, run, n, name) {
  const path = join(dir, `${run}-${n}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * A browser for one run: a fresh profile (no cookie carries over), the page, its problems, and
 * `page(n, name, { expectStatus })`, which screenshots the current page and checks it had no
 * problems (an expected HTTP error status of the page itself aside) and fits the viewport.
 */
export async function openRun(run, { viewport, mobile }, screenshots) {
  const profile = mkdtempSync(join(tmpdir(), "mcpauth-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: EXECUTABLE,
    headless: true,
    args: FLAGS,
    timeout: 30000,
    viewport,
    isMobile: mobile,
    hasTouch: mobile,
    deviceScaleFactor: mobile ? 2 : 1,
    locale: "en-US",
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  const problems = watch(page);
  return {
    context,
    page,
    version: context.browser()?.version() ?? "",
    /** Taps on a phone, clicks elsewhere. */
    press: (locator) => (mobile ? locator.tap() : locator.click()),
    async check(n, name, { expectStatus } = {}) {
      const file = await shoot(page, screenshots, run, n, name);
      // Compared with the configured width, not window.innerWidth: on an emulated phone a page
      // wider than the screen widens the layout viewport (and innerWidth) with it, so that
      // comparison could never fail.
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      // The page's own expected error status shows as a response and as Chromium's console
      // error for it; anything else counts.
      const expected = (p) =>
        expectStatus && p.includes(page.url()) &&
        (p === `HTTP ${expectStatus} for ${page.url()}` || p.includes(`status of ${expectStatus} `));
      const real = problems.filter((p) => !expected(p));
      check(`${run}: ${name} page: no console errors, page errors or failed requests`, real.length === 0, real.join("; "));
      problems.length = 0;
      check(`${run}: ${name} page fits the ${viewport.width}px viewport (no sideways scrolling)`, scrollWidth <= viewport.width,
        `scrollWidth ${scrollWidth}, viewport ${viewport.width}; ${file}`);
    },
    async failure(e) {
      await shoot(page, screenshots, run, 9, "failure").catch(() => {});
      check(`${run}: completed without an exception`, false, e.stack ?? String(e));
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Exchanges `code` at `tokenEndpoint` as a public client with PKCE; returns {status, tokens, claims, noStore}. */
export async function exchangeCode(tokenEndpoint, { code, redirectUri, clientId, verifier, resource }) {
  const resp = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      client_id: clientId,
      code_verifier: verifier,
      resource,
    }).toString(),
  });
  const tokens = await resp.json();
  const claims = tokens.access_token ? JSON.parse(Buffer.from(tokens.access_token.split(".")[1], "base64url")) : {};
  return { status: resp.status, tokens, claims, noStore: (resp.headers.get("cache-control") ?? "").includes("no-store") };
}

/** The authorization request URL for a public client with PKCE. */
export function authorizationUrl(endpoint, params) {
  const url = new URL(endpoint);
  for (const [k, v] of Object.entries({ response_type: "code", code_challenge_method: "S256", ...params })) {
    url.searchParams.set(k, v);
  }
  return url.href;
}
