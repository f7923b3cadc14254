// Runs `conformance authorization` (@modelcontextprotocol/conformance 0.2.x) and plays the user
// for it: the suite prints an authorization URL and waits for the browser to come back to its
// callback server on 127.0.0.1:<port>/callback; this driver opens that URL over HTTP, logs in
// and consents through mcpauth serve's pages (interop/lib/http-login.mjs), then delivers the
// redirect to the suite's callback server.
//
//   node drive.mjs --username U --password-env VAR -- NODE CLI authorization --url … [args]
//
// Exits with the suite's exit status, or 1 if the login failed or the suite hung (timeout:
// MCPAUTH_AUTHZ_TIMEOUT_MS, default 120000).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { loginAndConsent } from "../../interop/lib/http-login.mjs";

const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
if (sep < 0) {
  console.error("usage: drive.mjs --username U --password-env VAR -- COMMAND ARGS...");
  process.exit(2);
}
const opts = {};
for (let i = 0; i < sep; i += 2) opts[argv[i].replace(/^--/, "")] = argv[i + 1];
const [command, ...args] = argv.slice(sep + 1);
const password = process.env[opts["password-env"] ?? "MCPAUTH_TEST_PASSWORD"];
if (!opts.username || !password) {
  console.error("drive.mjs: --username and a password in the environment are needed");
  process.exit(2);
}
const timeoutMs = Number(process.env.MCPAUTH_AUTHZ_TIMEOUT_MS ?? 120000);
const say = (m) => console.error(`[drive] ${m}`);

const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
let loginError = null;
let logins = 0;

const timer = setTimeout(() => {
  say(`the suite did not finish within ${timeoutMs} ms; stopping it`);
  loginError ??= new Error("timeout");
  child.kill("SIGTERM");
}, timeoutMs);

const lines = createInterface({ input: child.stdout });
lines.on("line", (line) => {
  process.stdout.write(line + "\n");
  const url = line.trim();
  if (!/^https?:\/\/\S+\?\S*response_type=code/.test(url)) return;
  logins++;
  (async () => {
    const location = await loginAndConsent(url, { username: opts.username, password, log: say });
    const back = new URL(location);
    if (back.hostname !== "127.0.0.1") throw new Error(`redirected to an unexpected host: ${back.origin}`);
    say(`delivering the redirect to the suite's callback server ${back.origin}${back.pathname}`);
    const resp = await fetch(location, { redirect: "manual" });
    if (resp.status !== 200) throw new Error(`the suite's callback server answered HTTP ${resp.status}`);
  })().catch((e) => {
    loginError = e;
    say(`login failed: ${e.stack ?? e}`);
    child.kill("SIGTERM");
  });
});

child.on("exit", (code, signal) => {
  clearTimeout(timer);
  if (loginError) process.exit(1);
  if (logins === 0) say("note: the suite printed no authorization URL");
  process.exit(code ?? (signal ? 1 : 0));
});
