// DPoP (RFC 9449) between the official TypeScript MCP SDK's v2 client (@modelcontextprotocol/client:
// DpopSession, an OAuthClientProvider with dpop(), StreamableHTTPClientTransport) and
// `mcpauth gateway` with its embedded authorization server, in front of the SDK server in
// server.mjs. Run by interop/run-gateway, which starts the gateway and passes in the environment:
//
//   MCPAUTH_GATEWAY_URL     the gateway's MCP endpoint (the protected resource)
//   MCPAUTH_ISSUER          the embedded authorization server (the gateway's origin)
//   MCPAUTH_DPOP            the gateway's --dpop: "allow" (bearer tokens pass too) or "require"
//   MCPAUTH_DPOP_NONCE      "1" when the gateway runs with --dpop-nonce (RFC 9449 §8, §9)
//   MCPAUTH_USERNAME/PASSWORD, MCPAUTH_SCOPE, MCPAUTH_REDIRECT_URI
//
// Every request the SDK sends goes through a fetch wrapper that records what it carried (the
// Authorization scheme, the SHA-256 of its token, the DPoP proof's header and claims) and the
// answer; tokens are never printed.
//
//   (a) authorization code: 401 -> discovery (the authorization server advertises
//       dpop_signing_alg_values_supported) -> dynamic registration -> PKCE + resource ->
//       login and consent over HTTP -> the code exchanged with a DPoP proof (htm, htu, the
//       session's key) for token_type DPoP and a JWT with cnf.jkt = the key's thumbprint; then
//       initialize, tools/list, tools/call, every request with `Authorization: DPoP` and a fresh
//       proof (htm, htu, ath, unique jti); the upstream sees neither token nor proof
//   (b) refresh: the access token invalidated in the provider, the next tools/call gets 401, the
//       SDK refreshes with a DPoP proof by the same key (no new authorization request) and
//       retries with the new DPoP-bound token
//   (c) refusals, each beside a control that passes: the bound token as `Bearer`, as `DPoP`
//       without a proof, with a replayed proof, with another key's proof (all 401); the bound
//       refresh token with another key's proof and without a proof (refused; the right key
//       still refreshes)
//   (d) a client without DPoP: its bearer token passes with --dpop allow and is refused (401,
//       DPoP challenge) with --dpop require
//
//   (e) with --dpop-nonce: every answer of the gateway's origin carries a DPoP-Nonce, which the
//       SDK keeps; made stale, the code exchange is answered 400 use_dpop_nonce with a fresh
//       one and the SDK retries with it (RFC 9449 §8); every proof to the gateway carries a nonce
//       (the embedded server and the MCP endpoint share one origin and one nonce key); a proof
//       by the right key without a nonce, or with a made-up one, gets 401 use_dpop_nonce and a
//       DPoP-Nonce (§9)
//
// Not exercised because @modelcontextprotocol/client 2.4.0 does not implement them (both optional
// in RFC 9449): `dpop_jkt` in the authorization request (§10; the code is bound at /token only)
// and `dpop_bound_access_tokens` in its registration (§5.2).
//
// Prints one line per check and ends with "N passed, M failed"; exits 1 if anything failed.

import { createHash } from "node:crypto";
import { calculateJwkThumbprint } from "jose";
import {
  Client,
  DpopSession,
  OAuthError,
  StreamableHTTPClientTransport,
  UnauthorizedError,
  auth,
  refreshAuthorization,
} from "@modelcontextprotocol/client";
import { Checks, HeadlessProvider, env, jwtPart, text, verboseLog } from "./harness.mjs";

const URL_ = env("MCPAUTH_GATEWAY_URL");
const ISSUER = env("MCPAUTH_ISSUER");
const MODE = env("MCPAUTH_DPOP");
const USER = { username: env("MCPAUTH_USERNAME"), password: env("MCPAUTH_PASSWORD") };
const SCOPE = process.env.MCPAUTH_SCOPE ?? "";
const NONCE = process.env.MCPAUTH_DPOP_NONCE === "1";
if (!["allow", "require"].includes(MODE)) throw new Error(`MCPAUTH_DPOP must be allow or require, not ${MODE}`);

const FLAGS = `--dpop ${MODE}${NONCE ? " --dpop-nonce" : ""}`;
const checks = new Checks(`[${FLAGS}]`);
const check = checks.check.bind(checks);
const say = verboseLog("dpop");
const CLIENT_INFO = { name: "mcpauth-gateway-dpop-interop", version: "1.0.0" };

/** base64url(SHA-256(token)): the proof's `ath` for a token (RFC 9449 §4.2). */
const tokenHash = (token) => createHash("sha256").update(token, "ascii").digest("base64url");

/** The OAuthClientProvider of harness.mjs with DPoP: dpop() returns one DpopSession. */
class DpopProvider extends HeadlessProvider {
  constructor(session) {
    super({ redirectUri: env("MCPAUTH_REDIRECT_URI"), user: USER, scope: SCOPE, clientName: "TypeScript SDK v2 with DPoP", log: say });
    this.session = session;
  }
  dpop() {
    return this.session;
  }
}

/** fetch, recording every request: method, URL without query, Authorization scheme and the
 * SHA-256 of its token, the DPoP proof's header and claims, a form's grant_type, and the
 * answer's status, WWW-Authenticate and (token endpoint) token_type. */
class Wire {
  entries = [];
  fetch = async (input, init = {}) => {
    const req = input instanceof Request ? input : undefined;
    const url = new URL(req ? req.url : String(input));
    const headers = new Headers(init.headers ?? req?.headers);
    const e = { method: (init.method ?? req?.method ?? "GET").toUpperCase(), url: `${url.origin}${url.pathname}` };
    const authorization = headers.get("authorization");
    if (authorization) {
      const [scheme, token = ""] = authorization.split(" ");
      Object.assign(e, { scheme, tokenHash: tokenHash(token) });
    }
    const proof = headers.get("dpop");
    if (proof) e.proof = { header: jwtPart(proof, 0), claims: jwtPart(proof, 1) };
    if (/x-www-form-urlencoded/i.test(headers.get("content-type") ?? "")) {
      e.grantType = new URLSearchParams(String(init.body ?? "")).get("grant_type");
    }
    const resp = await fetch(input, init);
    e.status = resp.status;
    e.wwwAuthenticate = resp.headers.get("www-authenticate");
    e.dpopNonce = resp.headers.get("dpop-nonce");
    if (e.grantType) {
      const body = await resp.clone().json().catch(() => ({}));
      Object.assign(e, { tokenType: body.token_type, error: body.error });
    }
    say(`${e.method} ${e.url} ${e.scheme ?? "-"}${e.proof ? "+proof" : ""}${e.grantType ? ` ${e.grantType}` : ""} -> ${resp.status}`);
    this.entries.push(e);
    return resp;
  };
  mark() {
    return this.entries.length;
  }
  since(mark) {
    return this.entries.slice(mark);
  }
}

/** What is wrong with the proof `entry` carried for `{htm, htu, token}` (token: the access
 * token it must be bound to by `ath`, or none at the token endpoint), by `session`'s key. */
async function proofProblems(entry, { htm, htu, token }, session) {
  const p = entry?.proof;
  if (!p) return ["no DPoP header"];
  const problems = [];
  if (p.header.typ !== "dpop+jwt") problems.push(`typ ${p.header.typ}`);
  if (p.header.alg !== session.alg) problems.push(`alg ${p.header.alg}`);
  if (!p.header.jwk || (await calculateJwkThumbprint(p.header.jwk, "sha256")) !== session.thumbprint) problems.push("jwk is not the session's key");
  if (p.claims.htm !== htm) problems.push(`htm ${p.claims.htm}`);
  if (p.claims.htu !== htu) problems.push(`htu ${p.claims.htu}`);
  if (typeof p.claims.jti !== "string" || p.claims.jti.length < 16) problems.push("no jti");
  if (Math.abs(p.claims.iat - Date.now() / 1000) > 60) problems.push(`iat ${p.claims.iat}`);
  if (token ? p.claims.ath !== tokenHash(token) : "ath" in p.claims) problems.push(token ? "ath is not the token's hash" : "ath at the token endpoint");
  return problems;
}

/** The DPoP challenge in a WWW-Authenticate value (RFC 9449 §7.1): {error, description, algs},
 * or undefined when there is none. */
function dpopChallenge(www) {
  const m = (www ?? "").match(/(?:^|,)\s*DPoP\s+(?=[\w-]+=)(.*)$/i);
  if (!m) return undefined;
  const param = (name) => m[1].match(new RegExp(`\\b${name}="([^"]*)"`))?.[1];
  return { error: param("error"), description: param("error_description"), algs: param("algs")?.split(" ") ?? [] };
}

/** A refusal for a check's detail: the status and the DPoP challenge's error, never a token. */
function refusal({ status, www }) {
  const ch = dpopChallenge(www);
  return `HTTP ${status}, ${ch ? `DPoP error=${ch.error}${ch.description ? `: ${ch.description}` : ""}` : `no DPoP challenge: ${www}`}`;
}

/** An initialize POSTed to the gateway by hand with `headers`: {status, www}. */
async function rawInitialize(headers) {
  const resp = await fetch(URL_, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: CLIENT_INFO },
    }),
  });
  await resp.body?.cancel();
  // RFC 9449 §9: the newest nonce, for the next proofs the harness builds.
  state.session?.observeNonce(resp, URL_);
  return { status: resp.status, www: resp.headers.get("www-authenticate"), nonce: resp.headers.get("dpop-nonce") };
}

const state = {}; // shared by the steps: session, provider, wire, client, metadata

/** (a) The authorization-code flow with DPoP, then initialize, tools/list and tools/call. */
async function authorizationCode() {
  const session = await DpopSession.create();
  const provider = new DpopProvider(session);
  const wire = new Wire();
  Object.assign(state, { session, provider, wire });
  const open = () => new StreamableHTTPClientTransport(new URL(URL_), { authProvider: provider, fetch: wire.fetch });

  let unauthorized = false;
  const first = open();
  try {
    await new Client(CLIENT_INFO).connect(first);
  } catch (e) {
    if (e instanceof UnauthorizedError) unauthorized = true;
    else throw e;
  }
  const metadata = provider.discoveryState()?.authorizationServerMetadata ?? {};
  state.metadata = metadata;
  const algs = metadata.dpop_signing_alg_values_supported ?? [];
  check("(a) the authorization server metadata advertises DPoP with the SDK's algorithm (RFC 9449 §5.1)",
    Array.isArray(algs) && algs.includes(session.alg), `dpop_signing_alg_values_supported=${JSON.stringify(algs)}, SDK ${session.alg}`);
  const challenge = wire.entries.find((e) => e.url === URL_ && e.status === 401)?.wwwAuthenticate ?? "";
  if (MODE === "require") {
    check("(a) no token: the 401 offers the DPoP scheme with its algs (RFC 9449 §7.1)",
      !!dpopChallenge(challenge)?.algs.includes(session.alg), challenge);
  }
  const authUrl = provider.redirects[0];
  check("(a) SDK v2: 401 -> discovery -> dynamic registration -> authorization request with PKCE S256 and resource",
    unauthorized && provider.redirects.length === 1 && !!provider.clientInformation()?.client_id &&
      authUrl.origin === ISSUER && authUrl.searchParams.get("code_challenge_method") === "S256" &&
      authUrl.searchParams.get("resource") === URL_,
    authUrl ? `${authUrl.origin}${authUrl.pathname} resource=${authUrl.searchParams.get("resource")}` : "no redirect");
  const r = provider.response ?? {};
  check("(a) login + consent over HTTP answered with code, the same state and iss (RFC 9207)",
    !!r.code && r.state === provider._state && r.iss === ISSUER, `iss=${r.iss}`);

  // Every answer of the gateway's origin carried a DPoP-Nonce, so the SDK already holds one: make
  // it stale to see the token endpoint's challenge and the SDK's retry.
  if (NONCE) session.rememberNonce(ISSUER, "a-stale-nonce");
  const mark = wire.mark();
  await first.finishAuth(provider.callback.searchParams);
  const exchanges = wire.since(mark).filter((e) => e.grantType === "authorization_code");
  const exchange = exchanges.at(-1);
  if (NONCE) {
    const [challenged] = exchanges;
    check("(e) the code exchange with a stale nonce got 400 use_dpop_nonce with a DPoP-Nonce, and the SDK retried with that nonce (RFC 9449 §8)",
      exchanges.length === 2 && challenged.status === 400 && challenged.error === "use_dpop_nonce" && !!challenged.dpopNonce &&
        exchange.proof?.claims.nonce === challenged.dpopNonce,
      exchanges.map((e) => `HTTP ${e.status} ${e.error ?? ""} nonce ${e.proof?.claims.nonce ? "sent" : "none"}`).join(" -> "));
  }
  const problems = await proofProblems(exchange, { htm: "POST", htu: metadata.token_endpoint }, session);
  check("(a) the code exchange carried a DPoP proof by the session's key (typ, alg, jwk, htm, htu, jti, iat; no ath)",
    exchange?.status === 200 && problems.length === 0,
    exchange ? [`HTTP ${exchange.status}`, ...problems].join("; ") : "no token request seen");
  const tokens = provider.tokens() ?? {};
  const claims = tokens.access_token ? jwtPart(tokens.access_token, 1) : {};
  check("(a) token response token_type DPoP (RFC 9449 §5), saved by the SDK as such",
    exchange?.tokenType === "DPoP" && tokens.token_type?.toLowerCase() === "dpop",
    `answered ${exchange?.tokenType}, saved ${tokens.token_type}`);
  check("(a) the access token is bound to the key: cnf.jkt = the session's thumbprint, aud = the gateway URL",
    claims.cnf?.jkt === session.thumbprint && [claims.aud].flat().includes(URL_) && claims.iss === ISSUER,
    `cnf.jkt ${claims.cnf?.jkt === session.thumbprint ? "matches" : `= ${claims.cnf?.jkt}`}, aud=${JSON.stringify(claims.aud)}`);

  const before = wire.mark();
  const client = new Client(CLIENT_INFO);
  await client.connect(open());
  state.client = client;
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  check("(a) tools/list through the gateway lists the upstream's tools",
    ["add", "echo", "upstream_headers"].every((t) => tools.includes(t)), tools.join(","));
  const echo = text(await client.callTool({ name: "echo", arguments: { text: "hello with DPoP" } }));
  check("(a) tools/call echo through the gateway", echo === "echo: hello with DPoP", echo);
  const seen = JSON.parse(text(await client.callTool({ name: "upstream_headers", arguments: {} })));
  check("(a) the upstream sees neither the token nor the DPoP proof",
    seen.authorization === null && seen.dpop === null && seen.cookie === null, JSON.stringify(seen));
  await requestsCarriedProofs(wire.since(before), tokens.access_token, "(a)", 3);
}

/** At least `min` requests in `entries` to the gateway, each with `Authorization: DPoP` and
 * `token`, a valid proof for its method and the gateway URL (ath = the token's hash), every jti
 * new; all answered 2xx. */
async function requestsCarriedProofs(entries, token, label, min) {
  const toGateway = entries.filter((e) => e.url === URL_);
  const problems = [];
  const jtis = new Set();
  for (const e of toGateway) {
    const p = await proofProblems(e, { htm: e.method, htu: URL_, token }, state.session);
    if (e.scheme !== "DPoP") p.unshift(`scheme ${e.scheme ?? "none"}`);
    if (NONCE && !e.proof?.claims.nonce) p.push("no nonce");
    if (e.tokenHash !== tokenHash(token)) p.push("another token");
    if (e.proof && jtis.has(e.proof.claims.jti)) p.push("jti reused");
    jtis.add(e.proof?.claims.jti);
    if (e.status < 200 || e.status > 299) p.push(`HTTP ${e.status}`);
    if (p.length) problems.push(`${e.method}: ${p.join(", ")}`);
  }
  const methods = toGateway.map((e) => `${e.method} ${e.status}`).join(", ");
  check(`${label} every request to the gateway carried Authorization: DPoP and a fresh proof (htm, htu, ath, unique jti${NONCE ? ", nonce" : ""})`,
    toGateway.length >= min && problems.length === 0, problems.length ? problems.join("; ") : `${toGateway.length} requests: ${methods}`);
}

/** (b) The SDK refreshes with DPoP when the gateway refuses its access token. */
async function refresh() {
  const { provider, wire, client, session } = state;
  if (!client) throw new Error("(a) did not connect");
  const old = provider.tokens();
  check("(b) the token response included a refresh token", !!old.refresh_token);
  // What an expired or revoked token looks like to the client: the gateway answers 401.
  provider.saveTokens({ ...old, access_token: "invalidated-by-the-harness" });
  const mark = wire.mark();
  const echo = text(await client.callTool({ name: "echo", arguments: { text: "after the refresh" } }));
  const seen = wire.since(mark);
  const refused = seen.find((e) => e.url === URL_ && e.status === 401);
  const grant = seen.find((e) => e.grantType === "refresh_token");
  const problems = await proofProblems(grant, { htm: "POST", htu: state.metadata.token_endpoint }, session);
  check("(b) the gateway refused the invalidated token with 401 and the SDK refreshed with a DPoP proof by the same key (no new authorization request)",
    !!refused && grant?.status === 200 && problems.length === 0 && provider.redirects.length === 1,
    grant
      ? [`gateway ${refused ? "401" : "never refused"}, refresh HTTP ${grant.status}`, ...problems].join("; ")
      : `no refresh request; requests: ${seen.map((e) => `${e.method} ${e.url} ${e.status}`).join(", ")}`);
  const fresh = provider.tokens();
  const claims = fresh.access_token?.includes(".") ? jwtPart(fresh.access_token, 1) : {};
  check("(b) the refreshed access token is new, token_type DPoP, cnf.jkt = the same key",
    fresh.access_token !== old.access_token && grant?.tokenType === "DPoP" && fresh.token_type?.toLowerCase() === "dpop" &&
      claims.cnf?.jkt === session.thumbprint,
    `token_type ${fresh.token_type}, cnf.jkt ${claims.cnf?.jkt === session.thumbprint ? "matches" : `= ${claims.cnf?.jkt}`}`);
  check("(b) tools/call with the refreshed token", echo === "echo: after the refresh", echo);
  const retried = seen.filter((e) => e.url === URL_ && e.status !== 401);
  await requestsCarriedProofs(retried, fresh.access_token, "(b)", 1);
}

/** (c) What the gateway and its authorization server refuse, each beside a control. */
async function refusals() {
  const { provider, session, metadata } = state;
  const token = provider.tokens()?.access_token;
  if (!token?.includes(".")) throw new Error("no DPoP-bound access token from (a)/(b)");
  const proof = (key = session) => key.buildProof({ htm: "POST", htu: URL_, accessToken: token });

  const controlProof = await proof();
  const control = await rawInitialize({ authorization: `DPoP ${token}`, dpop: controlProof });
  check("(c) control: the bound token with the DPoP scheme and a fresh proof initializes (200)", control.status === 200, `HTTP ${control.status}`);
  const bearer = await rawInitialize({ authorization: `Bearer ${token}` });
  check("(c) the DPoP-bound token sent as Bearer is refused: 401 with a DPoP challenge (RFC 9449 §7.2)",
    bearer.status === 401 && !!dpopChallenge(bearer.www), refusal(bearer));
  const noProof = await rawInitialize({ authorization: `DPoP ${token}` });
  check("(c) the bound token with the DPoP scheme but no proof is refused: 401 invalid_dpop_proof (RFC 9449 §7.1)",
    noProof.status === 401 && dpopChallenge(noProof.www)?.error === "invalid_dpop_proof", refusal(noProof));
  const replay = await rawInitialize({ authorization: `DPoP ${token}`, dpop: controlProof });
  check("(c) the control's proof replayed is refused: 401 invalid_dpop_proof (RFC 9449 §11.1)",
    replay.status === 401 && dpopChallenge(replay.www)?.error === "invalid_dpop_proof", refusal(replay));
  const other = await DpopSession.create();
  if (NONCE) {
    other.rememberNonce(URL_, session.nonceFor(URL_));
    // The session's key with no remembered nonce, and a made-up nonce (RFC 9449 §9).
    const forgetful = await DpopSession.create({ keyPair: session.keyPair });
    for (const [what, dpop] of [
      ["without a nonce", await forgetful.buildProof({ htm: "POST", htu: URL_, accessToken: token })],
      ["with a made-up nonce", await forgetful.buildProof({ htm: "POST", htu: URL_, accessToken: token, nonce: "made-up" })],
    ]) {
      const r = await rawInitialize({ authorization: `DPoP ${token}`, dpop });
      check(`(e) a proof by the right key ${what} is refused: 401 use_dpop_nonce with a fresh DPoP-Nonce (RFC 9449 §9)`,
        r.status === 401 && dpopChallenge(r.www)?.error === "use_dpop_nonce" && !!r.nonce, refusal(r));
    }
  }
  const stolen = await rawInitialize({ authorization: `DPoP ${token}`, dpop: await proof(other) });
  check("(c) a proof by another key is refused: 401 (RFC 9449 §4.3 step 12)",
    stolen.status === 401 && !!dpopChallenge(stolen.www), refusal(stolen));

  // RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
  const refreshWith = (dpop) =>
    refreshAuthorization(ISSUER, {
      metadata,
      clientInformation: provider.clientInformation(),
      refreshToken: provider.tokens().refresh_token,
      resource: URL_,
      dpop,
    }).then(
      (t) => ({ ok: true, tokenType: t.token_type, jkt: t.access_token?.includes(".") ? jwtPart(t.access_token, 1).cnf?.jkt : undefined }),
      (e) => ({ ok: false, code: e instanceof OAuthError ? e.code : String(e) }),
    );
  const otherKey = await refreshWith(other);
  check("(c) the bound refresh token with another key's proof is refused (RFC 9449 §5)",
    !otherKey.ok && ["invalid_dpop_proof", "invalid_grant"].includes(otherKey.code), otherKey.ok ? "accepted" : otherKey.code);
  const without = await refreshWith(undefined);
  check("(c) the bound refresh token without a proof is refused (RFC 9449 §5)",
    !without.ok && ["invalid_dpop_proof", "invalid_grant"].includes(without.code), without.ok ? `accepted, token_type ${without.tokenType}` : without.code);
  const right = await refreshWith(session);
  check("(c) control: the same refresh token with the session's key still refreshes (token_type DPoP, same cnf.jkt)",
    right.ok && right.tokenType === "DPoP" && right.jkt === session.thumbprint, right.ok ? `token_type ${right.tokenType}` : right.code);
}

/** (d) A v2 client without DPoP: the SDK's auth() gets a bearer token; the gateway's --dpop
 * decides whether it passes. */
async function bearerClient() {
  const provider = new HeadlessProvider({ redirectUri: env("MCPAUTH_REDIRECT_URI"), user: USER, scope: SCOPE, clientName: "TypeScript SDK v2 without DPoP", log: say });
  const first = await auth(provider, { serverUrl: URL_ });
  const second = first === "REDIRECT" && (await auth(provider, {
    serverUrl: URL_,
    authorizationCode: provider.response?.code,
    iss: provider.response?.iss,
  }));
  const tokens = provider.tokens() ?? {};
  check("(d) SDK v2 auth() without dpop(): REDIRECT, then AUTHORIZED with token_type Bearer",
    second === "AUTHORIZED" && tokens.token_type?.toLowerCase() === "bearer", `${first} then ${second}, token_type ${tokens.token_type}`);
  const r = await rawInitialize({ authorization: `Bearer ${tokens.access_token}` });
  if (MODE === "allow") {
    check("(d) --dpop allow: the unbound bearer token initializes (200)", r.status === 200, `HTTP ${r.status}`);
  } else {
    check("(d) --dpop require: the unbound bearer token is refused: 401 with a DPoP challenge",
      r.status === 401 && !!dpopChallenge(r.www), refusal(r));
  }
}

async function main() {
  console.log(`mcpauth gateway ${FLAGS} at ${URL_} (embedded authorization server ${ISSUER}): TypeScript SDK v2 client with DPoP`);
  await checks.run([
    ["(a) authorization code with DPoP", authorizationCode],
    ["(b) refresh with DPoP", refresh],
    ["(c) refusals", refusals],
    ["(d) client without DPoP", bearerClient],
  ]);
}

main().catch((e) => {
  console.error(e);
  console.log(`${checks.passed} passed, ${checks.failed + 1} failed`);
  process.exit(1);
});
