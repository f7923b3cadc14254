// A protected MCP server built only from the official TypeScript SDK's own pieces, the way its
// example server (examples/server/simpleStreamableHttp, --oauth) does it: express app from
// createMcpExpressApp, RFC 9728 metadata from mcpAuthMetadataRouter, requireBearerAuth with a
// token verifier that calls the authorization server's RFC 7662 introspection endpoint, and a
// stateless Streamable HTTP transport. The difference from the example: the verifier
// authenticates to /introspect (client_secret_basic, a resource server registered with `mcpauth
// clients add --introspection URL`, the only kind of client mcpauth answers), as RFC 7662 §2.1
// requires, and requires the token's audience to be this server (expectedResource, RFC 8707).

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import {
  getOAuthProtectedResourceMetadataUrl,
  mcpAuthMetadataRouter,
} from "@modelcontextprotocol/sdk/server/auth/router.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";

/** An OAuthTokenVerifier backed by RFC 7662 introspection with client_secret_basic. */
export function introspectionVerifier({ introspectionEndpoint, issuer, clientId, clientSecret, resource }) {
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString("base64");
  return {
    introspections: 0,
    async verifyAccessToken(token) {
      this.introspections++;
      const resp = await fetch(introspectionEndpoint, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${basic}` },
        body: new URLSearchParams({ token, token_type_hint: "access_token" }).toString(),
      });
      if (!resp.ok) throw new Error(`introspection failed: HTTP ${resp.status} ${await resp.text()}`);
      const data = await resp.json();
      if (data.active !== true) throw new InvalidTokenError("the token is not active");
      if (data.iss !== undefined && data.iss !== issuer) throw new InvalidTokenError(`token from another issuer: ${data.iss}`);
      const audience = [data.aud ?? []].flat().find((a) => a === resource.href);
      return {
        token,
        clientId: data.client_id,
        scopes: data.scope ? data.scope.split(" ") : [],
        expiresAt: data.exp,
        resource: audience ? new URL(audience) : undefined,
        extra: { sub: data.sub, iss: data.iss, aud: data.aud },
      };
    },
  };
}

/**
 * Starts the server on 127.0.0.1:port; resolves to { url, close(), verifier }.
 * @param {{port: number, issuer: string, clientId: string, clientSecret: string, scopes?: string[]}} opts
 */
export async function startResourceServer({ port, issuer, clientId, clientSecret, scopes = [] }) {
  const resource = new URL(`http://127.0.0.1:${port}/mcp`);
  const metaResp = await fetch(`${issuer}/.well-known/oauth-authorization-server`);
  if (!metaResp.ok) throw new Error(`authorization server metadata: HTTP ${metaResp.status}`);
  const oauthMetadata = await metaResp.json();

  const verifier = introspectionVerifier({
    introspectionEndpoint: oauthMetadata.introspection_endpoint,
    issuer,
    clientId,
    clientSecret,
    resource,
  });

  const app = createMcpExpressApp({ host: "127.0.0.1" });
  app.use(
    mcpAuthMetadataRouter({
      oauthMetadata,
      resourceServerUrl: resource,
      scopesSupported: scopes.length ? scopes : undefined,
      resourceName: "TypeScript SDK resource server (mcpauth interop)",
    }),
  );
  const bearer = requireBearerAuth({
    verifier,
    requiredScopes: scopes,
    resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(resource),
    expectedResource: resource,
  });

  const mcpServer = () => {
    const server = new McpServer({ name: "mcpauth-interop-ts-server", version: "1.0.0" });
    server.registerTool(
      "whoami",
      { description: "Who the bearer token says the caller is" },
      async (extra) => {
        const auth = extra.authInfo;
        const who = {
          clientId: auth?.clientId,
          scopes: auth?.scopes,
          resource: auth?.resource?.href,
          sub: auth?.extra?.sub,
          iss: auth?.extra?.iss,
        };
        return { content: [{ type: "text", text: JSON.stringify(who) }] };
      },
    );
    return server;
  };

  app.post("/mcp", bearer, async (req, res) => {
    const server = mcpServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
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
  const notAllowed = (_req, res) =>
    res.status(405).json({ jsonrpc: "2.0", error: { code: -32000, message: "Method not allowed." }, id: null });
  app.get("/mcp", bearer, notAllowed);
  app.delete("/mcp", bearer, notAllowed);

  const listener = await new Promise((resolve, reject) => {
    const l = app.listen(port, "127.0.0.1", () => resolve(l));
    l.on("error", reject);
  });
  return {
    url: resource.href,
    verifier,
    close: () => new Promise((r) => listener.close(() => r())),
  };
}
