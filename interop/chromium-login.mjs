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
// http://127.0.0.1:<callback port>/callback. Ends with "N passed, M failed". The harness
// (browser, checks, callback listener, code exchange) is interop/lib/chromium.mjs.

import {
  DESKTOP, EXECUTABLE, PHONE, authorizationUrl, callbackListener, check, env, exchangeCode, finish, metadata,
  newState, openRun, pkce,
} from "./lib/chromium.mjs";

const ISSUER = env("MCPAUTH_ISSUER");
const USERNAME = env("MCPAUTH_USERNAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const SCOPE = env("MCPAUTH_SCOPE");
const RESOURCE = env("MCPAUTH_RESOURCE");
const CALLBACK_PORT = Number(env("MCPAUTH_CALLBACK_PORT"));
const PREFIX = env("MCPAUTH_CLIENT_PREFIX");
const SCREENSHOTS = env("MCPAUTH_SCREENSHOTS");
const REDIRECT_URI = `http://127.0.0.1:${CALLBACK_PORT}/callback`;

async function run(meta, name, device, decision) {
  const b = await openRun(name, device, SCREENSHOTS);
  if (name === "desktop") console.log(`Chromium ${b.version} (${EXECUTABLE}); screenshots in ${SCREENSHOTS}`);
  const { viewport, mobile } = device;
  console.log(`${name} (${viewport.width}x${viewport.height}${mobile ? ", touch" : ""}, ${decision}):`);
  const page = b.page;
  try {
    const { verifier, challenge } = pkce();
    const state = newState();
    const clientId = `${PREFIX}${name}`;
    const url = authorizationUrl(meta.authorization_endpoint, {
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      state,
      code_challenge: challenge,
      resource: RESOURCE,
    });

    // 1. Login page.
    const first = await page.goto(url);
    check(`${name}: the authorization URL shows the login page`,
      first?.status() === 200 && (await page.locator("h1").innerText()) === "Sign in" &&
        (await page.locator('input[name="username"]').isVisible()) && (await page.locator('input[name="password"]').isVisible()),
      `HTTP ${first?.status()}, title "${await page.title()}"`);
    await b.check(1, "login");
    await page.locator('input[name="username"]').fill(USERNAME);
    await page.locator('input[name="password"]').fill(PASSWORD);
    await Promise.all([page.waitForURL(`${ISSUER}/**`, { waitUntil: "load" }), page.getByRole("button", { name: "Sign in" }).click()]);

    // 2. Consent page.
    const body = await page.locator("body").innerText();
    check(`${name}: after signing in, the consent page names the client, the redirect host and the scope`,
      /^Allow /.test(await page.locator("h1").innerText()) && body.includes(`Chromium interop (${name})`) &&
        body.includes("127.0.0.1") && body.includes(SCOPE),
      (await page.locator("h1").innerText()).slice(0, 80));
    await b.check(2, "consent");

    // 3. Allow or deny: the browser follows the 303 to the client's redirect URI.
    const button = page.getByRole("button", { name: decision === "allow" ? "Allow" : "Deny" });
    await Promise.all([page.waitForURL(`${REDIRECT_URI}?**`, { waitUntil: "load" }), b.press(button)]);
    const back = new URL(page.url());
    const q = back.searchParams;
    await b.check(3, "final");
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
    const { status, tokens, claims, noStore } = await exchangeCode(meta.token_endpoint, {
      code: q.get("code"), redirectUri: REDIRECT_URI, clientId, verifier, resource: RESOURCE,
    });
    check(`${name}: the code is exchanged at /token for an access token for the resource (and a refresh token)`,
      status === 200 && noStore && tokens.token_type?.toLowerCase() === "bearer" && [claims.aud].flat().includes(RESOURCE) &&
        claims.iss === ISSUER && claims.client_id === clientId && String(claims.scope).split(" ").includes(SCOPE) &&
        !!tokens.refresh_token,
      `HTTP ${status}, aud ${JSON.stringify(claims.aud)}, scope ${claims.scope}`);
  } catch (e) {
    await b.failure(e);
  } finally {
    await b.close();
  }
}

async function main() {
  const callbacks = await callbackListener(CALLBACK_PORT);
  const meta = await metadata(ISSUER);
  try {
    await run(meta, "desktop", DESKTOP, "allow");
    await run(meta, "phone", PHONE, "allow");
    await run(meta, "deny", DESKTOP, "deny");
  } finally {
    callbacks.close();
  }
  finish();
}

main().catch((e) => {
  console.error(e);
  finish(1);
});
