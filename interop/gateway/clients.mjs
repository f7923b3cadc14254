// Real MCP clients through `mcpauth gateway` (embedded authorization server on the gateway's
// origin) to the TypeScript SDK server in server.mjs. Run by interop/run-gateway, which starts
// the gateway and passes everything in the environment:
//
//   MCPAUTH_GATEWAY_URL     the gateway's MCP endpoint (the protected resource)
//   MCPAUTH_ISSUER          the embedded authorization server (the gateway's origin)
//   MCPAUTH_UPSTREAM        "http" or "stdio" (what is behind the gateway)
//   MCPAUTH_USERNAME/PASSWORD, MCPAUTH_SCOPE, MCPAUTH_REDIRECT_URI
//   MCPAUTH_CLIENTS         comma-separated subset of: sdk, mcp-remote, mcpauth
//   for mcp-remote: MCPAUTH_MCP_REMOTE (its proxy.js), MCPAUTH_BROWSER (an executable for
//     $BROWSER), MCPAUTH_REMOTE_PORT (its callback port), MCPAUTH_TMP (a scratch dir)
//   for mcpauth:    MCPAUTH_BIN, MCPAUTH_CLIENT_HOME
//
// Clients:
//   sdk         the SDK's Client + StreamableHTTPClientTransport with an OAuthClientProvider
//               whose redirectToAuthorization() logs in and consents over HTTP (dynamic
//               registration, PKCE, resource), then tools/list and tools/call
//   mcp-remote  the npm mcp-remote stdio proxy, driven by the SDK's Client over stdio; its browser
//               is $BROWSER (browser.mjs) through the `open` package's xdg-open; a second run
//               must reuse the tokens it stored in MCP_REMOTE_CONFIG_DIR without a browser
//   mcpauth     `mcpauth login URL --no-browser` (the printed URL logged in over HTTP), then
//               `mcpauth call URL echo …`
//
// Prints one line per check and ends with "N passed, M failed"; exits 1 if anything failed.

import { spawn } from "node:child_process";
import { readFileSync, existsSync, mkdirSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { loginAndConsent } from "./lib/http-login.mjs";
import { Checks, HeadlessProvider, VERBOSE, env, jwtPart, text, verboseLog, withTimeout } from "./harness.mjs";

const URL_ = env("MCPAUTH_GATEWAY_URL");
const ISSUER = env("MCPAUTH_ISSUER");
const UPSTREAM = env("MCPAUTH_UPSTREAM");
const USERNAME = env("MCPAUTH_USERNAME");
const PASSWORD = env("MCPAUTH_PASSWORD");
const SCOPE = process.env.MCPAUTH_SCOPE ?? "";
const CLIENTS = env("MCPAUTH_CLIENTS").split(",");

const checks = new Checks(`[${UPSTREAM} upstream]`);
const check = checks.check.bind(checks);
const say = verboseLog("gateway-clients");

/** The SDK's OAuth provider, logging in as `user` (alice by default) over HTTP. */
const headlessProvider = (user = { username: USERNAME, password: PASSWORD }) =>
  new HeadlessProvider({
    redirectUri: env("MCPAUTH_REDIRECT_URI"),
    user,
    scope: SCOPE,
    clientName: "TypeScript SDK through mcpauth gateway",
    log: say,
  });

async function connectSdk(provider) {
  const client = new Client({ name: "mcpauth-gateway-interop", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(URL_), { authProvider: provider }));
  return client;
}

async function resourceSide() {
  const resp = await fetch(URL_, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: {} }),
  });
  const challenge = resp.headers.get("www-authenticate") ?? "";
  const m = challenge.match(/resource_metadata="([^"]+)"/);
  check("no token: 401 with a Bearer challenge naming the resource metadata (RFC 9728 §5.1)",
    resp.status === 401 && /^Bearer /i.test(challenge) && !!m, challenge);
  if (!m) return;
  const prm = await (await fetch(m[1])).json();
  check("protected resource metadata: resource = the gateway URL, authorization_servers = [its own origin]",
    prm.resource === URL_ && JSON.stringify(prm.authorization_servers) === JSON.stringify([ISSUER]),
    JSON.stringify({ resource: prm.resource, authorization_servers: prm.authorization_servers }));
}

async function sdkClient() {
  const provider = headlessProvider();
  let unauthorized = false;
  try {
    const c = await connectSdk(provider);
    await c.close();
  } catch (e) {
    if (e instanceof UnauthorizedError) unauthorized = true;
    else throw e;
  }
  const authUrl = provider.redirects[0];
  check("SDK client: 401 -> discovery -> dynamic registration -> authorization request with PKCE S256 and resource",
    unauthorized && provider.redirects.length === 1 && !!provider._client?.client_id &&
      authUrl.origin === ISSUER && authUrl.searchParams.get("code_challenge_method") === "S256" &&
      authUrl.searchParams.get("resource") === URL_,
    authUrl ? `${authUrl.origin}${authUrl.pathname} resource=${authUrl.searchParams.get("resource")}` : "no redirect");
  const r = provider.response ?? {};
  check("SDK client: login + consent on the gateway's pages answered with code, the same state and iss (RFC 9207)",
    !!r.code && r.state === provider._state && r.iss === ISSUER, `iss=${r.iss}`);

  await new StreamableHTTPClientTransport(new URL(URL_), { authProvider: provider }).finishAuth(r.code);
  const tokens = provider.tokens();
  const claims = tokens?.access_token ? jwtPart(tokens.access_token, 1) : {};
  check("SDK client: code exchanged for a JWT access token with aud = the gateway URL",
    claims.iss === ISSUER && [claims.aud].flat().includes(URL_), `aud=${JSON.stringify(claims.aud)}`);

  const transport = new StreamableHTTPClientTransport(new URL(URL_), { authProvider: provider });
  const client = new Client({ name: "mcpauth-gateway-interop", version: "1.0.0" });
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  check("SDK client: tools/list through the gateway lists the upstream's tools",
    ["add", "echo", "upstream_headers"].every((t) => tools.includes(t)), tools.join(","));
  const echo = text(await client.callTool({ name: "echo", arguments: { text: "hello through the gateway" } }));
  check("SDK client: tools/call echo through the gateway", echo === "echo: hello through the gateway", echo);
  const seen = JSON.parse(text(await client.callTool({ name: "upstream_headers", arguments: {} })));
  check("the upstream never sees the client's bearer token or cookies",
    seen.authorization === null && seen.cookie === null && seen.transport === UPSTREAM, JSON.stringify(seen));
  if (process.env.MCPAUTH_SECOND_USER) await sessionBinding(provider, transport.sessionId);
  await client.close();

  const again = await connectSdk(provider);
  const sum = text(await again.callTool({ name: "add", arguments: { a: 2, b: 3 } }));
  check("SDK client: a second session with the same token, tools/call add", sum === "5" && provider.redirects.length === 1, sum);
  await again.close();
}

/** Another user's valid token must not reach alice's MCP session (MCP security best practices,
 * "Session Hijacking": session ids bound to the user). */
async function sessionBinding(alice, sessionId) {
  const [username, password] = env("MCPAUTH_SECOND_USER").split(":");
  const bob = headlessProvider({ username, password });
  try {
    await connectSdk(bob);
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  await new StreamableHTTPClientTransport(new URL(URL_), { authProvider: bob }).finishAuth(bob.response?.code);
  const post = (token) =>
    fetch(URL_, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
        "mcp-session-id": sessionId,
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 99, method: "tools/call", params: { name: "echo", arguments: { text: "hijack" } } }),
    });
  const stolen = await post(bob.tokens().access_token);
  const stolenBody = await stolen.text();
  check(`another user's token on ${username === "bob" ? "alice's" : "the"} session is refused (MCP session binding)`,
    !!sessionId && stolen.status >= 400 && stolen.status < 500 && !stolenBody.includes("echo: hijack"),
    `session ${sessionId ? "present" : "MISSING"}, HTTP ${stolen.status}`);
  const own = await post(alice.tokens().access_token);
  const ownBody = await own.text();
  check("the session's own user still reaches it", own.status === 200 && ownBody.includes("echo: hijack"), `HTTP ${own.status}`);
}

async function mcpRemoteSession(label, browserLog) {
  const tmp = env("MCPAUTH_TMP");
  const configDir = `${tmp}/mcp-remote-config`;
  mkdirSync(configDir, { recursive: true });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [env("MCPAUTH_MCP_REMOTE"), URL_, env("MCPAUTH_REMOTE_PORT"), "--host", "127.0.0.1"],
    env: {
      PATH: process.env.PATH,
      HOME: tmp,
      MCP_REMOTE_CONFIG_DIR: configDir,
      BROWSER: env("MCPAUTH_BROWSER"),
      MCPAUTH_USERNAME: USERNAME,
      MCPAUTH_PASSWORD: PASSWORD,
      MCPAUTH_BROWSER_LOG: browserLog,
      NO_PROXY: "localhost,127.0.0.1,::1",
      no_proxy: "localhost,127.0.0.1,::1",
    },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d) => {
    stderr += d;
    if (VERBOSE) process.stderr.write(`    [mcp-remote] ${d}`);
  });
  const client = new Client({ name: "mcpauth-gateway-interop-stdio", version: "1.0.0" });
  try {
    await withTimeout(client.connect(transport), 60_000, `${label}: initialize through mcp-remote`);
    const tools = (await withTimeout(client.listTools(), 20_000, "tools/list")).tools.map((t) => t.name).sort();
    const echo = text(await withTimeout(client.callTool({ name: "echo", arguments: { text: label } }), 20_000, "tools/call"));
    return { tools, echo, stderr };
  } catch (e) {
    const browser = existsSync(browserLog) ? readFileSync(browserLog, "utf8") : "(the browser was never opened)";
    throw new Error(`${e.message}\n--- mcp-remote stderr ---\n${stderr.slice(-3000)}\n--- browser ---\n${browser.slice(-2000)}`);
  } finally {
    await client.close().catch(() => {});
  }
}

async function mcpRemote() {
  const browserLog = `${env("MCPAUTH_TMP")}/browser.log`;
  const first = await mcpRemoteSession("first run", browserLog);
  const browser = existsSync(browserLog) ? readFileSync(browserLog, "utf8") : "";
  check("mcp-remote: opened $BROWSER (xdg-open from `open`), which logged in and consented on the gateway's pages",
    browser.includes("login as") && browser.includes("done"), browser.split("\n").filter((l) => / callback http/.test(l)).map((l) => l.replace(/^\S+ /, "")).join(" "));
  check("mcp-remote: initialize + tools/list over stdio through the gateway",
    ["add", "echo", "upstream_headers"].every((t) => first.tools.includes(t)), first.tools.join(","));
  check("mcp-remote: tools/call echo through the gateway", first.echo === "echo: first run", first.echo);
  const opens = (s) => (s.match(/ open http/g) ?? []).length;
  const before = opens(browser);
  const second = await mcpRemoteSession("second run", browserLog);
  const after = opens(existsSync(browserLog) ? readFileSync(browserLog, "utf8") : "");
  check("mcp-remote: a second run reuses the stored tokens (MCP_REMOTE_CONFIG_DIR), no browser",
    second.echo === "echo: second run" && after === before, `browser opened ${after - before} more time(s)`);
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => {
      err += d;
      opts.onStderr?.(err);
    });
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

async function mcpauthClient() {
  const bin = env("MCPAUTH_BIN");
  const cenv = { ...process.env, MCPAUTH_HOME: env("MCPAUTH_CLIENT_HOME"), RUST_LOG: "warn" };
  delete cenv.MCPAUTH_DATABASE_URL;
  delete cenv.MCP_CLIENT_ID;
  let started = false;
  let loginError;
  const login = run(bin, ["login", URL_, "--no-browser"], {
    env: cenv,
    onStderr: (err) => {
      const line = err.split("\n").map((l) => l.trim()).find((l) => l.startsWith(`${ISSUER}/authorize?`));
      if (!line || started) return;
      started = true;
      loginAndConsent(line, { username: USERNAME, password: PASSWORD, log: say })
        .then((location) => fetch(location, { redirect: "manual" }))
        .catch((e) => (loginError = e));
    },
  });
  const l = await withTimeout(login, 60_000, "mcpauth login");
  check("mcpauth login URL --no-browser: logged in through the gateway's pages", l.code === 0 && started && !loginError,
    loginError ? String(loginError) : `exit ${l.code}${l.code ? `: ${l.err.slice(-500)}` : ""}`);
  const c = await withTimeout(run(bin, ["call", URL_, "echo", '{"text":"from mcpauth call"}'], { env: cenv }), 30_000, "mcpauth call");
  check("mcpauth call URL echo: tools/call through the gateway", c.code === 0 && c.out.includes("echo: from mcpauth call"),
    `exit ${c.code}: ${(c.out + c.err).replace(/\s+/g, " ").trim().slice(0, 300)}`);
}

async function main() {
  console.log(`mcpauth gateway at ${URL_} (embedded authorization server ${ISSUER}), ${UPSTREAM} upstream: TypeScript SDK server`);
  const steps = [["resource", resourceSide]];
  if (CLIENTS.includes("sdk")) steps.push(["SDK client", sdkClient]);
  if (CLIENTS.includes("mcp-remote")) steps.push(["mcp-remote", mcpRemote]);
  if (CLIENTS.includes("mcpauth")) steps.push(["mcpauth client", mcpauthClient]);
  await checks.run(steps);
}

main().catch((e) => {
  console.error(e);
  console.log(`${checks.passed} passed, ${checks.failed + 1} failed`);
  process.exit(1);
});
