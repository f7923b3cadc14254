// The official TypeScript SDK (@modelcontextprotocol/sdk) as the OAuth client AND the protected
// MCP server, with `mcpauth serve` as the authorization server in between:
//
//   SDK Client + StreamableHTTPClientTransport + an OAuthClientProvider whose
//   redirectToAuthorization() is a headless user (interop/lib/http-login.mjs logs in and
//   consents through mcpauth's pages over HTTP)
//     -> 401 from the SDK server -> RFC 9728 discovery -> RFC 8414 metadata of mcpauth serve
//     -> registration -> /authorize (PKCE S256, resource) -> login -> consent -> code + state + iss
//     -> transport.finishAuth(code) -> /token -> tools/call whoami on the SDK server, whose
//        requireBearerAuth verifies the token at mcpauth's /introspect
//     -> auth() again: refresh_token grant with rotation -> tools/call with the new token
//
// Three client registrations: dynamic (RFC 7591, the SDK's default), a pre-registered public
// client, and a pre-registered confidential client (client_secret_basic). Run by interop/run,
// which starts mcpauth serve and passes everything in the environment. Prints one line per check
// and ends with "N passed, M failed"; exits 1 if anything failed.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError, auth } from "@modelcontextprotocol/sdk/client/auth.js";
import { loginAndConsent } from "./lib/http-login.mjs";
import { startResourceServer } from "./lib/ts-resource-server.mjs";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through interop/run)`);
  return v;
};
const ISSUER = env("MCPAUTH_ISSUER");
const USERNAME = env("MCPAUTH_USERNAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const SCOPE = env("MCPAUTH_SCOPE");
const REDIRECT_URI = env("MCPAUTH_REDIRECT_URI");
const VERBOSE = process.env.MCPAUTH_VERBOSE === "1";

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`  ${ok ? "PASS" : "FAIL"}  ${name}${detail ? `  (${detail})` : ""}`);
  return ok;
}
const say = (m) => VERBOSE && console.error(`    [sdk-client] ${m}`);

function jwtPart(token, i) {
  return JSON.parse(Buffer.from(token.split(".")[i], "base64url").toString("utf8"));
}

/** An in-memory OAuthClientProvider with a headless browser. */
class HeadlessProvider {
  constructor({ clientInformation } = {}) {
    this._clientInformation = clientInformation;
    this._tokens = undefined;
    this._verifier = undefined;
    this._state = undefined;
    this.authorizationCode = undefined;
    this.redirects = [];
    this.registered = false;
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: "TypeScript SDK interop client",
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      scope: SCOPE,
    };
  }
  state() {
    this._state = crypto.randomUUID();
    return this._state;
  }
  clientInformation() {
    return this._clientInformation;
  }
  saveClientInformation(info) {
    if (!this._clientInformation) this.registered = true;
    this._clientInformation = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  async redirectToAuthorization(url) {
    this.redirects.push(url);
    say(`redirectToAuthorization ${url.origin}${url.pathname}`);
    const location = new URL(await loginAndConsent(url.href, { username: USERNAME, password: PASSWORD, log: say }));
    const p = location.searchParams;
    if (`${location.origin}${location.pathname}` !== REDIRECT_URI) throw new Error(`redirected to ${location.href}`);
    if (p.get("error")) throw new Error(`authorization error: ${p.get("error")} ${p.get("error_description") ?? ""}`);
    // RFC 9207: the SDK does not check iss itself, so the redirect handler does.
    this.authorizationResponse = {
      code: p.getAll("code"),
      state: p.getAll("state"),
      iss: p.getAll("iss"),
    };
    this.authorizationCode = p.get("code");
  }
}

async function connect(url, provider) {
  const client = new Client({ name: "mcpauth-interop", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await client.connect(transport);
  return { client, transport };
}

async function whoami(client) {
  const result = await client.callTool({ name: "whoami", arguments: {} });
  return JSON.parse(result.content[0].text);
}

async function flow(label, server, provider, expectClientId) {
  console.log(`${label}:`);
  // 1. The first connection gets 401; the SDK discovers, registers if needed and redirects.
  let unauthorized = false;
  try {
    const { client } = await connect(server.url, provider);
    await client.close();
  } catch (e) {
    if (e instanceof UnauthorizedError) unauthorized = true;
    else throw e;
  }
  check(`${label}: the SDK client got 401, discovered mcpauth serve and started the code flow`, unauthorized && provider.redirects.length === 1);
  const authUrl = provider.redirects[0];
  check(
    `${label}: authorization request has PKCE S256, state and resource`,
    authUrl?.searchParams.get("code_challenge_method") === "S256" &&
      !!authUrl.searchParams.get("code_challenge") &&
      authUrl.searchParams.get("resource") === server.url &&
      authUrl.searchParams.get("state") === provider._state,
    authUrl ? `resource=${authUrl.searchParams.get("resource")}` : "no redirect",
  );
  if (expectClientId === "dynamic") {
    check(`${label}: registered dynamically at mcpauth's /register (RFC 7591)`, provider.registered && !!provider._clientInformation?.client_id,
      `client_id ${provider._clientInformation?.client_id}`);
  }
  const r = provider.authorizationResponse ?? { code: [], state: [], iss: [] };
  check(`${label}: login + consent redirected back with one code, the same state and iss = issuer (RFC 9207)`,
    r.code.length === 1 && r.state.length === 1 && r.state[0] === provider._state && r.iss.length === 1 && r.iss[0] === ISSUER,
    `iss=${r.iss.join(",")}`);

  // 2. Code exchange by the SDK (finishAuth -> auth(authorizationCode) -> /token).
  const t0 = new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider });
  await t0.finishAuth(provider.authorizationCode);
  const tokens = provider.tokens();
  const header = tokens?.access_token ? jwtPart(tokens.access_token, 0) : {};
  const claims = tokens?.access_token ? jwtPart(tokens.access_token, 1) : {};
  check(`${label}: tokens from /token: an RFC 9068 JWT (typ at+jwt) for the resource, and a refresh token`,
    tokens?.token_type?.toLowerCase() === "bearer" && header.typ === "at+jwt" && claims.iss === ISSUER &&
      [claims.aud].flat().includes(server.url) && !!tokens.refresh_token,
    `aud=${JSON.stringify(claims.aud)} scope=${claims.scope}`);

  // 3. A protected tool call, verified by the SDK's requireBearerAuth through /introspect.
  const before = server.verifier.introspections;
  const { client } = await connect(server.url, provider);
  const who = await whoami(client);
  await client.close();
  check(`${label}: tools/call whoami on the SDK server, token verified at mcpauth's /introspect`,
    server.verifier.introspections > before && who.resource === server.url && who.iss === ISSUER &&
      who.sub === claims.sub && who.clientId === provider._clientInformation.client_id &&
      (expectClientId === "dynamic" || who.clientId === expectClientId) && who.scopes?.includes(SCOPE),
    `client ${who.clientId}, scopes ${who.scopes?.join(" ")}`);

  // 4. Refresh through the SDK's auth(): rotation gives a new refresh token and access token.
  const old = provider.tokens();
  const result = await auth(provider, { serverUrl: server.url });
  const fresh = provider.tokens();
  check(`${label}: auth() refreshed (refresh_token grant) with rotation`,
    result === "AUTHORIZED" && fresh.access_token !== old.access_token && !!fresh.refresh_token &&
      fresh.refresh_token !== old.refresh_token && provider.redirects.length === 1);
  const { client: c2 } = await connect(server.url, provider);
  const who2 = await whoami(c2);
  await c2.close();
  check(`${label}: tools/call with the refreshed token`, who2.sub === claims.sub && who2.resource === server.url);
}

async function main() {
  const server = await startResourceServer({
    port: Number(env("MCPAUTH_RESOURCE_PORT")),
    issuer: ISSUER,
    clientId: env("MCPAUTH_INTROSPECT_CLIENT_ID"),
    clientSecret: env("MCPAUTH_INTROSPECT_CLIENT_SECRET"),
    scopes: [SCOPE],
  });
  console.log(`TypeScript SDK server (requireBearerAuth + /introspect) at ${server.url}; mcpauth serve at ${ISSUER}`);
  try {
    // The resource server's side, independent of any client.
    const noToken = await fetch(server.url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    const challenge = noToken.headers.get("www-authenticate") ?? "";
    check("SDK server: 401 without a token, with resource_metadata in WWW-Authenticate",
      noToken.status === 401 && challenge.includes("resource_metadata="), challenge);
    const anon = await fetch(`${ISSUER}/introspect`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "token=x",
    });
    check("mcpauth /introspect refuses a caller without client authentication (RFC 7662 §2.1)", anon.status === 401, `HTTP ${anon.status}`);

    const steps = [
      ["dynamic registration", new HeadlessProvider(), "dynamic"],
      ["pre-registered public client", new HeadlessProvider({ clientInformation: { client_id: env("MCPAUTH_PUBLIC_CLIENT_ID") } }),
        env("MCPAUTH_PUBLIC_CLIENT_ID")],
      ["pre-registered confidential client (client_secret_basic)",
        new HeadlessProvider({ clientInformation: { client_id: env("MCPAUTH_CONFIDENTIAL_CLIENT_ID"), client_secret: env("MCPAUTH_CONFIDENTIAL_CLIENT_SECRET") } }),
        env("MCPAUTH_CONFIDENTIAL_CLIENT_ID")],
    ];
    for (const [label, provider, expect] of steps) {
      try {
        await flow(label, server, provider, expect);
      } catch (e) {
        check(`${label}: completed without an exception`, false, e.stack ?? String(e));
      }
    }
  } finally {
    await server.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
