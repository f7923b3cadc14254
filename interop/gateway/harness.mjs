// Shared by the harnesses interop/run-gateway runs (clients.mjs, dpop.mjs): the checks and
// helpers of lib/checks.mjs (the environment the runner passes, the "  PASS  …"/"  FAIL  …"
// lines with the closing "N passed, M failed"), and an in-memory OAuthClientProvider whose browser is loginAndConsent() over HTTP. Nothing here
// depends on an SDK version: the provider is a plain object both the v1 SDK
// (@modelcontextprotocol/sdk) and the v2 client (@modelcontextprotocol/client) accept.

import { loginAndConsent } from "./lib/http-login.mjs";

export { Checks, VERBOSE, env, jwtPart, text, verboseLog, withTimeout } from "./lib/checks.mjs";

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
