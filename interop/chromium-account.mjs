// Headless Chromium (Debian's /usr/bin/chromium via playwright-core) through mcpauth serve's
// connected-apps page, like a person would:
//
//   setup (over HTTP, not the browser): the user allows the public client <prefix>account-<run>
//     through the real code flow (interop/lib/http-login.mjs) and the client exchanges the code
//     for tokens (a refresh token: a live grant)
//   desktop (1280x800) and phone (390x844, touch): /account in a fresh browser -> the login page
//     for no client ("applications connected to your account") -> sign in -> the account page
//     lists the client by name, with its redirect host and scope -> "Remove access" -> the page
//     says no application holds access, and the client's refresh token is refused (invalid_grant)
//     -> "Sign out" -> "Signed out", and /account asks to sign in again
//
// Every page: no console errors, no page errors, no failed requests, no sideways scrolling, a
// full-page screenshot (MCPAUTH_SCREENSHOTS/account-<run>-<n>-<page>.png). Run by interop/run
// after chromium-login.mjs, with the same environment; ends with "N passed, M failed".

import {
  DESKTOP, PHONE, authorizationUrl, callbackListener, check, env, exchangeCode, finish, metadata, newState,
  openRun, pkce,
} from "./lib/chromium.mjs";
import { loginAndConsent } from "./lib/http-login.mjs";

const ISSUER = env("MCPAUTH_ISSUER");
const USERNAME = env("MCPAUTH_USERNAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const SCOPE = env("MCPAUTH_SCOPE");
const RESOURCE = env("MCPAUTH_RESOURCE");
const CALLBACK_PORT = Number(env("MCPAUTH_CALLBACK_PORT"));
const PREFIX = env("MCPAUTH_CLIENT_PREFIX");
const SCREENSHOTS = env("MCPAUTH_SCREENSHOTS");
const REDIRECT_URI = `http://127.0.0.1:${CALLBACK_PORT}/callback`;

/** A live grant of the user for `clientId`: its refresh token. */
async function grant(meta, clientId) {
  const { verifier, challenge } = pkce();
  const url = authorizationUrl(meta.authorization_endpoint, {
    client_id: clientId, redirect_uri: REDIRECT_URI, scope: SCOPE, state: newState(), code_challenge: challenge,
    resource: RESOURCE,
  });
  const back = new URL(await loginAndConsent(url, { username: USERNAME, password: PASSWORD }));
  const { status, tokens } = await exchangeCode(meta.token_endpoint, {
    code: back.searchParams.get("code"), redirectUri: REDIRECT_URI, clientId, verifier, resource: RESOURCE,
  });
  if (status !== 200 || !tokens.refresh_token) throw new Error(`the setup code exchange answered HTTP ${status}`);
  return tokens.refresh_token;
}

/** The refresh token grant: the HTTP status and error code. */
async function refresh(meta, clientId, refreshToken) {
  const resp = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", client_id: clientId, refresh_token: refreshToken }),
  });
  return { status: resp.status, error: (await resp.json().catch(() => ({}))).error };
}

/** Resolves when the browser has loaded /account again (after a form's 303 back to it; the
 * address may already be /account, so waiting for the URL would not wait). */
async function accountLoaded(page) {
  await page.waitForResponse((r) => r.url() === `${ISSUER}/account` && r.request().method() === "GET");
  await page.waitForLoadState("load");
}

async function run(meta, name, device) {
  const clientId = `${PREFIX}account-${name}`;
  const refreshToken = await grant(meta, clientId);
  const b = await openRun(`account-${name}`, device, SCREENSHOTS);
  const { viewport, mobile } = device;
  console.log(`account-${name} (${viewport.width}x${viewport.height}${mobile ? ", touch" : ""}):`);
  const page = b.page;
  try {
    const first = await page.goto(`${ISSUER}/account`);
    check(`account-${name}: /account in a fresh browser shows the login page for no client`,
      first?.status() === 200 && (await page.locator("h1").innerText()) === "Sign in" &&
        (await page.locator("body").innerText()).includes("applications connected to your account"),
      `HTTP ${first?.status()}`);
    await b.check(1, "login");
    await page.locator('input[name="username"]').fill(USERNAME);
    await page.locator('input[name="password"]').fill(PASSWORD);
    await Promise.all([accountLoaded(page), b.press(page.getByRole("button", { name: "Sign in" }))]);
    const body = await page.locator("body").innerText();
    check(`account-${name}: after signing in, the account page lists the client with its redirect host and scope`,
      (await page.locator("h1").innerText()) === "Connected apps" && body.includes(`Chromium interop (account-${name})`) &&
        body.includes(`127.0.0.1:${CALLBACK_PORT}`) && body.includes(SCOPE) && body.includes(" UTC"),
      body.slice(0, 200).replace(/\s+/g, " "));
    await b.check(2, "account");

    const section = page.locator("section.app", { hasText: `Chromium interop (account-${name})` });
    await Promise.all([accountLoaded(page), b.press(section.getByRole("button", { name: "Remove access" }))]);
    const after = await page.locator("body").innerText();
    check(`account-${name}: "Remove access" takes the client off the page`,
      !after.includes(`Chromium interop (account-${name})`), after.slice(0, 200).replace(/\s+/g, " "));
    await b.check(3, "removed");
    const r = await refresh(meta, clientId, refreshToken);
    check(`account-${name}: the removed grant's refresh token is refused (invalid_grant)`,
      r.status === 400 && r.error === "invalid_grant", `HTTP ${r.status} ${r.error}`);

    await Promise.all([
      page.waitForResponse((r) => r.url() === `${ISSUER}/account/signout`),
      b.press(page.getByRole("button", { name: "Sign out" })),
    ]);
    await page.waitForLoadState("load");
    check(`account-${name}: "Sign out" signs out`, (await page.locator("h1").innerText()) === "Signed out");
    await b.check(4, "signed-out");
    await page.goto(`${ISSUER}/account`);
    check(`account-${name}: after signing out, /account asks to sign in again`,
      (await page.locator("h1").innerText()) === "Sign in");
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
    await run(meta, "desktop", DESKTOP);
    await run(meta, "phone", PHONE);
  } finally {
    callbacks.close();
  }
  finish();
}

main().catch((e) => {
  console.error(e);
  finish(1);
});
