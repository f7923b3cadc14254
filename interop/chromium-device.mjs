// Headless Chromium (Debian's /usr/bin/chromium via playwright-core) through mcpauth serve's
// device authorization pages (RFC 8628), the harness playing the device:
//
//   the device POSTs /device_authorization (client <prefix>device-<run>, public, registered for the
//   device grant) and polls /token once (authorization_pending); then the person, in Chromium:
//   desktop (1280x800): opens verification_uri, types the code in lower case with a space for the
//     dash, Continue -> the login page -> signs in -> the consent page warns about codes someone
//     else sent and names the code, says nothing of a redirect -> Allow -> "Device connected";
//     the device's polls then get the tokens once (a second exchange is invalid_grant)
//   phone (390x844, touch): verification_uri_complete (the code filled in) -> Continue -> sign in
//     -> Allow -> tokens
//   deny (desktop): Deny -> "Device not connected"; the poll gets access_denied
//   bad code (phone): a wrong code shows the error on the page (400) and the form stays usable;
//     the right code then leads to the login page
//
// Every page: no console errors, no page errors, no failed requests (the deliberate 400 aside),
// no sideways scrolling, a full-page screenshot (MCPAUTH_SCREENSHOTS/device-<run>-<n>-<page>.png).
// Run by interop/run after chromium-login.mjs; ends with "N passed, M failed".

import { DESKTOP, PHONE, check, env, finish, metadata, openRun } from "./lib/chromium.mjs";

const ISSUER = env("MCPAUTH_ISSUER");
const USERNAME = env("MCPAUTH_USERNAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const SCOPE = env("MCPAUTH_SCOPE");
const RESOURCE = env("MCPAUTH_RESOURCE");
const PREFIX = env("MCPAUTH_CLIENT_PREFIX");
const SCREENSHOTS = env("MCPAUTH_SCREENSHOTS");
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

const form = (params) => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(params),
});

/** The device: starts a device authorization. */
async function startDevice(meta, clientId) {
  const resp = await fetch(meta.device_authorization_endpoint, form({ client_id: clientId, scope: SCOPE, resource: RESOURCE }));
  if (resp.status !== 200) throw new Error(`/device_authorization answered HTTP ${resp.status}`);
  return resp.json();
}

/** The device: one poll; {status, body}. */
async function poll(meta, clientId, d) {
  const resp = await fetch(meta.token_endpoint, form({ grant_type: DEVICE_GRANT, device_code: d.device_code, client_id: clientId }));
  return { status: resp.status, body: await resp.json() };
}

/** The device: polls at its interval until the answer is not authorization_pending. */
async function pollUntilAnswered(meta, clientId, d) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    await new Promise((r) => setTimeout(r, (d.interval + 0.2) * 1000));
    const r = await poll(meta, clientId, d);
    if (r.body.error !== "authorization_pending" || Date.now() > deadline) return r;
  }
}

/** Clicks (taps) `button` and waits for the answer to the form it posts to `path`. */
async function submit(b, button, path) {
  await Promise.all([
    b.page.waitForResponse((r) => r.url() === `${ISSUER}${path}` && r.request().method() === "POST"),
    b.press(button),
  ]);
  await b.page.waitForLoadState("load");
}

/** From the login page: signs in; the consent page must warn about the code. */
async function signInToConsent(b, run, userCode, n) {
  const page = b.page;
  check(`${run}: the code leads to the login page`, (await page.locator("h1").innerText()) === "Sign in");
  await b.check(n, "login");
  await page.locator('input[name="username"]').fill(USERNAME);
  await page.locator('input[name="password"]').fill(PASSWORD);
  await submit(b, page.getByRole("button", { name: "Sign in" }), "/authorize/login");
  const body = await page.locator("body").innerText();
  check(`${run}: the consent page warns about codes someone else sent, names the code and no redirect`,
    /^Allow /.test(await page.locator("h1").innerText()) && body.includes("Only allow a device you have in front of you") &&
      body.includes(userCode) && !body.includes("you will be sent to") && (await page.locator(".warn").isVisible()),
    body.slice(0, 160).replace(/\s+/g, " "));
  await b.check(n + 1, "consent");
}

async function run(meta, name, device, { decision = "allow", complete = false, wrongFirst = false } = {}) {
  const clientId = `${PREFIX}device-${name}`;
  const d = await startDevice(meta, clientId);
  const first = await poll(meta, clientId, d);
  check(`device-${name}: /device_authorization gives a XXXX-XXXX code; the first poll is authorization_pending`,
    /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/.test(d.user_code) && d.verification_uri === `${ISSUER}/device` &&
      first.status === 400 && first.body.error === "authorization_pending",
    `${d.user_code}, poll ${first.status} ${first.body.error}`);
  const b = await openRun(`device-${name}`, device, SCREENSHOTS);
  const { viewport, mobile } = device;
  console.log(`device-${name} (${viewport.width}x${viewport.height}${mobile ? ", touch" : ""}, ${decision}):`);
  const page = b.page;
  try {
    const opened = await page.goto(complete ? d.verification_uri_complete : d.verification_uri);
    const field = page.locator('input[name="user_code"]');
    check(`device-${name}: the verification page asks for the code${complete ? " (filled in)" : ""}`,
      opened?.status() === 200 && (await page.locator("h1").innerText()) === "Connect a device" &&
        (await field.inputValue()) === (complete ? d.user_code : ""),
      `HTTP ${opened?.status()}, field "${await field.inputValue()}"`);
    await b.check(1, "device");
    const cont = page.getByRole("button", { name: "Continue" });
    if (wrongFirst) {
      await field.fill("BBBB-BBBB");
      await submit(b, cont, "/device");
      const body = await page.locator("body").innerText();
      check(`device-${name}: a wrong code shows the error on the page, the form still there`,
        body.includes("That code is not valid") && (await field.isVisible()), body.slice(0, 160).replace(/\s+/g, " "));
      await b.check(2, "wrong-code", { expectStatus: 400 });
    }
    if (!complete) await field.fill(d.user_code.toLowerCase().replace("-", " "));
    else if (wrongFirst) await field.fill(d.user_code);
    await submit(b, cont, "/device");
    await signInToConsent(b, `device-${name}`, d.user_code, 3);
    await submit(b, page.getByRole("button", { name: decision === "allow" ? "Allow" : "Deny" }), "/authorize/consent");
    const title = await page.locator("h1").innerText();
    await b.check(5, "done");
    const answer = await pollUntilAnswered(meta, clientId, d);
    if (decision === "deny") {
      check(`device-${name}: Deny says the device is not connected; the device's poll gets access_denied`,
        title === "Device not connected" && answer.status === 400 && answer.body.error === "access_denied",
        `"${title}", poll ${answer.status} ${answer.body.error}`);
      return;
    }
    check(`device-${name}: Allow says the device is connected; the device's poll gets its tokens`,
      title === "Device connected" && answer.status === 200 && !!answer.body.access_token && !!answer.body.refresh_token &&
        answer.body.scope === SCOPE,
      `"${title}", poll ${answer.status} ${answer.body.error ?? answer.body.token_type}`);
    await new Promise((r) => setTimeout(r, (d.interval + 0.2) * 1000));
    const again = await poll(meta, clientId, d);
    check(`device-${name}: the device code gives tokens once (a second exchange is invalid_grant)`,
      again.status === 400 && again.body.error === "invalid_grant", `${again.status} ${again.body.error}`);
  } catch (e) {
    await b.failure(e);
  } finally {
    await b.close();
  }
}

async function main() {
  const meta = await metadata(ISSUER);
  await run(meta, "desktop", DESKTOP);
  await run(meta, "phone", PHONE, { complete: true });
  await run(meta, "deny", DESKTOP, { decision: "deny" });
  await run(meta, "badcode", PHONE, { wrongFirst: true });
  finish();
}

main().catch((e) => {
  console.error(e);
  finish(1);
});
