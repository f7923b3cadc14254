// oidc-provider (npm, panva/node-oidc-provider), configured like `mcpauth serve` for the
// token-endpoint benchmark (bench/authserver-token.sh):
//
//   - issuer http://127.0.0.1:<port>, one Node process, storage in an unbounded in-process Map
//     (see MapAdapter below: faster than any database oidc-provider could be given)
//   - RFC 8707 resource indicators with ONE resource (the MCP server) and one scope; access tokens
//     are RFC 9068-style JWTs signed with ES256 (accessTokenFormat "jwt"), 1 h, like mcpauth's
//   - client_credentials enabled; refresh tokens issued for the code flow and rotated on every
//     use (rotateRefreshToken: true), as mcpauth rotates them for every client
//   - clients (client_secret_basic) from the JSON file given by BENCH_CLIENTS_FILE:
//     [{client_id, client_secret, grant_types, redirect_uris}]
//   - login and consent are automatic interactions (account "alice", no password check; a grant
//     with everything asked); neither is on the measured path, only /token is
//
// Environment: BENCH_PORT, BENCH_RESOURCE, BENCH_SCOPE, BENCH_CLIENTS_FILE. Prints
// "issuer: URL" on stderr when it listens; stops on SIGTERM/SIGINT.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import Provider, { errors } from "oidc-provider";

const PORT = Number(process.env.BENCH_PORT);
const RESOURCE = process.env.BENCH_RESOURCE;
const SCOPE = process.env.BENCH_SCOPE;
const ISSUER = `http://127.0.0.1:${PORT}`;
const ACCOUNT = "alice";
const clients = JSON.parse(readFileSync(process.env.BENCH_CLIENTS_FILE, "utf8")).map((c) => ({
  token_endpoint_auth_method: "client_secret_basic",
  id_token_signed_response_alg: "ES256",
  response_types: c.grant_types.includes("authorization_code") ? ["code"] : [],
  redirect_uris: [],
  ...c,
}));

// Storage: an unbounded in-process Map. oidc-provider's bundled MemoryAdapter is an LRU of 1000
// entries (a pool of refresh tokens would be evicted before it is spent) that also rewrites a
// per-grant member list on every save (O(tokens per grant)); a plain Map with a Set per grant is
// the fastest storage oidc-provider can have, so nothing here slows it down.
const stores = new Map();
const grants = new Map();
class MapAdapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.store = stores.get(name);
  }
  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload, expiresAt });
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, new Set());
      grants.get(payload.grantId).add([this.name, id]);
    }
    if (payload.uid) uids.set(payload.uid, id);
    if (payload.userCode) userCodes.set(payload.userCode, id);
  }
  async find(id) {
    const e = this.store.get(id);
    if (!e) return undefined;
    if (e.expiresAt <= Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return e.payload;
  }
  async findByUid(uid) {
    const id = uids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }
  async findByUserCode(code) {
    const id = userCodes.get(code);
    return id === undefined ? undefined : this.find(id);
  }
  async consume(id) {
    const e = this.store.get(id);
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) {
    this.store.delete(id);
  }
  async revokeByGrantId(grantId) {
    for (const [name, id] of grants.get(grantId) ?? []) stores.get(name)?.delete(id);
    grants.delete(grantId);
  }
}
const uids = new Map();
const userCodes = new Map();

const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "bench-es256", alg: "ES256", use: "sig" };

const provider = new Provider(ISSUER, {
  adapter: MapAdapter,
  clients,
  jwks: { keys: [signingKey] },
  enabledJWA: { authorizationSigningAlgValues: ["ES256"], idTokenSigningAlgValues: ["ES256"] },
  cookies: { keys: ["mcpauth-bench-cookie-key-0123456789"] },
  scopes: ["openid", "offline_access", SCOPE],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: SCOPE,
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "ES256" } },
        };
      },
    },
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: 3600,
    ClientCredentials: 3600,
    AuthorizationCode: 60,
    RefreshToken: 30 * 24 * 3600,
    Grant: 30 * 24 * 3600,
    Session: 8 * 3600,
    Interaction: 600,
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  rotateRefreshToken: () => true,
  expiresWithSession: async () => false,
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

const callback = provider.callback();
const server = createServer(async (req, res) => {
  if (req.url.startsWith("/interaction/")) {
    try {
      const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
      let result;
      if (prompt.name === "login") {
        result = { login: { accountId: ACCOUNT } };
      } else if (prompt.name === "consent") {
        // Consent to everything asked; the session remembers the grant, so later
        // authorization requests of this client come back at once (as mcpauth's remembered
        // consent does).
        const grant = grantId
          ? await provider.Grant.find(grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        const d = prompt.details;
        if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(" "));
        if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
          grant.addResourceScope(indicator, scopes.join(" "));
        }
        result = { consent: { grantId: await grant.save() } };
      } else {
        throw new Error(`unexpected prompt ${prompt.name}`);
      }
      await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
    return;
  }
  callback(req, res);
});
server.keepAliveTimeout = 60_000;
server.listen(PORT, "127.0.0.1", () => {
  console.error("oidc-provider (bench configuration)");
  console.error(`  issuer:     ${ISSUER}`);
});
provider.on("server_error", (_ctx, e) => console.error("server_error", e));
// Every refused token request is logged (the benchmark expects none).
provider.on("grant.error", (_ctx, e) => console.error("grant.error", e.message, e.error_description ?? ""));
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
