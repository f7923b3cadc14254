// An upstream OpenID Connect provider for the federation interop (interop/run-federation,
// conformance/run-authorization --with-idp): oidc-provider (npm, panva/node-oidc-provider) with
// real interactions, unlike the benchmark's automatic ones (bench/oidc-provider-server.mjs):
//
//   - issuer http://127.0.0.1:<IDP_PORT>; ID tokens signed with ES256 (a fresh P-256 key)
//   - one confidential client for mcpauth: client_secret_basic, the redirect URIs given, the
//     authorization code flow only, PKCE (S256) required for it (RFC 7636; OAuth 2.1 §4.1.1)
//   - its own login page (a form: e-mail address + password, checked against the accounts below)
//     and its own consent page (Continue / Cancel), both at /interaction/<uid>
//   - accounts alice@example.com and mallory@other.org (both email_verified), claims email,
//     email_verified (scope email) and name (scope profile), OpenID Connect Core §5.4
//
// Environment: IDP_PORT, IDP_CLIENT_ID, IDP_CLIENT_SECRET_FILE (the secret, one line),
// IDP_REDIRECT_URIS (space-separated), IDP_PASSWORD (every account's password). Prints
// "issuer: URL" on stderr when it listens; stops on SIGTERM/SIGINT.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { generateKeyPairSync, randomBytes, timingSafeEqual } from "node:crypto";
import Provider from "oidc-provider";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const PORT = Number(env("IDP_PORT"));
const ISSUER = `http://127.0.0.1:${PORT}`;
const CLIENT_ID = env("IDP_CLIENT_ID");
const CLIENT_SECRET = readFileSync(env("IDP_CLIENT_SECRET_FILE"), "utf8").trim();
const REDIRECT_URIS = env("IDP_REDIRECT_URIS").split(/\s+/).filter(Boolean);
const PASSWORD = Buffer.from(env("IDP_PASSWORD"));
const FORM_LIMIT = 8 * 1024;
const FORM_TARGETS = [...new Set(REDIRECT_URIS.map((u) => new URL(u).origin))].join(" ");

/** The provider's accounts, by login (e-mail address); `sub` is stable and opaque. */
const ACCOUNTS = new Map([
  ["alice@example.com", { sub: "u-1001", name: "Alice Example" }],
  ["mallory@other.org", { sub: "u-2002", name: "Mallory Other" }],
]);
const bySub = new Map([...ACCOUNTS].map(([email, a]) => [a.sub, { email, ...a }]));

function passwordOk(given) {
  const g = Buffer.from(given ?? "");
  return g.length === PASSWORD.length && timingSafeEqual(g, PASSWORD);
}

const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "interop-es256", alg: "ES256", use: "sig" };

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: "client_secret_basic",
      id_token_signed_response_alg: "ES256",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      redirect_uris: REDIRECT_URIS,
    },
  ],
  jwks: { keys: [signingKey] },
  enabledJWA: { idTokenSigningAlgValues: ["ES256"] },
  cookies: { keys: [randomBytes(32).toString("base64url")] },
  scopes: ["openid", "email", "profile"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  findAccount: async (_ctx, sub) => {
    const a = bySub.get(sub);
    if (!a) return undefined;
    return { accountId: sub, claims: async () => ({ sub, email: a.email, email_verified: true, name: a.name }) };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.on("server_error", (_ctx, e) => console.error("server_error", e));

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function page(res, status, title, body) {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    // form-action covers the redirects after a form post too: the consent form's answer ends at
    // the client's redirect URI.
    "content-security-policy": `default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self' ${FORM_TARGETS}`,
  });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>${esc(title)} - Example IdP</title><style>
body{font:16px system-ui,sans-serif;margin:0;background:#eef1f5;color:#1d2330}
main{max-width:26rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px}
label{display:block;margin:.8rem 0 .3rem}input{box-sizing:border-box;width:100%;padding:.5rem;font:inherit}
button{margin:1rem .5rem 0 0;padding:.5rem 1rem;font:inherit}.error{color:#a00}
</style></head><body><main><h1>${esc(title)}</h1>${body}</main></body></html>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on("data", (c) => {
      size += c.length;
      if (size > FORM_LIMIT) {
        reject(new Error("form too large"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(new URLSearchParams(Buffer.concat(chunks).toString("utf8"))));
    req.on("error", reject);
  });
}

function loginPage(res, uid, error, login = "") {
  page(res, error ? 401 : 200, "Example IdP sign-in", `
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ""}
<form method="post" action="/interaction/${esc(uid)}/login">
<label for="login">E-mail address</label>
<input id="login" name="login" type="email" value="${esc(login)}" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>`);
}

function consentPage(res, uid, clientId, scopes) {
  page(res, 200, "Share your profile?", `
<p><strong>${esc(clientId)}</strong> asks for: ${esc(scopes.join(" "))}</p>
<form method="post" action="/interaction/${esc(uid)}/consent">
<button type="submit" name="decision" value="continue">Continue</button>
<button type="submit" name="decision" value="cancel">Cancel</button></form>`);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session, grantId } = details;
  const path = new URL(req.url, ISSUER).pathname;
  if (req.method === "GET" && path === `/interaction/${uid}`) {
    if (prompt.name === "login") return loginPage(res, uid);
    if (prompt.name === "consent") {
      const missing = prompt.details.missingOIDCScope ?? [];
      return consentPage(res, uid, params.client_id, missing.length ? missing : String(params.scope).split(" "));
    }
    return page(res, 400, "Unexpected step", `<p>${esc(prompt.name)}</p>`);
  }
  if (req.method !== "POST") return page(res, 405, "Method not allowed", "");
  const form = await readForm(req);
  if (path === `/interaction/${uid}/login` && prompt.name === "login") {
    const login = (form.get("login") ?? "").trim().toLowerCase();
    const account = ACCOUNTS.get(login);
    if (!account || !passwordOk(form.get("password"))) return loginPage(res, uid, "Wrong e-mail address or password.", login);
    return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
  }
  if (path === `/interaction/${uid}/consent` && prompt.name === "consent") {
    if (form.get("decision") !== "continue") {
      const result = { error: "access_denied", error_description: "the user cancelled" };
      return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    }
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(" "));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
  }
  return page(res, 400, "Unexpected step", "<p>This form does not belong to the current step.</p>");
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((e) => {
      console.error("interaction", e.message);
      if (!res.headersSent) page(res, 400, "Sign-in failed", `<p>${esc(e.message)}</p>`);
    });
    return;
  }
  callback(req, res);
});
server.headersTimeout = 10_000;
server.requestTimeout = 15_000;
server.listen(PORT, "127.0.0.1", () => {
  console.error("oidc-provider (federation interop)");
  console.error(`  issuer: ${ISSUER}`);
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
