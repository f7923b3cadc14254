// The official TypeScript SDK's stdio client (Client + StdioClientTransport) talking through
// `mcpauth connect URL …` to a protected MCP server. Run by interop/run-connect from
// .cache/interop-connect/src (so @modelcontextprotocol/sdk resolves from the npm install there).
//
// Environment:
//   MCPAUTH_BIN          the mcpauth binary
//   MCPAUTH_HOME         its private home (token store), shared across runs of one server
//   CONNECT_URL          the MCP server URL handed to `mcpauth connect`
//   CONNECT_ARGS         extra arguments for `mcpauth connect`, as a JSON array
//   CONNECT_LOGIN        "none" (the token must already be cached, or the AS approves headlessly)
//                        or "pages": read the authorization URL from connect's stderr and act as
//                        the browser on mcpauth's login and consent pages (http-login.mjs), then
//                        deliver the redirect to connect's loopback listener
//   CONNECT_USERNAME / CONNECT_PASSWORD   the user for "pages"
//   CONNECT_EXPECT_LOGIN "1": the authorization URL must appear; "0": it must not (cached token)
//   CONNECT_TOOL, CONNECT_TOOL_ARGS (JSON), CONNECT_EXPECT_TEXT   the tool call and its answer
//   CONNECT_ELICIT_TOOL, CONNECT_ELICIT_ARGS (JSON), CONNECT_ELICIT_EXPECT   optional: a tool that
//                        asks the user (elicitation/create, answered with name "Ada") and the text
//                        its answer must contain
//   CONNECT_LABEL        a label for the PASS/FAIL lines
//
// Prints one PASS/FAIL line per check and "N passed, M failed" last; exits non-zero on failure.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { loginAndConsent } from "./http-login.mjs";

const env = process.env;
const label = env.CONNECT_LABEL ?? "connect";
const verbose = env.MCPAUTH_VERBOSE === "1";
let passed = 0;
let failed = 0;
function check(ok, what, detail = "") {
  if (ok) {
    passed++;
    console.log(`  PASS  ${label}: ${what}`);
  } else {
    failed++;
    console.log(`  FAIL  ${label}: ${what}${detail ? `\n        ${detail}` : ""}`);
  }
  return ok;
}
function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}
const withTimeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms))]);

const extra = JSON.parse(env.CONNECT_ARGS ?? "[]");
const transport = new StdioClientTransport({
  command: env.MCPAUTH_BIN,
  args: ["connect", env.CONNECT_URL, ...extra],
  env: {
    PATH: env.PATH,
    HOME: env.HOME ?? "/tmp",
    MCPAUTH_HOME: env.MCPAUTH_HOME,
    RUST_LOG: env.RUST_LOG ?? "warn",
    NO_PROXY: env.NO_PROXY ?? "",
    no_proxy: env.no_proxy ?? "",
  },
  stderr: "pipe",
});

// connect's stderr: kept for the failure report; the authorization URL is picked out of it.
let stderrText = "";
let sawAuthUrl = false;
let loginDone = Promise.resolve();
let resolveAuthUrl;
const authUrl = new Promise((r) => (resolveAuthUrl = r));
const stderr = transport.stderr;
let pending = "";
stderr.setEncoding("utf8");
stderr.on("data", (chunk) => {
  stderrText += chunk;
  if (verbose) process.stderr.write(`[connect] ${chunk}`);
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    const m = line.match(/(https?:\/\/\S+\/authorize\?\S+)/);
    if (m && !sawAuthUrl) {
      sawAuthUrl = true;
      resolveAuthUrl(m[1]);
    }
  }
});

if (env.CONNECT_LOGIN === "pages") {
  loginDone = authUrl.then(async (url) => {
    const back = await loginAndConsent(url, {
      username: env.CONNECT_USERNAME,
      password: env.CONNECT_PASSWORD,
      log: verbose ? (m) => console.error(`[browser] ${m}`) : undefined,
    });
    const u = new URL(back);
    if (!u.searchParams.get("code")) throw new Error(`the redirect carries no code: ${back}`);
    // The "browser" lands on connect's loopback listener, which finishes the flow.
    const resp = await fetch(back, { redirect: "manual" });
    await resp.text();
    if (resp.status >= 400) throw new Error(`the loopback redirect answered HTTP ${resp.status}`);
    return back;
  });
  loginDone.catch(() => {});
}

const elicitTool = env.CONNECT_ELICIT_TOOL;
const client = new Client(
  { name: "mcpauth-interop-ts-stdio", version: "1.0.0" },
  elicitTool ? { capabilities: { elicitation: { form: {} } } } : undefined,
);
const asked = [];
if (elicitTool) {
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    asked.push(request.params.message);
    return { action: "accept", content: { name: "Ada" } };
  });
}
// The SDK reports anything on stdout that is not a JSON-RPC message here.
const transportErrors = [];
client.onerror = (e) => transportErrors.push(String(e));
try {
  await withTimeout(client.connect(transport), 30000, "initialize through mcpauth connect");
  check(true, `initialize through mcpauth connect (server ${JSON.stringify(client.getServerVersion()?.name)})`);
  if (env.CONNECT_LOGIN === "pages") {
    const back = await withTimeout(loginDone, 5000, "the login through the pages");
    check(/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d+\//.test(back), "login and consent through the pages redirected to the loopback listener", back);
  }
  if (env.CONNECT_EXPECT_LOGIN === "1") check(sawAuthUrl, "an authorization URL was printed on stderr (not stdout)");
  if (env.CONNECT_EXPECT_LOGIN === "0") check(!sawAuthUrl, "the cached token was used: no new authorization");

  const tools = await withTimeout(client.listTools(), 15000, "tools/list");
  const names = tools.tools.map((t) => t.name);
  check(names.includes(env.CONNECT_TOOL), `tools/list includes ${env.CONNECT_TOOL}`, `tools: ${names.join(", ")}`);

  const result = await withTimeout(
    client.callTool({ name: env.CONNECT_TOOL, arguments: JSON.parse(env.CONNECT_TOOL_ARGS ?? "{}") }),
    15000,
    "tools/call",
  );
  const text = result.content?.find((c) => c.type === "text")?.text;
  check(!result.isError && text === env.CONNECT_EXPECT_TEXT, `tools/call ${env.CONNECT_TOOL} answered ${JSON.stringify(env.CONNECT_EXPECT_TEXT)}`, JSON.stringify(result));

  if (elicitTool) {
    const r = await withTimeout(
      client.callTool({ name: elicitTool, arguments: JSON.parse(env.CONNECT_ELICIT_ARGS ?? "{}") }),
      15000,
      `tools/call ${elicitTool}`,
    );
    const t = r.content?.find((c) => c.type === "text")?.text ?? "";
    check(asked.length === 1 && !r.isError && t.includes(env.CONNECT_ELICIT_EXPECT),
      `tools/call ${elicitTool}: the server asked the user once (elicitation/create) and answered`,
      `asked ${JSON.stringify(asked)}; ${JSON.stringify(r)}`);
  }

  // An unknown method must come back as a JSON-RPC error from the server, relayed as such.
  try {
    await withTimeout(client.request({ method: "mcpauth/no-such-method", params: {} }, (await import("zod")).z.any()), 15000, "unknown method");
    check(false, "an unknown method is answered with a JSON-RPC error", "it succeeded");
  } catch (e) {
    check(typeof e?.code === "number", "an unknown method is answered with the server's JSON-RPC error", String(e));
  }

  check(transportErrors.length === 0, "stdout carried only JSON-RPC messages", transportErrors.join("; "));

  // Closing stdin must end mcpauth connect by itself (the SDK sends SIGTERM after 2 s).
  const proc = transport._process;
  const t0 = Date.now();
  await client.close();
  const ms = Date.now() - t0;
  check(proc && proc.exitCode === 0 && proc.signalCode === null && ms < 1900,
    `mcpauth connect exited with status 0 when the client closed stdin (${ms} ms)`,
    `exitCode ${proc?.exitCode}, signal ${proc?.signalCode}`);
} catch (e) {
  check(false, "the session through mcpauth connect", String(e?.stack ?? e));
  try {
    await client.close();
  } catch {}
}
if (failed && !verbose && stderrText) console.log(`        --- mcpauth connect stderr ---\n${stderrText.replace(/^/gm, "        ")}`);
finish();
