// The "browser" mcp-remote opens (through the `open` package's bundled xdg-open, which runs
// $BROWSER when there is no desktop): logs in and consents through the gateway's embedded
// authorization server pages over HTTP (../lib/http-login.mjs), then delivers the redirect to
// mcp-remote's loopback callback, as a browser following the 303 would. It runs detached with
// no stdio, so it writes what it did to $MCPAUTH_BROWSER_LOG.
//
//   node browser.mjs AUTHORIZATION_URL     (env: MCPAUTH_USERNAME, MCPAUTH_PASSWORD)

import { appendFileSync } from "node:fs";
import { loginAndConsent } from "./lib/http-login.mjs";

const logFile = process.env.MCPAUTH_BROWSER_LOG;
const log = (m) => logFile && appendFileSync(logFile, `${new Date().toISOString()} ${m}\n`);
const url = process.argv[2];
try {
  log(`open ${url}`);
  const location = await loginAndConsent(url, {
    username: process.env.MCPAUTH_USERNAME,
    password: process.env.MCPAUTH_PASSWORD,
    log,
  });
  const resp = await fetch(location, { redirect: "manual" });
  log(`callback ${new URL(location).origin}${new URL(location).pathname}: HTTP ${resp.status}`);
  log(resp.ok || (resp.status >= 300 && resp.status < 400) ? "done" : "callback refused");
} catch (e) {
  log(`error: ${e.stack ?? e}`);
  process.exit(1);
}
