// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no browser download)
// through mcpauth serve's real login and consent pages, like a person would:
//
//   desktop (1280x800): authorization URL (PKCE S256, state, resource, scope) -> login page ->
//     type username + password, click "Sign in" -> consent page (shows the redirect host) ->
//     click "Allow" -> the loopback redirect URI with code, state and iss -> /token exchange
//   phone (390x844, touch): the same, and no page scrolls sideways
//   deny (desktop): click "Deny" -> the redirect URI with error=access_denied, state and iss
//
// Every page: no console errors, no page errors, no failed requests, and a screenshot
// (MCPAUTH_SCREENSHOTS/<run>-<n>-<page>.png, full page). Run by interop/run, which starts
// mcpauth serve and registers the public clients <prefix>desktop|phone|deny with the redirect URI
// http://127.0.0.1:<callback port>/callback. Ends with "N passed, M failed".

import { createServer } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through interop/run)`);
  return v;
};
const ISSUER = env("MCPAUTH_ISSUER");
const USERNAME = env("MCPAUTH_USERNAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const SCOPE = env("MCPAUTH_SCOPE");
const RESOURCE = env("MCPAUTH_RESOURCE");
const CALLBACK_PORT = Number(env("MCPAUTH_CALLBACK_PORT"));
const PREFIX = env("MCPAUTH_CLIENT_PREFIX");
const SCREENSHOTS = env("MCPAUTH_SCREENSHOTS");
const EXECUTABLE = process.env.MCPAUTH_CHROMIUM || "/usr/bin/chromium";
const REDIRECT_URI = `http://127.0.0.1:${CALLBACK_PORT}/callback`;
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
const TIMEOUT = 15000;

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`  ${ok ? "PASS" : "FAIL"}  ${name}${detail ? `  (${detail})` : ""}`);
  return ok;
}

// The client's loopback redirect listener: answers with a small page, remembers the URL.
const callbacks = [];
const callbackServer = createServer((req, res) => {
  callbacks.push(`http://127.0.0.1:${CALLBACK_PORT}${req.url}`);
  if (req.url === "/favicon.ico") {
    res.writeHead(204).end();
    return;
  }
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Back at the client</title><body style="font:16px system-ui;margin:2rem">
<h1>Back at the client</h1><p>The authorization server redirected here. You can close this tab.</p></body>`);
});

function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

async function metadata() {
  const resp = await fetch(`${ISSUER}/.well-known/oauth-authorization-server`);
  if (!resp.ok) throw new Error(`metadata: HTTP ${resp.status}`);
  return resp.json();
}

/** Everything a page should not do: console errors, uncaught errors, failed requests. */
function watch(page) {
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

async function noSideways(page) {
  return page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
}

async function shoot(page, run, n, name) {
  const path = join(SCREENSHOTS, `${run}-${n}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

async function onePage(page, run, n, name, problems, viewportWidth) {
  const file = await shoot(page, run, n, name);
  const { scrollWidth, innerWidth } = await noSideways(page);
  check(`${run}: ${name} page: no console errors, page errors or failed requests`, problems.length === 0, problems.join("; "));
  problems.length = 0;
  check(`${run}: ${name} page fits the ${viewportWidth}px viewport (no sideways scrolling)`, scrollWidth <= innerWidth,
    `scrollWidth ${scrollWidth}, innerWidth ${innerWidth}; ${file}`);
}

async function run(meta, { name, viewport, mobile, decision }) {
  // A fresh --user-data-dir (profile) per run: no cookie or session carries over.
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
  if (name === "desktop") console.log(`Chromium ${context.browser()?.version() ?? ""} (${EXECUTABLE}); screenshots in ${SCREENSHOTS}`);
  console.log(`${name} (${viewport.width}x${viewport.height}${mobile ? ", touch" : ""}, ${decision}):`);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  const problems = watch(page);
  try {
    const { verifier, challenge } = pkce();
    const state = randomBytes(16).toString("base64url");
    const clientId = `${PREFIX}${name}`;
    const url = new URL(meta.authorization_endpoint);
    for (const [k, v] of Object.entries({
      response_type: "code",
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      state,
      code_challenge: challenge,
      code_challenge_method: "S256",
      resource: RESOURCE,
    })) url.searchParams.set(k, v);

    // 1. Login page.
    const first = await page.goto(url.href);
    check(`${name}: the authorization URL shows the login page`,
      first?.status() === 200 && (await page.locator("h1").innerText()) === "Sign in" &&
        (await page.locator('input[name="username"]').isVisible()) && (await page.locator('input[name="password"]').isVisible()),
      `HTTP ${first?.status()}, title "${await page.title()}"`);
    await onePage(page, name, 1, "login", problems, viewport.width);
    await page.locator('input[name="username"]').fill(USERNAME);
    await page.locator('input[name="password"]').fill(PASSWORD);
    await Promise.all([page.waitForURL(`${ISSUER}/**`, { waitUntil: "load" }), page.getByRole("button", { name: "Sign in" }).click()]);

    // 2. Consent page.
    const body = await page.locator("body").innerText();
    check(`${name}: after signing in, the consent page names the client, the redirect host and the scope`,
      /^Allow /.test(await page.locator("h1").innerText()) && body.includes(`Chromium interop (${name})`) &&
        body.includes("127.0.0.1") && body.includes(SCOPE),
      (await page.locator("h1").innerText()).slice(0, 80));
    await onePage(page, name, 2, "consent", problems, viewport.width);

    // 3. Allow or deny: the browser follows the 303 to the client's redirect URI.
    const button = page.getByRole("button", { name: decision === "allow" ? "Allow" : "Deny" });
    await Promise.all([page.waitForURL(`${REDIRECT_URI}?**`, { waitUntil: "load" }), mobile ? button.tap() : button.click()]);
    const back = new URL(page.url());
    const q = back.searchParams;
    await onePage(page, name, 3, "final", problems, viewport.width);
    const one = (k) => q.getAll(k).length === 1;
    if (decision === "deny") {
      check(`${name}: Deny redirects with error=access_denied, the state and iss = issuer`,
        q.get("error") === "access_denied" && !q.has("code") && one("state") && q.get("state") === state &&
          one("iss") && q.get("iss") === ISSUER, back.search.replace(/code=[^&]+/, "code=…"));
      return;
    }
    check(`${name}: Allow redirects to the registered URI with one code, the same state and iss = issuer (RFC 9207)`,
      `${back.origin}${back.pathname}` === REDIRECT_URI && one("code") && one("state") && q.get("state") === state &&
        one("iss") && q.get("iss") === ISSUER && !q.has("error"),
      back.search.replace(/code=[^&]+/, "code=…"));

    // 4. The client's back channel: exchange the code at /token (public client, PKCE).
    const resp = await fetch(meta.token_endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: q.get("code"),
        redirect_uri: REDIRECT_URI,
        client_id: clientId,
        code_verifier: verifier,
        resource: RESOURCE,
      }).toString(),
    });
    const tokens = await resp.json();
    const claims = tokens.access_token ? JSON.parse(Buffer.from(tokens.access_token.split(".")[1], "base64url")) : {};
    check(`${name}: the code is exchanged at /token for an access token for the resource (and a refresh token)`,
      resp.status === 200 && (resp.headers.get("cache-control") ?? "").includes("no-store") &&
        tokens.token_type?.toLowerCase() === "bearer" && [claims.aud].flat().includes(RESOURCE) &&
        claims.iss === ISSUER && claims.client_id === clientId && String(claims.scope).split(" ").includes(SCOPE) &&
        !!tokens.refresh_token,
      `HTTP ${resp.status}, aud ${JSON.stringify(claims.aud)}, scope ${claims.scope}`);
  } catch (e) {
    await shoot(page, name, 9, "failure").catch(() => {});
    check(`${name}: completed without an exception`, false, e.stack ?? String(e));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function main() {
  await new Promise((r, j) => callbackServer.listen(CALLBACK_PORT, "127.0.0.1", r).on("error", j));
  const meta = await metadata();
  try {
    await run(meta, { name: "desktop", viewport: { width: 1280, height: 800 }, mobile: false, decision: "allow" });
    await run(meta, { name: "phone", viewport: { width: 390, height: 844 }, mobile: true, decision: "allow" });
    await run(meta, { name: "deny", viewport: { width: 1280, height: 800 }, mobile: false, decision: "deny" });
  } finally {
    callbackServer.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
