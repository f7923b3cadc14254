// Makes a pool of fresh refresh tokens for the refresh_token benchmark, through the real
// authorization-code flow over HTTP (PKCE S256, resource, client_secret_basic): the first flow
// signs in (and consents, for mcpauth) with interop/lib/http-login.mjs; the session cookie and the
// remembered consent then let every further /authorize redirect at once with a code, which is
// exchanged at /token. Each token starts its own family, so spending one in the benchmark never
// revokes another.
//
//   node refresh-pool.mjs OUT_FILE COUNT
//   env: BENCH_ISSUER BENCH_CLIENT_ID BENCH_CLIENT_SECRET BENCH_REDIRECT_URI BENCH_RESOURCE
//        BENCH_SCOPE BENCH_USERNAME BENCH_PASSWORD [BENCH_CONCURRENCY=16]
//
// Writes COUNT tokens, one per line (URL-encoded, ready for a form body), and prints the rate.

import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { CookieJar, loginAndConsent } from "../lib/http-login.mjs";

const [out, countArg] = process.argv.slice(2);
const COUNT = Number(countArg);
const e = process.env;
const CONCURRENCY = Number(e.BENCH_CONCURRENCY ?? 16);
const meta = await (await fetch(`${e.BENCH_ISSUER}/.well-known/oauth-authorization-server`)).json();
const basic = "Basic " + Buffer.from(`${encodeURIComponent(e.BENCH_CLIENT_ID)}:${encodeURIComponent(e.BENCH_CLIENT_SECRET)}`).toString("base64");
const jar = new CookieJar();

async function oneToken() {
  const verifier = randomBytes(32).toString("base64url");
  const state = randomBytes(12).toString("base64url");
  const url = new URL(meta.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: "code",
    client_id: e.BENCH_CLIENT_ID,
    redirect_uri: e.BENCH_REDIRECT_URI,
    scope: e.BENCH_SCOPE,
    state,
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    resource: e.BENCH_RESOURCE,
  })) url.searchParams.set(k, v);
  const back = new URL(await loginAndConsent(url.href, { username: e.BENCH_USERNAME, password: e.BENCH_PASSWORD, jar }));
  const code = back.searchParams.get("code");
  if (!code || back.searchParams.get("state") !== state) throw new Error(`bad redirect ${back.href}`);
  const resp = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: e.BENCH_REDIRECT_URI,
      code_verifier: verifier,
      resource: e.BENCH_RESOURCE,
    }).toString(),
  });
  const body = await resp.json();
  if (resp.status !== 200 || !body.refresh_token) throw new Error(`token: HTTP ${resp.status} ${JSON.stringify(body)}`);
  return body.refresh_token;
}

const started = performance.now();
const tokens = [await oneToken()]; // signs in once; the rest reuse the session
let next = 1;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < COUNT) {
      next++;
      tokens.push(await oneToken());
    }
  }),
);
const secs = (performance.now() - started) / 1000;
if (new Set(tokens).size !== COUNT) throw new Error(`expected ${COUNT} distinct tokens, got ${new Set(tokens).size}`);
writeFileSync(out, tokens.map(encodeURIComponent).join("\n") + "\n");
console.error(`    ${COUNT} refresh tokens by the code flow in ${secs.toFixed(1)} s (${Math.round(COUNT / secs)}/s)`);
