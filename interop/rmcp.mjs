// rmcp, the official Rust MCP SDK, authorized by mcpauth (crates/mcpauth-rmcp, through its
// example list_tools: rmcp's client and Streamable HTTP transport, an mcpauth Session with the
// file store and a loopback browser login) against real peers. interop/run-rmcp starts the
// servers and runs one part per server set-up (MCPAUTH_RMCP_PART):
//
//   gateway   `mcpauth gateway --demo`: a browser login through its pages (DPoP-bound token);
//             the access token revoked at /revoke while the MCP session pauses, so the next call
//             gets 401, refreshes and is replayed; a second run on the stored tokens without a
//             login; the app removed on the /account page, so the next run logs in once more
//             with the same client registration and leaves one stored login
//   require   `mcpauth gateway --demo --dpop require`: with --no-dpop the example stops at once
//             with an error that says DPoP is required (no login); with DPoP it works
//   expiry    `mcpauth gateway --demo --access-token-ttl 3`: the token expires while the MCP
//             session pauses and is refreshed in the middle of it
//   ts-sdk    the TypeScript SDK's protected server (lib/ts-resource-server.mjs: requireBearerAuth
//             and RFC 7662 introspection, Bearer only) with `mcpauth serve --access-token-ttl 3`:
//             a Bearer token although the authorization server offers DPoP, expiry in the middle
//             of the session, and the client credentials grant
//
// The servers' audit log (--audit-log) is the evidence of what happened at the authorization
// server; `mcpauth status --json` (same MCPAUTH_HOME) of what the client stored. Prints one line
// per check and "N passed, M failed".

import { spawn } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import { Checks, env, verboseLog, withTimeout } from "./lib/checks.mjs";
import { CookieJar, formAction, hiddenField, loginAndConsent } from "./lib/http-login.mjs";
import { startResourceServer } from "./lib/ts-resource-server.mjs";

const PART = env("MCPAUTH_RMCP_PART");
const EXAMPLE = env("MCPAUTH_RMCP_EXAMPLE");
const BIN = env("MCPAUTH_BIN");
const ISSUER = env("MCPAUTH_ISSUER");
const AUDIT = env("MCPAUTH_AUDIT_LOG");
const CLIENT_HOME = env("MCPAUTH_CLIENT_HOME");
const USER = { username: env("MCPAUTH_USERNAME"), password: env("MCPAUTH_PASSWORD") };
const say = verboseLog(`rmcp ${PART}`);
const checks = new Checks(`[rmcp ${PART}]`);
const check = checks.check.bind(checks);
/** The browser's cookies at the authorization server, kept across logins like a browser. */
const jar = new CookieJar();

/** Runs a program to its end: { code, out, err }. */
function run(cmd, args, { env: extra = {}, onStderr, onStdout } = {}) {
  const childEnv = { ...process.env, MCPAUTH_HOME: CLIENT_HOME, RUST_LOG: "warn", ...extra };
  for (const k of ["MCP_CLIENT_ID", "MCP_CLIENT_SECRET", "MCPAUTH_CLIENT_SECRET", "MCPAUTH_AUDIT_LOG"]) {
    if (!(k in extra)) delete childEnv[k];
  }
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: childEnv });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
      onStdout?.(out);
    });
    child.stderr.on("data", (d) => {
      err += d;
      onStderr?.(err);
    });
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

/** `mcpauth ARGS` with the client's MCPAUTH_HOME. */
const mcpauth = (args) => withTimeout(run(BIN, args), 30_000, `mcpauth ${args[0]}`);

/** The stored logins (`mcpauth status --json`). */
async function stored() {
  const r = await mcpauth(["status", "--json"]);
  if (r.code !== 0) throw new Error(`mcpauth status --json: exit ${r.code}: ${r.err}`);
  return JSON.parse(r.out);
}

/**
 * Runs the rmcp example with `args`. A login URL it prints is logged in and consented over HTTP
 * as USER (and delivered to its loopback listener) when `login` is true; `onListed` runs once
 * the tool list is out (the MCP session is then paused when --pause was given).
 * Resolves to { code, out, err, logins, tools, result, ms }.
 */
async function example(args, { login = true, onListed, env: extra } = {}) {
  const started = Date.now();
  let logins = 0;
  let listed = false;
  let loginError;
  let hook = Promise.resolve();
  const r = await withTimeout(
    run(EXAMPLE, args, {
      env: extra,
      onStderr: (err) => {
        const urls = err.split("\n").map((l) => l.trim()).filter((l) => l.startsWith(`${ISSUER}/authorize?`));
        if (urls.length <= logins) return;
        logins = urls.length;
        if (!login) return;
        say(`login ${logins}`);
        loginAndConsent(urls.at(-1), { ...USER, jar, log: say })
          .then((location) => fetch(location, { redirect: "manual" }))
          .catch((e) => (loginError = e));
      },
      onStdout: (out) => {
        if (listed || !onListed || !/^\w+: /m.test(out)) return;
        listed = true;
        hook = onListed().catch((e) => {
          loginError = e;
        });
      },
    }),
    90_000,
    `rmcp example ${args.join(" ")}`,
  );
  await hook;
  if (loginError) throw loginError;
  const tools = [...r.out.matchAll(/^(\w+): /gm)].map((m) => m[1]);
  const json = r.out.indexOf("{");
  const result = json >= 0 ? JSON.parse(r.out.slice(json)) : undefined;
  say(`exit ${r.code}, ${logins} login(s), tools ${tools}, ${Date.now() - started} ms`);
  return { ...r, logins, tools, result, ms: Date.now() - started };
}

/** What an example run printed on failure, shortened. */
const tail = (r) => `exit ${r.code}: ${(r.err || r.out).replace(/\s+/g, " ").trim().slice(-400)}`;
/** A check about an example run `r`: its time when it passed, what it printed when not. */
const checkRun = (name, ok, r) => check(name, ok, ok ? `${r.ms} ms` : tail(r));
/** The text of a tools/call result's first content block. */
const textOf = (r) => r.result?.content?.[0]?.text;

/** The audit log's events named `name` that have every field of `fields`. */
function audited(name, fields = {}) {
  if (!existsSync(AUDIT)) return [];
  return readFileSync(AUDIT, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.event === name && Object.entries(fields).every(([k, v]) => e[k] === v));
}

/** Counts of the audit events that tell logins, refreshes and registrations apart, once the
 * server's audit thread wrote its last lines (it batches them for up to 50 ms). */
async function tally() {
  await new Promise((r) => setTimeout(r, 250));
  return {
    registered: audited("client.registered").length,
    codes: audited("token.issued", { grant_type: "authorization_code" }).length,
    refreshed: audited("token.refreshed").length,
    revoked: audited("token.revoked").length,
    refused: audited("access.refused").length,
  };
}

/** RFC 7009: revokes the client's stored access token alone (a public client: its client_id). */
async function revokeAccessToken(url) {
  const token = await mcpauth(["token", url]);
  // Its stdout is the token: only stderr may be shown.
  if (token.code !== 0) throw new Error(`mcpauth token: exit ${token.code}: ${token.err.trim().slice(-400)}`);
  const [login] = await stored();
  const resp = await fetch(`${ISSUER}/revoke`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: token.out.trim(), token_type_hint: "access_token", client_id: login.client_id }),
  });
  if (resp.status !== 200) throw new Error(`POST /revoke: HTTP ${resp.status} ${await resp.text()}`);
  say("access token revoked");
}

/** The user removes the app on the authorization server's /account page (signed in by `jar`). */
async function removeApp() {
  const page = await fetch(`${ISSUER}/account`, { headers: { cookie: jar.header() }, redirect: "manual" });
  const html = await page.text();
  if (page.status !== 200) throw new Error(`GET /account: HTTP ${page.status}`);
  const resp = await fetch(formAction(html, `${ISSUER}/account`), {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: jar.header() },
    body: new URLSearchParams({ grant: hiddenField(html, "grant"), csrf: hiddenField(html, "csrf") }).toString(),
  });
  if (resp.status !== 303) throw new Error(`POST /account/revoke: HTTP ${resp.status} ${await resp.text()}`);
  say("app removed on /account");
}

const ADD = ["add", '{"a":2,"b":3}'];

async function gatewayPart() {
  const url = env("MCPAUTH_MCP_URL");
  // 1. A browser login, tools listed; the access token revoked during the pause; the call.
  const first = await example(["--pause", "3", url, ...ADD], { onListed: () => revokeAccessToken(url) });
  checkRun("browser login through the gateway's pages, once", first.code === 0 && first.logins === 1, first);
  check("tools/list through rmcp's Streamable HTTP transport", ["add", "echo"].every((t) => first.tools.includes(t)), first.tools.join(","));
  checkRun("tools/call add after the access token was revoked mid-session: 5", textOf(first) === "5", first);
  let t = await tally();
  check("the revoked token got 401, was refreshed and the call replayed (audit: revoked 1, refused >= 1, refreshed 1, one code)",
    t.revoked === 1 && t.refused >= 1 && t.refreshed === 1 && t.codes === 1, JSON.stringify(t));
  const [login] = await stored();
  check("the stored token is DPoP-bound (the gateway offers DPoP in its metadata)", login?.token_type === "DPoP", JSON.stringify(login));

  // 2. A new process on the stored tokens: no login.
  const second = await example([url]);
  checkRun("a second run uses the stored tokens without a login", second.code === 0 && second.logins === 0 && second.tools.includes("add"), second);

  // 3. The user removes the app: the next run is refused, its refresh too, and it logs in again.
  await removeApp();
  const third = await example([url, ...ADD]);
  t = await tally();
  checkRun("after the app was removed on /account: one new login, then tools/call add: 5",
    third.code === 0 && third.logins === 1 && textOf(third) === "5", third);
  check("the new login reused the client registration (audit: client.registered 1, two codes)",
    t.registered === 1 && t.codes === 2, JSON.stringify(t));
  const logins = await stored();
  check("one stored login, with a refresh token", logins.length === 1 && logins[0].refresh_token === true, JSON.stringify(logins));
}

async function requirePart() {
  const url = env("MCPAUTH_MCP_URL");
  const bearer = await example(["--no-dpop", url], { login: false });
  check("--no-dpop against --dpop require: stops at once, no login, says DPoP-bound tokens are required",
    bearer.code !== 0 && bearer.logins === 0 && bearer.err.includes("DPoP-bound"), `${bearer.ms} ms, ${tail(bearer)}`);
  const t = await tally();
  check("... and no token was issued (audit)", t.codes === 0, JSON.stringify(t));
  const bound = await example([url, ...ADD]);
  checkRun("with DPoP: a login, then tools/call add: 5", bound.code === 0 && bound.logins === 1 && textOf(bound) === "5", bound);
  const [login] = await stored();
  check("the stored token is DPoP-bound", login?.token_type === "DPoP", JSON.stringify(login));
}

async function expiryPart() {
  const url = env("MCPAUTH_MCP_URL");
  const r = await example(["--refresh-margin", "0", "--pause", "5", url, ...ADD]);
  checkRun("a login, tools listed, the 3 s token expired during the pause, tools/call add: 5",
    r.code === 0 && r.logins === 1 && r.tools.includes("add") && textOf(r) === "5", r);
  const t = await tally();
  check("refreshed in the middle of the session, no second login (audit: one code, refreshed >= 1)",
    t.codes === 1 && t.refreshed >= 1, JSON.stringify(t));
}

async function tsSdkPart() {
  const meta = await (await fetch(`${ISSUER}/.well-known/oauth-authorization-server`)).json();
  check("mcpauth serve offers DPoP (so a Bearer token below is the client's choice)",
    (meta.dpop_signing_alg_values_supported ?? []).includes("ES256"));
  const rs = await startResourceServer({
    port: Number(env("MCPAUTH_RESOURCE_PORT")),
    issuer: ISSUER,
    clientId: env("MCPAUTH_INTROSPECT_CLIENT_ID"),
    clientSecret: env("MCPAUTH_INTROSPECT_CLIENT_SECRET"),
    scopes: [env("MCPAUTH_SCOPE")],
  });
  try {
    const r = await example(["--refresh-margin", "0", "--pause", "5", rs.url, "whoami"]);
    const who = JSON.parse(textOf(r) ?? "{}");
    checkRun("browser login through mcpauth serve's pages, tools/list and tools/call whoami on the TypeScript SDK server",
      r.code === 0 && r.logins === 1 && r.tools.includes("whoami") && who.resource === rs.url, r);
    const t = await tally();
    check("the 3 s token expired during the pause and was refreshed, no second login (audit)",
      t.codes === 1 && t.refreshed >= 1, JSON.stringify(t));
    const [login] = await stored();
    check("a Bearer token: the SDK server says nothing of DPoP", login?.token_type === "Bearer", JSON.stringify(login));
    check("the SDK server introspected the tokens", rs.verifier.introspections >= 2, `${rs.verifier.introspections}`);

    const id = env("MCPAUTH_CC_CLIENT_ID");
    const cc = await example([rs.url, "whoami"], {
      login: false,
      env: { MCP_CLIENT_ID: id, MCPAUTH_CLIENT_SECRET: env("MCPAUTH_CC_CLIENT_SECRET") },
    });
    checkRun("client credentials (MCP_CLIENT_ID, MCPAUTH_CLIENT_SECRET): tools/call whoami as that client, no login",
      cc.code === 0 && cc.logins === 0 && JSON.parse(textOf(cc) ?? "{}").clientId === id, cc);
  } finally {
    await rs.close();
  }
}

const parts = { gateway: gatewayPart, require: requirePart, expiry: expiryPart, "ts-sdk": tsSdkPart };
if (!parts[PART]) throw new Error(`unknown MCPAUTH_RMCP_PART ${PART}`);
await checks.run([[PART, parts[PART]]]);
