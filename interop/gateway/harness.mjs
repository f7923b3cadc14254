// Shared by the harnesses interop/run-gateway runs (clients.mjs, dpop.mjs): the environment it
// passes, the "  PASS  …"/"  FAIL  …" lines with the closing "N passed, M failed", and an
// in-memory OAuthClientProvider whose browser is loginAndConsent() over HTTP. Nothing here
// depends on an SDK version: the provider is a plain object both the v1 SDK
// (@modelcontextprotocol/sdk) and the v2 client (@modelcontextprotocol/client) accept.

import { loginAndConsent } from "./lib/http-login.mjs";

/** The environment variable `name`; throws when it is unset or empty. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through interop/run-gateway)`);
  return v;
}

export const VERBOSE = process.env.MCPAUTH_VERBOSE === "1";

/** A logger for MCPAUTH_VERBOSE=1 (stderr, so the check lines stay alone on stdout). */
export const verboseLog = (label) => (m) => VERBOSE && console.error(`    [${label}] ${m}`);

/** The JSON of part `i` (0 header, 1 payload) of a compact JWS. */
export const jwtPart = (token, i) => JSON.parse(Buffer.from(token.split(".")[i], "base64url").toString("utf8"));

/** The text of a tools/call result's first content block. */
export const text = (result) => result?.content?.[0]?.text;

export const withTimeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${ms / 1000} s`)), ms).unref())]);

/** Counts the checks, prints one line each, and ends the run with the summary line. */
export class Checks {
  constructor(tag) {
    this.tag = tag;
    this.passed = 0;
    this.failed = 0;
  }

  check(name, ok, detail = "") {
    if (ok) this.passed++;
    else this.failed++;
    console.log(`  ${ok ? "PASS" : "FAIL"}  ${this.tag} ${name}${detail ? `  (${detail})` : ""}`);
    return !!ok;
  }

  /** Runs `steps` ([label, async fn]) in order (an exception fails that step, the next ones
   * still run), prints "N passed, M failed" and exits 1 unless everything passed. */
  async run(steps) {
    for (const [label, step] of steps) {
      try {
        await step();
      } catch (e) {
        this.check(`${label}: completed without an exception`, false, e.stack ?? String(e));
      }
    }
    console.log(`${this.passed} passed, ${this.failed} failed`);
    process.exit(this.failed === 0 && this.passed > 0 ? 0 : 1);
  }
}

/** An in-memory OAuthClientProvider (dynamic registration, PKCE, public client) whose
 * redirectToAuthorization() logs in and consents over HTTP as `user` and keeps the redirect
 * back: `callback` (the URL), `response` ({code, state, iss}). */
export class HeadlessProvider {
  /** @param {{redirectUri: string, user: {username: string, password: string}, scope?: string,
   *           clientName: string, log?: (m: string) => void}} opts */
  constructor({ redirectUri, user, scope = "", clientName, log = () => {} }) {
    this.redirectUri = redirectUri;
    this.user = user;
    this.scope = scope;
    this.clientName = clientName;
    this.log = log;
    this.redirects = [];
  }
  get redirectUrl() {
    return this.redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this.redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      ...(this.scope ? { scope: this.scope } : {}),
    };
  }
  state() {
    return (this._state = crypto.randomUUID());
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(t) {
    this._tokens = t;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  saveDiscoveryState(s) {
    this._discovery = s;
  }
  discoveryState() {
    return this._discovery;
  }
  async redirectToAuthorization(url) {
    this.redirects.push(url);
    this.log(`redirectToAuthorization ${url.origin}${url.pathname}`);
    const location = new URL(await loginAndConsent(url.href, { ...this.user, log: this.log }));
    const p = location.searchParams;
    if (p.get("error")) throw new Error(`authorization error: ${p.get("error")} ${p.get("error_description") ?? ""}`);
    this.callback = location;
    this.response = { code: p.get("code"), state: p.get("state"), iss: p.get("iss") };
  }
}
