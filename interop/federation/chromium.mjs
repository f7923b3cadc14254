// Headless Chromium through the federated sign-in, run by interop/run-federation against its
// `mcpauth gateway` (embedded authorization server) federating to oidc-provider
// (interop/federation/idp.mjs), like a person would, at desktop (1280x800) and phone
// (390x844, touch) width:
//
//   our login page -> the provider's button -> the provider's login page (type e-mail address
//   and password, "Sign in") -> the provider's consent page ("Continue") -> our consent page
//   (SPEC F7: the client's name, the redirect host and the upstream identity
//   PROVIDER:SUB) -> "Allow" -> the client's loopback redirect with code, state and iss ->
//   the code exchanged at /token (PKCE)
//   deny (desktop): "Deny" on our consent page -> error=access_denied
//   not allowed (desktop): an account outside the allow-list -> our "Not allowed" page (403),
//   no redirect to the client
//
// Every page, ours and the provider's: no console errors, page errors or failed requests (the
// "Not allowed" page's own 403 aside), no sideways scrolling, a screenshot
// (MCPAUTH_SCREENSHOTS/fed-<run>-<n>-<page>.png). Each run registers its own public client
// (RFC 7591) and uses a fresh browser profile. Environment: MCPAUTH_ISSUER,
// MCPAUTH_IDP_ISSUER, MCPAUTH_IDP_NAME, MCPAUTH_IDP_DISPLAY_NAME, MCPAUTH_PASSWORD,
// MCPAUTH_RESOURCE, MCPAUTH_CALLBACK_PORT, MCPAUTH_SCREENSHOTS. Ends with "N passed, M failed".

import {
  DESKTOP, EXECUTABLE, PHONE, authorizationUrl, callbackListener, check, env, exchangeCode, finish, metadata,
  newState, openRun, pkce,
} from "../lib/chromium.mjs";

const ISSUER = env("MCPAUTH_ISSUER");
const IDP_ISSUER = env("MCPAUTH_IDP_ISSUER");
const IDP_NAME = env("MCPAUTH_IDP_NAME");
const IDP_DISPLAY_NAME = env("MCPAUTH_IDP_DISPLAY_NAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const RESOURCE = env("MCPAUTH_RESOURCE");
const CALLBACK_PORT = Number(env("MCPAUTH_CALLBACK_PORT"));
const SCREENSHOTS = env("MCPAUTH_SCREENSHOTS");
const REDIRECT_URI = `http://127.0.0.1:${CALLBACK_PORT}/callback`;

async function register(name) {
  const resp = await fetch(`${ISSUER}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: `Chromium federation (${name})`,
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    }),
  });
  const client = await resp.json();
  if (resp.status !== 201) throw new Error(`registration: HTTP ${resp.status} ${JSON.stringify(client)}`);
  return client.client_id;
}

/** One run: `account` signs in at the provider; `decision` on our consent page, or "refused". */
async function run(meta, name, device, { account, sub, decision }) {
  const b = await openRun(`fed-${name}`, device, SCREENSHOTS);
  if (name === "desktop") console.log(`Chromium ${b.version} (${EXECUTABLE}); screenshots in ${SCREENSHOTS}`);
  const { viewport, mobile } = device;
  console.log(`federation ${name} (${viewport.width}x${viewport.height}${mobile ? ", touch" : ""}, ${account}, ${decision}):`);
  const page = b.page;
  try {
    const clientId = await register(name);
    const { verifier, challenge } = pkce();
    const state = newState();
    const url = authorizationUrl(meta.authorization_endpoint, {
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      state,
      code_challenge: challenge,
      resource: RESOURCE,
    });

    // 1. Our login page, with the provider's button.
    await page.goto(url);
    const button = page.getByRole("link", { name: `Sign in with ${IDP_DISPLAY_NAME}` });
    check(`${name}: our login page offers "Sign in with ${IDP_DISPLAY_NAME}"`, await button.isVisible(), page.url());
    await b.check(1, "our-login");
    await Promise.all([page.waitForURL(`${IDP_ISSUER}/**`, { waitUntil: "load" }), b.press(button)]);

    // 2. The provider's login page.
    check(`${name}: the button leads to the provider's login form`,
      (await page.locator('input[name="login"]').isVisible()) && (await page.locator('input[name="password"]').isVisible()),
      page.url());
    await b.check(2, "provider-login");
    await page.locator('input[name="login"]').fill(account);
    await page.locator('input[name="password"]').fill(PASSWORD);
    await Promise.all([page.waitForLoadState("load"), b.press(page.getByRole("button", { name: "Sign in" }))]);
    await page.waitForSelector('button[value="continue"]');

    // 3. The provider's consent page.
    await b.check(3, "provider-consent");
    await Promise.all([page.waitForURL(`${ISSUER}/**`, { waitUntil: "load" }), b.press(page.getByRole("button", { name: "Continue" }))]);

    if (decision === "refused") {
      // 4. Our "Not allowed" page: the provider's answer checked against the allow-list.
      const body = await page.locator("body").innerText();
      check(`${name}: ${account} (outside the allow-list) gets our "Not allowed" page and no redirect to the client`,
        (await page.locator("h1").innerText()) === "Not allowed" && body.includes(account) &&
          !page.url().startsWith(REDIRECT_URI), `${page.url()}: ${body.slice(0, 200)}`);
      await b.check(4, "not-allowed", { expectStatus: 403 });
      return;
    }

    // 4. Our consent page (SPEC F7).
    const body = await page.locator("body").innerText();
    check(`${name}: our consent page names the client, the redirect host and the upstream identity ${IDP_NAME}:${sub}`,
      /^Allow /.test(await page.locator("h1").innerText()) && body.includes(`Chromium federation (${name})`) &&
        body.includes("127.0.0.1") && body.includes(`${IDP_NAME}:${sub}`),
      body.replace(/\s+/g, " ").slice(0, 200));
    await b.check(4, "our-consent");

    // 5. Allow or deny: the browser follows the 303 to the client's redirect URI.
    const answer = page.getByRole("button", { name: decision === "allow" ? "Allow" : "Deny" });
    await Promise.all([page.waitForURL(`${REDIRECT_URI}?**`, { waitUntil: "load" }), b.press(answer)]);
    const q = new URL(page.url()).searchParams;
    await b.check(5, "final");
    const one = (k) => q.getAll(k).length === 1;
    if (decision === "deny") {
      check(`${name}: Deny redirects with error=access_denied, the state and iss = issuer`,
        q.get("error") === "access_denied" && !q.has("code") && q.get("state") === state && q.get("iss") === ISSUER);
      return;
    }
    check(`${name}: Allow redirects with one code, the same state and iss = issuer (RFC 9207)`,
      one("code") && q.get("state") === state && q.get("iss") === ISSUER && !q.has("error"));
    const { status, tokens, claims } = await exchangeCode(meta.token_endpoint, {
      code: q.get("code"), redirectUri: REDIRECT_URI, clientId, verifier, resource: RESOURCE,
    });
    check(`${name}: the code is exchanged for tokens for the MCP server, issued to the federated user`,
      status === 200 && !!tokens.refresh_token && [claims.aud].flat().includes(RESOURCE) && claims.iss === ISSUER &&
        claims.client_id === clientId && typeof claims.sub === "string",
      `HTTP ${status}, aud ${JSON.stringify(claims.aud)}`);
  } catch (e) {
    await b.failure(e);
  } finally {
    await b.close();
  }
}

async function main() {
  const callbacks = await callbackListener(CALLBACK_PORT);
  const meta = await metadata(ISSUER);
  const alice = { account: "alice@example.com", sub: "u-1001" };
  try {
    await run(meta, "desktop", DESKTOP, { ...alice, decision: "allow" });
    await run(meta, "phone", PHONE, { ...alice, decision: "allow" });
    await run(meta, "deny", DESKTOP, { ...alice, decision: "deny" });
    await run(meta, "not-allowed", DESKTOP, { account: "mallory@other.org", sub: "u-2002", decision: "refused" });
  } finally {
    callbacks.close();
  }
  finish();
}

main().catch((e) => {
  console.error(e);
  finish(1);
});
