// The load and the checks of bench/soak.sh: a closed loop of mixed token-endpoint requests through
// the round-robin proxy (bench/soak-proxy.mjs) in front of two `mcpauth serve` instances, one of
// them killed with SIGKILL half-way; then a verification that nothing the clients were given was
// lost. Prints its part of the summary on stdout; writes the numbers and the failures to
// SOAK_RESULT (JSON). Never prints a token or a secret.
//
//   node soak.mjs
//   env: SOAK_ISSUER (the proxy's URL, the servers' issuer), SOAK_RESOURCE, SOAK_SCOPE,
//        SOAK_CC_ID/SOAK_CC_SECRET (client_credentials client), SOAK_RT_ID/SOAK_RT_SECRET (code +
//        refresh_token client), SOAK_IS_ID/SOAK_IS_SECRET (resource server allowed to introspect),
//        SOAK_POOL (file: one URL-encoded refresh token per line, each the start of one chain),
//        SOAK_DURATION (s), SOAK_CONCURRENCY, SOAK_KILL_PID, SOAK_KILL_AT (s after the start),
//        SOAK_VICTIM (the victim's backend index at the proxy), SOAK_MIX (weights, e.g.
//        "client_credentials=40,refresh_token=45,introspect=10,revoke=5"), SOAK_RESULT (file)
//
// Every request is one of:
//   client_credentials  POST /token grant_type=client_credentials (client_secret_basic); the
//                       access token is kept for introspect/revoke and the final checks
//   refresh_token       POST /token grant_type=refresh_token with a chain's newest refresh token;
//                       each chain has at most one request in flight and takes the successor
//   introspect          POST /introspect of a recent client_credentials token: must be active
//   revoke              POST /revoke of another recent client_credentials token (never one that
//                       is introspected or checked later as active)
// Any answer but 200 (with the expected body) is an error, except 502 `x-soak-lost` from the
// proxy for a request whose connection to the killed instance broke at the kill: "lost in flight".

import http from "node:http";
import { readFileSync, writeFileSync } from "node:fs";

const e = process.env;
const need = (k) => {
  if (!e[k]) throw new Error(`${k} is not set`);
  return e[k];
};
const ISSUER = need("SOAK_ISSUER");
const RESOURCE = need("SOAK_RESOURCE");
const SCOPE = need("SOAK_SCOPE");
const DURATION = Number(need("SOAK_DURATION")) * 1000;
const CONCURRENCY = Number(need("SOAK_CONCURRENCY"));
const KILL_PID = Number(need("SOAK_KILL_PID"));
const KILL_AT = Number(need("SOAK_KILL_AT")) * 1000;
const VICTIM = Number(need("SOAK_VICTIM"));
const RESULT = need("SOAK_RESULT");
const basic = (id, secret) => "Basic " + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64");
const CC = basic(need("SOAK_CC_ID"), need("SOAK_CC_SECRET"));
const RT = basic(need("SOAK_RT_ID"), need("SOAK_RT_SECRET"));
const IS = basic(need("SOAK_IS_ID"), need("SOAK_IS_SECRET"));
const OPS = ["client_credentials", "refresh_token", "introspect", "revoke"];
const MIX = Object.fromEntries(OPS.map((o) => [o, 0]));
for (const part of (e.SOAK_MIX ?? "client_credentials=40,refresh_token=45,introspect=10,revoke=5").split(",")) {
  const [k, v] = part.split("=");
  if (!(k in MIX) || !(Number(v) >= 0)) throw new Error(`bad SOAK_MIX part ${part}`);
  MIX[k] = Number(v);
}
const MIX_TOTAL = OPS.reduce((s, o) => s + MIX[o], 0);

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2, maxFreeSockets: CONCURRENCY * 2 });
const meta = await getJson(`${ISSUER}/.well-known/oauth-authorization-server`);
const TOKEN = meta.token_endpoint;
const INTROSPECT = meta.introspection_endpoint;
const REVOKE = meta.revocation_endpoint;
if (!TOKEN || !INTROSPECT || !REVOKE) throw new Error("the metadata lacks token, introspection or revocation endpoints");

function getJson(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 10_000 }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        try {
          if (res.statusCode !== 200) throw new Error(`GET ${url}: HTTP ${res.statusCode}`);
          resolve(JSON.parse(Buffer.concat(chunks).toString()));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer in 10 s`)));
    req.on("error", reject);
  });
}

/** POST a form; resolves { status, backend, lost, json, error } (never rejects). */
function post(url, auth, form) {
  const body = Buffer.from(new URLSearchParams(form).toString());
  return new Promise((resolve) => {
    const req = http.request(url, {
      method: "POST",
      agent,
      headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded", "content-length": body.length },
    });
    const timer = setTimeout(() => req.destroy(new Error("no answer in 15 s")), 15_000);
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        clearTimeout(timer);
        let json = null;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString());
        } catch {}
        resolve({
          status: res.statusCode,
          backend: res.headers["x-soak-backend"] === undefined ? -1 : Number(res.headers["x-soak-backend"]),
          lost: res.headers["x-soak-lost"] === "1",
          json,
        });
      });
      res.on("error", (err) => {
        clearTimeout(timer);
        resolve({ status: 0, backend: -1, lost: false, json: null, error: err.code ?? err.message });
      });
    });
    req.on("error", (err) => {
      clearTimeout(timer);
      resolve({ status: 0, backend: -1, lost: false, json: null, error: err.code ?? err.message });
    });
    req.end(body);
  });
}

// --- state ------------------------------------------------------------------------------------
const chains = readFileSync(need("SOAK_POOL"), "utf8")
  .split("\n")
  .filter(Boolean)
  .map((line, index) => ({ index, token: decodeURIComponent(line), lostToken: null, state: "idle", rotations: 0, error: null }));
const idle = chains.map((_, i) => i); // FIFO of chains with no request in flight
let idleHead = 0;

class Ring {
  constructor(n) {
    this.a = new Array(n);
    this.n = 0;
    this.i = 0;
  }
  push(v) {
    this.a[this.i] = v;
    this.i = (this.i + 1) % this.a.length;
    if (this.n < this.a.length) this.n++;
  }
  random() {
    return this.n ? this.a[Math.floor(Math.random() * this.n)] : null;
  }
  take() {
    if (!this.n) return null;
    this.i = (this.i - 1 + this.a.length) % this.a.length;
    this.n--;
    const v = this.a[this.i];
    this.a[this.i] = undefined;
    return v;
  }
}
const forIntrospect = new Ring(256); // recent client_credentials tokens, never revoked
const forRevoke = new Ring(256); // recent client_credentials tokens, to revoke
const SAMPLE = 150;
// Backend index -> tokens it issued before the kill (never revoked), as { t, exp }: a reservoir
// sample over the whole time and the last ones before the kill.
const preKill = new Map();
const revoked = []; // { token } revoked with a 200 answer
let ccCount = 0;

const counts = Object.fromEntries(OPS.map((o) => [o, { ok: 0, lost: 0, errors: 0 }]));
const errorKinds = new Map();
const lostInFlight = { total: 0, startedBeforeKill: 0, maxStartAfterKillMs: 0, byOp: Object.fromEntries(OPS.map((o) => [o, 0])) };
const perSecond = []; // [second] -> Map backend -> answered ok
const latencies = [];
let t0 = 0;
let killAtMs = null; // ms since t0
let killError = null;
const failures = [];

function noteError(op, r) {
  const kind = `${op}: ${r.status ? `HTTP ${r.status}` : "no answer"} ${r.json?.error ?? r.error ?? ""}`.trim();
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
  counts[op].errors++;
}

function pickOp() {
  let x = Math.random() * MIX_TOTAL;
  for (const o of OPS) {
    if ((x -= MIX[o]) < 0) return o;
  }
  return OPS[0];
}

// Classifies one answer: "ok", "lost" (in flight at the kill) or "error" (counted).
function classify(op, r, started, ended, okBody) {
  if (r.status === 200 && okBody(r.json)) {
    counts[op].ok++;
    const s = Math.floor(ended / 1000);
    (perSecond[s] ??= new Map()).set(r.backend, (perSecond[s].get(r.backend) ?? 0) + 1);
    return "ok";
  }
  // Lost with the connection to the killed instance: only at the kill (a request started before
  // it, or within 1 s after on a connection the proxy had not yet seen close).
  if (r.status === 502 && r.lost && killAtMs !== null && r.backend === VICTIM && ended >= killAtMs && started < killAtMs + 1000) {
    counts[op].lost++;
    lostInFlight.total++;
    lostInFlight.byOp[op]++;
    if (started < killAtMs) lostInFlight.startedBeforeKill++;
    else lostInFlight.maxStartAfterKillMs = Math.max(lostInFlight.maxStartAfterKillMs, started - killAtMs);
    return "lost";
  }
  noteError(op, r);
  return "error";
}

async function one(op) {
  const started = performance.now() - t0;
  let r;
  let chain = null;
  let token = null;
  switch (op) {
    case "refresh_token": {
      chain = chains[idle[idleHead++]];
      chain.state = "busy";
      r = await post(TOKEN, RT, { grant_type: "refresh_token", refresh_token: chain.token, resource: RESOURCE });
      break;
    }
    case "client_credentials":
      r = await post(TOKEN, CC, { grant_type: "client_credentials", resource: RESOURCE, scope: SCOPE });
      break;
    case "introspect":
      token = forIntrospect.random();
      r = await post(INTROSPECT, IS, { token, token_type_hint: "access_token" });
      break;
    case "revoke":
      token = forRevoke.take();
      r = await post(REVOKE, CC, { token, token_type_hint: "access_token" });
      break;
  }
  const ended = performance.now() - t0;
  latencies.push(ended - started);
  const okBody = {
    client_credentials: (j) => typeof j?.access_token === "string",
    refresh_token: (j) => typeof j?.access_token === "string" && typeof j?.refresh_token === "string" && j.refresh_token !== chain.token,
    introspect: (j) => j?.active === true,
    revoke: () => true,
  }[op];
  const outcome = classify(op, r, started, ended, okBody);
  if (op === "refresh_token") {
    if (outcome === "ok") {
      chain.token = r.json.refresh_token;
      chain.rotations++;
      chain.state = "idle";
      idle.push(chain.index);
    } else if (outcome === "lost") {
      chain.lostToken = chain.token; // ambiguous: spent or not, nobody knows
      chain.token = null;
      chain.state = "lost";
    } else {
      chain.state = "failed";
      chain.error = `HTTP ${r.status} ${r.json?.error ?? r.error ?? ""}`.trim();
    }
  } else if (op === "client_credentials" && outcome === "ok") {
    const at = r.json.access_token;
    if (ccCount++ % 2) {
      forRevoke.push(at);
    } else {
      forIntrospect.push(at);
      if (killAtMs === null) {
        let p = preKill.get(r.backend);
        if (!p) preKill.set(r.backend, (p = { seen: 0, reservoir: [], last: new Ring(SAMPLE) }));
        const item = { t: at, exp: Date.now() + Number(r.json.expires_in ?? 3600) * 1000 };
        p.last.push(item);
        if (++p.seen <= SAMPLE) p.reservoir.push(item);
        else {
          const j = Math.floor(Math.random() * p.seen);
          if (j < SAMPLE) p.reservoir[j] = item;
        }
      }
    }
  } else if (op === "revoke" && outcome === "ok") {
    if (revoked.length < 1000) revoked.push(token);
  }
}

async function worker(deadline) {
  while (performance.now() - t0 < deadline) {
    let op = pickOp();
    if (op === "refresh_token" && idleHead >= idle.length) op = "client_credentials";
    if (op === "introspect" && !forIntrospect.n) op = "client_credentials";
    if (op === "revoke" && !forRevoke.n) op = "client_credentials";
    await one(op);
    if (idleHead > 100_000) {
      idle.splice(0, idleHead);
      idleHead = 0;
    }
  }
}

// --- the run ----------------------------------------------------------------------------------
const line = (s) => console.log(s);
t0 = performance.now();
const startedAt = Date.now();
const killTimer = setTimeout(() => {
  try {
    process.kill(KILL_PID, "SIGKILL");
    killAtMs = performance.now() - t0;
  } catch (err) {
    killError = `kill -9 ${KILL_PID} failed: ${err.code ?? err.message}`;
  }
}, KILL_AT);
await Promise.all(Array.from({ length: CONCURRENCY }, () => worker(DURATION)));
const runMs = performance.now() - t0;
clearTimeout(killTimer);
if (killError) failures.push(killError);
if (killAtMs === null && !killError) failures.push("the victim was never killed (the run ended first)");
const proxyStats = await getJson(`${ISSUER}/__soak/stats`).catch((err) => ({ error: String(err.message) }));

// --- verification -----------------------------------------------------------------------------
// Revocations reach the other instance's cache within 2 s (README): wait past that.
await new Promise((r) => setTimeout(r, 3000));
const verify = {
  chainsOk: 0,
  chainsAmbiguous: 0,
  ambiguousStillValid: 0,
  ambiguousReuseDetected: 0,
  chainFailures: 0,
  preKillActive: {},
  preKillFailures: 0,
  revokedInactive: 0,
  revokedFailures: 0,
};
const verifyErrors = new Map();
const vnote = (what, r) => {
  const k = `${what}: ${r.status ? `HTTP ${r.status}` : "no answer"} ${r.json?.error ?? r.error ?? ""}`.trim();
  verifyErrors.set(k, (verifyErrors.get(k) ?? 0) + 1);
};
async function pool(items, fn) {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(16, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}
await pool(chains, async (c) => {
  if (c.state === "failed") {
    verify.chainFailures++;
    verifyErrors.set(`chain failed during the run: ${c.error}`, (verifyErrors.get(`chain failed during the run: ${c.error}`) ?? 0) + 1);
    return;
  }
  const lost = c.state === "lost";
  const r = await post(TOKEN, RT, { grant_type: "refresh_token", refresh_token: lost ? c.lostToken : c.token, resource: RESOURCE });
  const ok = r.status === 200 && typeof r.json?.refresh_token === "string";
  if (!lost) {
    if (ok) verify.chainsOk++;
    else {
      verify.chainFailures++;
      vnote("final refresh with the newest token", r);
    }
  } else if (ok) {
    verify.chainsAmbiguous++;
    verify.ambiguousStillValid++;
  } else if (r.status === 400 && r.json?.error === "invalid_grant") {
    verify.chainsAmbiguous++;
    verify.ambiguousReuseDetected++;
  } else {
    verify.chainFailures++;
    vnote("refresh with the token in flight at the kill", r);
  }
});
// Only tokens that will not have expired by the time they are checked (--access-token-ttl).
const preKillItems = [];
for (const [b, p] of preKill) {
  const name = b === VICTIM ? "killed" : "survivor";
  verify.preKillActive[name] = { active: 0, checked: 0, expired: 0 };
  for (const item of new Set([...p.reservoir, ...p.last.a.filter(Boolean)])) {
    if (item.exp > Date.now() + 10_000) preKillItems.push({ b, t: item.t });
    else verify.preKillActive[name].expired++;
  }
}
await pool(preKillItems, async ({ b, t }) => {
  const r = await post(INTROSPECT, IS, { token: t, token_type_hint: "access_token" });
  const name = b === VICTIM ? "killed" : "survivor";
  verify.preKillActive[name].checked++;
  if (r.status === 200 && r.json?.active === true) verify.preKillActive[name].active++;
  else {
    verify.preKillFailures++;
    vnote(`introspection of a pre-kill client_credentials token issued by the ${name} instance`, r);
  }
});
await pool(revoked, async (t) => {
  const r = await post(INTROSPECT, IS, { token: t, token_type_hint: "access_token" });
  if (r.status === 200 && r.json?.active === false) verify.revokedInactive++;
  else {
    verify.revokedFailures++;
    vnote("introspection of a revoked token (must be inactive)", r);
  }
});

// --- report -----------------------------------------------------------------------------------
const secs = runMs / 1000;
const total = OPS.reduce((s, o) => s + counts[o].ok, 0);
const errors = OPS.reduce((s, o) => s + counts[o].errors, 0);
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] : 0);
// Throughput: before the kill (from 2 s, warm) and after it (from 1 s after, survivor alone).
const rate = (from, to, backend) => {
  let n = 0;
  for (let s = Math.ceil(from / 1000); s < Math.floor(to / 1000); s++) {
    for (const [b, c] of perSecond[s] ?? []) if (backend === undefined || b === backend) n += c;
  }
  const w = Math.floor(to / 1000) - Math.ceil(from / 1000);
  return w > 0 ? n / w : 0;
};
const killS = killAtMs ?? runMs;
const before = rate(2000, killS);
const beforeVictim = rate(2000, killS, VICTIM);
const after = killAtMs === null ? 0 : rate(killAtMs + 1000, runMs);
const afterVictim = killAtMs === null ? 0 : rate(killAtMs + 1000, runMs, VICTIM);

line(`load: ${secs.toFixed(1)} s, ${CONCURRENCY} requests in flight (closed loop), ${chains.length} refresh chains, mix ${OPS.map((o) => `${o} ${MIX[o]}`).join(" / ")}`);
for (const o of OPS) {
  line(`  ${o.padEnd(19)} ${String(counts[o].ok).padStart(9)} ok  ${(counts[o].ok / secs).toFixed(0).padStart(6)} req/s   errors ${counts[o].errors}   lost in flight ${counts[o].lost}`);
}
line(`  ${"all".padEnd(19)} ${String(total).padStart(9)} ok  ${(total / secs).toFixed(0).padStart(6)} req/s   errors ${errors}   lost in flight ${lostInFlight.total}`);
if (lostInFlight.total) {
  const after = lostInFlight.total - lostInFlight.startedBeforeKill;
  line(
    `  lost in flight: ${lostInFlight.startedBeforeKill} sent before the kill` +
      (after
        ? `, ${after} sent up to ${lostInFlight.maxStartAfterKillMs.toFixed(0)} ms after it on a keep-alive connection to the killed ` +
          `instance the proxy had not yet seen close (not retried: a reset connection may have carried a processed request)`
        : ""),
  );
}
line(`  latency: p50 ${pct(50).toFixed(2)} ms, p99 ${pct(99).toFixed(2)} ms, max ${pct(100).toFixed(0)} ms`);
const chainRot = chains.map((c) => c.rotations).sort((a, b) => a - b);
line(`  rotations per chain: min ${chainRot[0]}, median ${chainRot[chainRot.length >> 1]}, max ${chainRot[chainRot.length - 1]}`);
for (const [k, n] of errorKinds) line(`  ERROR ${n} x ${k}`);
line(
  killAtMs === null
    ? `kill: not done${killError ? ` (${killError})` : ""}`
    : `kill: kill -9 of instance ${VICTIM === 0 ? "A" : "B"} (pid ${KILL_PID}) at ${(killAtMs / 1000).toFixed(1)} s`,
);
line(`  throughput before the kill (both): ${before.toFixed(0)} req/s (killed instance answered ${beforeVictim.toFixed(0)}/s)`);
line(`  throughput after the kill (survivor alone, from kill + 1 s): ${after.toFixed(0)} req/s (${before > 0 ? ((after / before) * 100).toFixed(0) : "-"}% of before; killed instance answered ${afterVictim.toFixed(0)}/s)`);
if (!proxyStats.error) {
  line(
    `  proxy: ${proxyStats.requests} requests, ${proxyStats.retriedAfterRefused} retried after a refused connection, ${proxyStats.allRefused} with no backend; ` +
      proxyStats.backends.map((b) => `${b.index === 0 ? "A" : "B"}: ${b.answered} answered, ${b.refused} refused, ${b.lost} lost, ${b.timeouts} timeouts`).join("; "),
  );
}
line(`verification (after the run, through the proxy, survivor only):`);
line(`  refresh chains: ${verify.chainsOk} verified OK (newest token refreshes), ${verify.chainsAmbiguous} ambiguous-by-kill (${verify.ambiguousStillValid} previous token still valid, ${verify.ambiguousReuseDetected} reuse-detected), ${verify.chainFailures} failures`);
for (const name of ["survivor", "killed"]) {
  const v = verify.preKillActive[name] ?? { active: 0, checked: 0, expired: 0 };
  line(`  client_credentials tokens from before the kill, issued by the ${name} instance: ${v.active}/${v.checked} active${v.expired ? ` (${v.expired} more expired before the check: not counted)` : ""}`);
}
line(`  revoked access tokens: ${verify.revokedInactive}/${revoked.length} inactive`);
for (const [k, n] of verifyErrors) line(`  FAILED ${n} x ${k}`);

if (errors) failures.push(`${errors} request errors`);
if (verify.chainFailures) failures.push(`${verify.chainFailures} refresh chains failed verification`);
if (verify.preKillFailures) failures.push(`${verify.preKillFailures} pre-kill access tokens not active`);
if (verify.revokedFailures) failures.push(`${verify.revokedFailures} revoked access tokens still active or unchecked`);
// Nothing to check is a failure, unless every sampled token had expired (--access-token-ttl
// shorter than the time from the kill to the check).
for (const name of ["killed", "survivor"]) {
  const v = verify.preKillActive[name];
  if (!v?.checked && !v?.expired) failures.push(`no pre-kill access token of the ${name} instance was checked`);
}
if (counts.refresh_token.ok === 0) failures.push("no refresh succeeded");
if (killAtMs !== null && after <= 0) failures.push("the survivor answered nothing after the kill");
if (proxyStats.error) failures.push(`proxy stats: ${proxyStats.error}`);
if (proxyStats.allRefused) failures.push(`${proxyStats.allRefused} requests found no backend`);

writeFileSync(
  RESULT,
  JSON.stringify(
    {
      startedAtMs: startedAt,
      runMs,
      killAtMs,
      counts,
      lostInFlight,
      errors,
      before,
      after,
      verify,
      failures,
    },
    null,
    1,
  ),
);
process.exit(0);
