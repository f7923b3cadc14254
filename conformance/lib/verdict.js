// The verdict on conformance checks files, shared by conformance/run (client scenarios),
// conformance/run-authorization (authorization-server scenarios) and conformance/run-server
// (server scenarios), and exercised by conformance/selftest.
//
//   node verdict.js client DIR
//       One line for the one scenario whose output is under DIR (every checks.json found):
//       "PASS <n> check(s)" or "FAIL <reason>".
//   node verdict.js authorization OUT SCENARIO...
//       One line per SCENARIO, always (a broken file fails its scenario, never drops it):
//       "<scenario> PASS <n> check(s): ids" or "<scenario> FAIL <reason>".
//   node verdict.js server OUT [--ignore SCENARIO:CHECK]... SCENARIO...
//       The same, for the server-<scenario>-<time> folders `conformance server -o OUT` writes,
//       judged like a client scenario; an ignored check is left out whatever its status (it is
//       timing-dependent: it may pass or fail from run to run), and must have run.
//
// A scenario passes only with at least one SUCCESS check and no FAILURE or WARNING (client);
// in authorization mode every check must be SUCCESS. With several folders for one scenario the
// newest is judged. An empty, missing or unreadable checks
// file fails.
"use strict";
const fs = require("fs");
const path = require("path");

function judge(files, strict, ignored = []) {
  if (files.length === 0) return "FAIL no checks.json";
  let checks = [];
  for (const file of files) {
    let parsed;
    try {
      parsed = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      return `FAIL unreadable ${file}: ${e.message}`;
    }
    if (!Array.isArray(parsed)) return `FAIL ${file} is not a list of checks`;
    checks.push(...parsed);
  }
  // A check left out of the verdict must be there and not succeed (else its entry is stale).
  for (const id of ignored) {
    const found = checks.filter((c) => c && c.id === id);
    if (found.length === 0) return `FAIL the ignored check ${id} did not run`;
  }
  checks = checks.filter((c) => !(c && ignored.includes(c.id)));
  if (checks.length === 0) return "FAIL no checks";
  const status = (c) => (c && typeof c.status === "string" ? c.status : "MALFORMED");
  const bad = checks.filter((c) =>
    strict ? status(c) !== "SUCCESS" : ["FAILURE", "WARNING", "MALFORMED"].includes(status(c)),
  );
  if (bad.length) {
    const ids = [...new Set(bad.map((c) => `${c && c.id}=${status(c)}` +
      (c && c.errorMessage ? ` (${c.errorMessage})` : "")))];
    return `FAIL ${checks.length - bad.length}/${checks.length} checks ok; ${ids.join("; ")}`;
  }
  const ok = checks.filter((c) => status(c) === "SUCCESS");
  if (ok.length === 0) return `FAIL no successful check among ${checks.length}`;
  return `PASS ${ok.length} check(s): ${[...new Set(ok.map((c) => c.id))].join(", ")}`;
}

/** One line, whatever the files held (the callers read one verdict per line). */
const oneLine = (text) => text.replace(/\s+/g, " ");

function checksFiles(dir) {
  const found = [];
  const walk = (d) => {
    let entries;
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === "checks.json") found.push(p);
    }
  };
  walk(dir);
  return found.sort();
}

const [mode, out, ...rest] = process.argv.slice(2);
// server mode: "--ignore SCENARIO:CHECK" (repeatable) leaves one check out of a verdict.
const ignore = new Map();
const scenarios = [];
for (let i = 0; i < rest.length; i++) {
  if (mode === "server" && rest[i] === "--ignore" && i + 1 < rest.length) {
    const [s, id] = rest[++i].split(/:(.*)/s);
    ignore.set(s, [...(ignore.get(s) ?? []), id]);
  } else {
    scenarios.push(rest[i]);
  }
}
if (mode === "client" && out) {
  console.log(judge(checksFiles(out), false));
} else if ((mode === "authorization" || mode === "server") && out) {
  let dirs = [];
  try {
    dirs = fs.readdirSync(out);
  } catch {
    dirs = [];
  }
  const prefix = mode === "server" ? "server" : "authorization-server";
  // A server folder name ends in an ISO time, so "tools-list" never takes "tools-list-x"'s.
  const stamp = mode === "server" ? /^\d{4}-\d{2}-\d{2}T/ : /^/;
  for (const s of scenarios) {
    const head = `${prefix}-${s}-`;
    const d = dirs.filter((n) => n.startsWith(head) && stamp.test(n.slice(head.length))).sort().pop();
    const file = d && path.join(out, d, "checks.json");
    const files = file && fs.existsSync(file) ? [file] : [];
    const v = judge(files, mode === "authorization", ignore.get(s) ?? []);
    console.log(oneLine(`${s} ${files.length ? v : "FAIL no checks.json (the scenario did not run)"}`));
  }
} else {
  console.error("usage: node verdict.js client DIR | authorization OUT SCENARIO... | server OUT [--ignore S:CHECK]... SCENARIO...");
  process.exit(2);
}
