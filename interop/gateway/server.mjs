// The upstream behind `mcpauth gateway`: an MCP server built from the official TypeScript SDK
// (@modelcontextprotocol/sdk) only, with NO auth of its own.
//
//   node server.mjs --http PORT     Streamable HTTP at http://127.0.0.1:PORT/mcp
//                                   (StreamableHTTPServerTransport, stateful: one session per
//                                   initialize, Mcp-Session-Id)
//   node server.mjs --stdio         the same server over stdio (StdioServerTransport)
//
// Tools:
//   echo {text}        -> "echo: TEXT"
//   add {a, b}         -> "A+B"
//   upstream_headers   -> JSON of what the upstream saw: {transport, authorization, cookie, dpop};
//                         the gateway must never pass the client's token, cookies or DPoP proof
//                         upstream (HTTP only; stdio has no headers).

import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

function mcpServer(transportName) {
  const server = new McpServer({ name: "mcpauth-gateway-upstream", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Echoes its text", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text: `echo: ${text}` }] }),
  );
  server.registerTool(
    "add",
    { description: "Adds two numbers", inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );
  server.registerTool(
    "upstream_headers",
    { description: "What the upstream saw of the request's credentials" },
    async (extra) => {
      const h = extra.requestInfo?.headers ?? {};
      return {
        content: [
          {
            type: "text",
            text: JSON.stringify({
              transport: transportName,
              authorization: h.authorization ?? null,
              cookie: h.cookie ?? null,
              dpop: h.dpop ?? null,
            }),
          },
        ],
      };
    },
  );
  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

async function serveHttp(port) {
  const sessions = new Map(); // session id -> transport
  const httpServer = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, "http://127.0.0.1");
      if (url.pathname === "/healthz") return res.end("ok");
      if (url.pathname !== "/mcp") {
        res.writeHead(404).end();
        return;
      }
      const sid = req.headers["mcp-session-id"];
      let body;
      if (req.method === "POST") {
        const raw = await readBody(req);
        try {
          body = JSON.parse(raw);
        } catch {
          res.writeHead(400, { "content-type": "application/json" });
          res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, id: null }));
          return;
        }
      }
      let transport = sid ? sessions.get(sid) : undefined;
      if (!transport) {
        const isInit = [body].flat().some((m) => m?.method === "initialize");
        if (sid || req.method !== "POST" || !isInit) {
          res.writeHead(sid ? 404 : 400, { "content-type": "application/json" });
          res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: sid ? "Session not found" : "No session" }, id: null }));
          return;
        }
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => sessions.set(id, transport),
        });
        transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
        await mcpServer("http").connect(transport);
      }
      await transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32603, message: String(e) }, id: null }));
    }
  });
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(port, "127.0.0.1", resolve);
  });
  console.error(`upstream MCP server (TypeScript SDK, Streamable HTTP) at http://127.0.0.1:${httpServer.address().port}/mcp`);
  const stop = () => httpServer.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

const [mode, arg] = process.argv.slice(2);
if (mode === "--http") {
  await serveHttp(Number(arg ?? 0));
} else if (mode === "--stdio") {
  await mcpServer("stdio").connect(new StdioServerTransport());
} else {
  console.error("usage: node server.mjs --http PORT | --stdio");
  process.exit(2);
}
