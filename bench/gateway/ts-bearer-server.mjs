// The TypeScript SDK's own way to protect an MCP server, for bench/gateway.sh: express app from
// createMcpExpressApp, requireBearerAuth with an OAuthTokenVerifier, and a stateless Streamable
// HTTP transport with JSON answers (one McpServer + transport per request, as the SDK's stateless
// example does) exposing the tool echo.
//
// The verifier checks the JWT access token locally with jose against the authorization server's
// JWKS (createRemoteJWKSet caches the keys): signature, iss, aud = this server, exp, typ at+jwt.
// That is the same work the mcpauth gateway does per request (JwtVerifier with cached JWKS), so
// the comparison measures the stacks, not a network round trip to /introspect.
//
//   node ts-bearer-server.mjs PORT ISSUER      (run from a directory whose node_modules has
//                                               @modelcontextprotocol/sdk, express, jose, zod)

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { z } from "zod";

const [port, issuer] = process.argv.slice(2);
const resource = new URL(`http://127.0.0.1:${port}/mcp`);
const meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));

const verifier = {
  async verifyAccessToken(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, { issuer, audience: resource.href, typ: "at+jwt" }));
    } catch (e) {
      throw new InvalidTokenError(String(e.message ?? e));
    }
    return {
      token,
      clientId: payload.client_id,
      scopes: typeof payload.scope === "string" ? payload.scope.split(" ") : [],
      expiresAt: payload.exp,
      resource,
      extra: { sub: payload.sub },
    };
  },
};

const app = createMcpExpressApp({ host: "127.0.0.1" });
const bearer = requireBearerAuth({ verifier, expectedResource: resource });
app.post("/mcp", bearer, async (req, res) => {
  const server = new McpServer({ name: "ts-bearer-bench", version: "1.0.0" });
  server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
    content: [{ type: "text", text }],
  }));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (e) {
    if (!res.headersSent) res.status(500).json({ jsonrpc: "2.0", error: { code: -32603, message: String(e) }, id: null });
  }
});
app.get("/healthz", (_req, res) => res.send("ok"));
app.listen(Number(port), "127.0.0.1", () => console.error(`TypeScript SDK server (requireBearerAuth + jose) at ${resource.href}`));
