// The federation chain over plain HTTP (Node's fetch), run by interop/run-federation against
// `mcpauth gateway --demo` whose embedded authorization server federates to oidc-provider
// (interop/federation/idp.mjs):
//
//   (1) `mcpauth login URL --no-browser`: the printed authorization URL is played by a scripted
//       browser (our login page's provider button -> the provider's login form and consent ->
//       our /idp/callback -> our consent page, SPEC F7 -> Allow -> the loopback redirect), then
//       `mcpauth call URL add {"a":2,"b":3}` -> 5 and `mcpauth status --json` lists the login
//       (the local user is PROVIDER:SUB, SPEC F6)
//   (2) an account outside --idp-allow-domain: our "Not allowed" page (403), no code (SPEC F5)
//   (3) the MCP server behind the gateway (interop/federation/upstream.mjs, `mcpauth call URL
//       whoami`) gets the user's provider token (--upstream-token X-Upstream-Token: the
//       provider's userinfo accepts it) and an identity assertion (--identity-header
//       X-MCP-Identity) that verifies with the gateway's JWKS, and never the MCP client's token
//       (SPEC F8)
//
// Environment: MCPAUTH_BIN, MCPAUTH_CLIENT_HOME, MCPAUTH_GATEWAY_URL, MCPAUTH_ISSUER,
// MCPAUTH_IDP_ISSUER, MCPAUTH_IDP_NAME, MCPAUTH_PASSWORD, MCPAUTH_UPSTREAM_URL. Ends with
// "N passed, M failed".

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { CookieJar, formAction, hiddenField, unescapeHtml } from "../lib/http-login.mjs";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through interop/run-federation)`);
  return v;
};
const BIN = env("MCPAUTH_BIN");
const GATEWAY_URL = env("MCPAUTH_GATEWAY_URL");
const ISSUER = env("MCPAUTH_ISSUER");
const IDP_ISSUER = env("MCPAUTH_IDP_ISSUER");
const IDP_NAME = env("MCPAUTH_IDP_NAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const UPSTREAM_URL = env("MCPAUTH_UPSTREAM_URL");
const say = (m) => process.env.MCPAUTH_VERBOSE === "1" && console.error(`    ${m}`);

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`  ${ok ? "PASS" : "FAIL"}  ${name}${!ok && detail ? `  (${detail})` : ""}`);
}

const ORIGINS = new Set([new URL(ISSUER).origin, new URL(IDP_ISSUER).origin]);

/**
 * Plays a browser from `authorizationUrl` across our pages and the provider's (one cookie jar:
 * browsers scope cookies by host, not port) until a redirect leaves both origins. Returns
 * {location} then, or {status, html} for a page that is none of the known forms.
 */
export async function federatedLogin(authorizationUrl, { login, password, decision = "allow" }) {
  const jar = new CookieJar();
  let url = authorizationUrl;
  let init = {};
  for (let hop = 0; hop < 20; hop++) {
    say(`${init.method ?? "GET"} ${url.replace(/code=[^&]+/, "code=…")}`);
    const headers = { ...(init.headers ?? {}) };
    if (jar.header()) headers.cookie = jar.header();
    const resp = await fetch(url, { ...init, headers, redirect: "manual", signal: AbortSignal.timeout(10_000) });
    jar.take(resp);
    if (resp.status >= 300 && resp.status < 400) {
      const next = new URL(resp.headers.get("location"), url);
      if (!ORIGINS.has(next.origin)) return { location: next.href };
      url = next.href;
      init = {};
      continue;
    }
    const html = await resp.text();
    const post = (action, form) => {
      url = action;
      init = {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(form).toString(),
      };
    };
    const idpLink = html.match(/<a[^>]*data-idp="[^"]*"[^>]*href="([^"]*)"/i);
    if (resp.status !== 200) return { status: resp.status, html };
    if (new URL(url).origin === new URL(IDP_ISSUER).origin && /name="password"/.test(html)) {
      post(formAction(html, url), { login, password });
    } else if (new URL(url).origin === new URL(IDP_ISSUER).origin && /value="continue"/.test(html)) {
      post(formAction(html, url), { decision: "continue" });
    } else if (idpLink) {
      url = new URL(unescapeHtml(idpLink[1]), url).href;
      init = {};
    } else if (/name="decision"/.test(html)) {
      post(formAction(html, url), { request_id: hiddenField(html, "request_id"), csrf: hiddenField(html, "csrf"), decision });
    } else {
      return { status: resp.status, html };
    }
  }
  throw new Error(`too many hops from ${authorizationUrl}`);
}

function run(args, opts = {}) {
  return new Promise((resolve) => {
    const cenv = { ...process.env, MCPAUTH_HOME: env("MCPAUTH_CLIENT_HOME"), RUST_LOG: "warn" };
    delete cenv.MCPAUTH_DATABASE_URL;
    delete cenv.MCP_CLIENT_ID;
    const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: cenv });
    const timer = setTimeout(() => child.kill("SIGTERM"), 60_000);
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => {
      err += d;
      opts.onStderr?.(err);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

async function loginCallStatus() {
  let started = false;
  let flowError;
  const login = await run(["login", GATEWAY_URL, "--no-browser"], {
    onStderr: (err) => {
      const line = err.split("\n").map((l) => l.trim()).find((l) => l.startsWith(`${ISSUER}/authorize?`));
      if (!line || started) return;
      started = true;
      federatedLogin(line, { login: "alice@example.com", password: PASSWORD })
        .then((r) => {
          if (!r.location) throw new Error(`stopped at HTTP ${r.status}: ${r.html.replace(/\s+/g, " ").slice(0, 400)}`);
          return fetch(r.location, { redirect: "manual" });
        })
        .catch((e) => (flowError = e));
    },
  });
  check("(1) mcpauth login: our login page -> provider login + consent -> our consent -> Allow -> tokens",
    login.code === 0 && started && !flowError, flowError ? String(flowError) : `exit ${login.code}: ${login.err.slice(-400)}`);
  const call = await run(["call", GATEWAY_URL, "add", '{"a":2,"b":3}']);
  check("(1) mcpauth call URL add {\"a\":2,\"b\":3} through the gateway answers 5",
    call.code === 0 && /\b5\b/.test(call.out), `exit ${call.code}: ${(call.out + call.err).slice(0, 300)}`);
  // `mcpauth status` names no user (its records hold tokens, not identities; the access token's
  // `sub` is the local user id): it shows the stored DPoP-bound login at the gateway's issuer.
  const status = await run(["status", "--json"]);
  let records = [];
  try {
    records = JSON.parse(status.out);
  } catch {}
  const issuer = new URL(GATEWAY_URL).origin;
  check(`(1) mcpauth status --json lists the login at ${issuer} (DPoP-bound tokens, a refresh token)`,
    status.code === 0 && records.length === 1 && records[0].issuer === issuer &&
      records[0].token_type === "DPoP" && records[0].refresh_token === true,
    `exit ${status.code}: ${status.out.slice(0, 1200)}`);
}

async function notAllowed() {
  const port = await new Promise((r) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => r(p));
    });
  });
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  const reg = await fetch(`${ISSUER}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "Federation interop (not allowed)",
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code"],
      response_types: ["code"],
    }),
  });
  const client = await reg.json();
  if (reg.status !== 201) throw new Error(`registration: HTTP ${reg.status} ${JSON.stringify(client)}`);
  const verifier = randomBytes(32).toString("base64url");
  const url = new URL(`${ISSUER}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: "code",
    client_id: client.client_id,
    redirect_uri: redirectUri,
    state: randomBytes(16).toString("base64url"),
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    resource: GATEWAY_URL,
  })) url.searchParams.set(k, v);
  const r = await federatedLogin(url.href, { login: "mallory@other.org", password: PASSWORD });
  check("(2) mallory@other.org (outside --idp-allow-domain example.com): our \"Not allowed\" page, HTTP 403, no code",
    !r.location && r.status === 403 && /<h1>Not allowed<\/h1>/.test(r.html) && r.html.includes("mallory@other.org"),
    r.location ? `redirected to ${r.location.replace(/code=[^&]+/, "code=…")}` : `HTTP ${r.status}`);
}

async function upstreamTokenAndIdentity() {
  const call = await run(["call", GATEWAY_URL, "whoami"]);
  let who = {};
  try {
    who = JSON.parse(JSON.parse(call.out).content[0].text);
  } catch {}
  check("(3) --upstream-token: the MCP server's X-Upstream-Token works at the provider's userinfo, which says alice@example.com (SPEC F8)",
    call.code === 0 && who.userinfo?.email === "alice@example.com" && who.userinfo?.sub === "u-1001",
    `exit ${call.code}: ${(call.out + call.err).slice(0, 400)}`);
  check("(3) --identity-header: X-MCP-Identity verifies with the gateway's JWKS (ES256, typ, iss, aud = the MCP server, exp) and names alice@example.com",
    who.identity?.verified === true && who.identity?.email === "alice@example.com",
    JSON.stringify(who.identity ?? null));
  const token = await run(["token", GATEWAY_URL]);
  const clientToken = token.out.trim();
  const seen = await (await fetch(new URL("/seen", UPSTREAM_URL))).json();
  check("(3) the MCP client's access token never reached the MCP server (in no header of any request)",
    token.code === 0 && clientToken.length > 20 && seen.length > 0 && !seen.some((v) => v.includes(clientToken)),
    `token exit ${token.code}, ${seen.length} header values seen`);
}

async function main() {
  for (const step of [loginCallStatus, notAllowed, upstreamTokenAndIdentity]) {
    try {
      await step();
    } catch (e) {
      check(`${step.name} completed without an exception`, false, e.stack ?? String(e));
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main();
