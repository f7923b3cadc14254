// The MCP server behind the gateway in interop/run-federation (the official TypeScript SDK's
// McpServer, stateless Streamable HTTP), playing an MCP server that acts for the user at the
// identity provider (SPEC F8):
//
//   - tool `add` {a, b}: a + b
//   - tool `whoami`: what this server can prove about the caller, as a real upstream would:
//       the provider token in X-Upstream-Token, used at the provider's userinfo endpoint
//       (OIDC Core §5.3) -> {sub, email};
//       the identity assertion in X-MCP-Identity, verified with the gateway's JWKS
//       (ISSUER/jwks): ES256 signature, typ mcp-identity+jwt, iss = the gateway's issuer,
//       aud = this server's URL, exp in the future -> its claims, or the reason it failed
//   - GET /seen (not MCP, not behind the gateway): every header value of every request so far,
//     so the test can show the MCP client's token never reached this server
//
// Environment: UPSTREAM_PORT, GATEWAY_ISSUER (the gateway's embedded authorization server),
// IDP_ISSUER. Prints "ready" on stdout once it listens on 127.0.0.1.

import { createServer } from "node:http";
import { createPublicKey, verify } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const PORT = Number(env("UPSTREAM_PORT"));
const SELF = `http://127.0.0.1:${PORT}/mcp`;
const GATEWAY_ISSUER = env("GATEWAY_ISSUER");
const IDP_ISSUER = env("IDP_ISSUER");
const BODY_LIMIT = 1024 * 1024;

/** Header values of every request, oldest first. */
const seen = [];

const b64json = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

async function getJson(url, init = {}) {
  const resp = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) });
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.json();
}

/** The provider's userinfo for `token` (OIDC Core §5.3). */
async function userinfo(token) {
  if (!token) return { error: "no X-Upstream-Token header" };
  try {
    const meta = await getJson(`${IDP_ISSUER}/.well-known/openid-configuration`);
    const info = await getJson(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${token}` } });
    return { sub: info.sub, email: info.email };
  } catch (e) {
    return { error: String(e.message ?? e) };
  }
}

/** The identity assertion's claims once verified with the gateway's JWKS, or why not. */
async function identity(jwt) {
  if (!jwt) return { error: "no X-MCP-Identity header" };
  try {
    const [h, p, s] = jwt.split(".");
    const header = b64json(h);
    const claims = b64json(p);
    if (header.typ !== "mcp-identity+jwt") return { error: `typ ${header.typ}` };
    if (header.alg !== "ES256") return { error: `alg ${header.alg}` };
    const { keys } = await getJson(`${GATEWAY_ISSUER}/jwks`);
    const jwk = keys.find((k) => k.kid === header.kid);
    if (!jwk) return { error: `no key ${header.kid} in ${GATEWAY_ISSUER}/jwks` };
    const key = createPublicKey({ key: jwk, format: "jwk" });
    const ok = verify("sha256", Buffer.from(`${h}.${p}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"));
    if (!ok) return { error: "bad signature" };
    if (claims.iss !== GATEWAY_ISSUER) return { error: `iss ${claims.iss}` };
    if (![claims.aud].flat().includes(SELF)) return { error: `aud ${claims.aud}` };
    if (!(claims.exp > Date.now() / 1000)) return { error: "expired" };
    return { verified: true, sub: claims.sub, email: claims.email, name: claims.name };
  } catch (e) {
    return { error: String(e.message ?? e) };
  }
}

function mcpServer(headers) {
  const server = new McpServer({ name: "mcpauth-federation-upstream", version: "1.0.0" });
  server.registerTool(
    "add",
    { description: "a + b", inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );
  server.registerTool("whoami", { description: "Who the gateway says the caller is" }, async () => {
    const who = {
      userinfo: await userinfo(headers["x-upstream-token"]),
      identity: await identity(headers["x-mcp-identity"]),
    };
    return { content: [{ type: "text", text: JSON.stringify(who) }] };
  });
  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        reject(new Error("body too large"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

const http = createServer(async (req, res) => {
  const path = new URL(req.url, SELF).pathname;
  if (req.method === "GET" && path === "/seen") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify(seen));
  }
  seen.push(...Object.values(req.headers).flat());
  if (path !== "/mcp" || req.method !== "POST") {
    res.writeHead(405, { "content-type": "application/json" });
    return res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: "Method not allowed." }, id: null }));
  }
  try {
    const body = JSON.parse(await readBody(req));
    const server = mcpServer(req.headers);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  } catch (e) {
    if (!res.headersSent) {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32700, message: String(e.message ?? e) }, id: null }));
    }
  }
});
http.listen(PORT, "127.0.0.1", () => console.log("ready"));
process.on("SIGTERM", () => http.close(() => process.exit(0)));
