// A small round-robin HTTP reverse proxy for bench/soak.sh: two `mcpauth serve` instances on one
// PostgreSQL database behind one URL (their common --issuer), so they behave as one server.
//
//   node soak-proxy.mjs PORT BACKEND...        (BACKEND: host:port; PORT 0 picks one)
//
// Prints "listening PORT" on stdout once it accepts connections. Each request's body is read
// whole (token-endpoint forms are small), then sent to the next backend in turn over a keep-alive
// connection; the answer goes back with `x-soak-backend: INDEX` (0-based) added.
//
// A dead backend: a request whose connection to it was refused (ECONNREFUSED: nothing was sent,
// so nothing can have been processed) is sent to the next backend instead, and the refusing
// backend is skipped for 500 ms. Any other failure after the request may have reached a backend
// (a reset or closed connection, no answer in 10 s) is never retried, since the backend may have
// acted on it: the client gets 502 with `x-soak-lost: 1` (connection lost with the request in
// flight) or 504 with `x-soak-proxy-error: timeout`.
//
// GET /__soak/stats answers the counters as JSON (never forwarded).

import http from "node:http";

const [portArg, ...backendArgs] = process.argv.slice(2);
if (portArg === undefined || backendArgs.length === 0) {
  console.error("usage: node soak-proxy.mjs PORT BACKEND...");
  process.exit(2);
}
const TIMEOUT_MS = 10_000;
const DOWN_MS = 500;
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"]);

const backends = backendArgs.map((b, index) => {
  const m = b.match(/^\[?([^\]]+?)\]?:(\d+)$/);
  if (!m) throw new Error(`bad backend ${b}`);
  return {
    index,
    host: m[1],
    port: Number(m[2]),
    agent: new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 }),
    downUntil: 0,
    forwarded: 0,
    answered: 0,
    refused: 0,
    lost: 0,
    timeouts: 0,
  };
});
const stats = { requests: 0, retriedAfterRefused: 0, allRefused: 0 };
let next = 0;

// Backends in the order to try for one request: round-robin, skipping those recently refused
// (each still tried last, so a request never fails while some backend might be up).
function order() {
  const start = next++ % backends.length;
  const now = Date.now();
  const up = [];
  const down = [];
  for (let i = 0; i < backends.length; i++) {
    const b = backends[(start + i) % backends.length];
    (b.downUntil > now ? down : up).push(b);
  }
  return up.concat(down);
}

function forward(b, req, body) {
  return new Promise((resolve) => {
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
    headers["content-length"] = String(body.length);
    b.forwarded++;
    const up = http.request({
      host: b.host,
      port: b.port,
      method: req.method,
      path: req.url,
      headers,
      agent: b.agent,
    });
    let done = false;
    const finish = (r) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        resolve(r);
      }
    };
    const timer = setTimeout(() => {
      up.destroy(new Error("timeout"));
      finish({ kind: "timeout" });
    }, TIMEOUT_MS);
    up.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => finish({ kind: "answer", res, body: Buffer.concat(chunks) }));
      res.on("error", (err) => finish({ kind: "lost", err }));
      res.on("aborted", () => finish({ kind: "lost", err: new Error("aborted") }));
    });
    up.on("error", (err) => {
      // ECONNREFUSED can only come from connect(): not a byte of the request left this process.
      finish({ kind: err.code === "ECONNREFUSED" ? "refused" : "lost", err });
    });
    up.end(body);
  });
}

function reply(res, status, headers, body) {
  if (res.writableEnded || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json", ...headers, "content-length": body.length });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  if (req.url === "/__soak/stats") {
    const body = Buffer.from(
      JSON.stringify({
        ...stats,
        backends: backends.map(({ index, forwarded, answered, refused, lost, timeouts }) => ({
          index,
          forwarded,
          answered,
          refused,
          lost,
          timeouts,
        })),
      }),
    );
    return reply(res, 200, {}, body);
  }
  stats.requests++;
  const chunks = [];
  try {
    for await (const c of req) chunks.push(c);
  } catch {
    return; // the client went away
  }
  const body = Buffer.concat(chunks);
  let tried = 0;
  for (const b of order()) {
    if (tried++) stats.retriedAfterRefused++;
    const r = await forward(b, req, body);
    if (r.kind === "refused") {
      b.refused++;
      b.downUntil = Date.now() + DOWN_MS;
      continue;
    }
    if (r.kind === "timeout") {
      b.timeouts++;
      return reply(res, 504, { "x-soak-proxy-error": "timeout", "x-soak-backend": String(b.index) }, Buffer.from('{"error":"soak_proxy_timeout"}'));
    }
    if (r.kind === "lost") {
      b.lost++;
      return reply(res, 502, { "x-soak-lost": "1", "x-soak-backend": String(b.index) }, Buffer.from('{"error":"soak_proxy_lost_in_flight"}'));
    }
    b.answered++;
    const headers = {};
    for (const [k, v] of Object.entries(r.res.headers)) if (!HOP.has(k) && k !== "content-length") headers[k] = v;
    headers["x-soak-backend"] = String(b.index);
    return reply(res, r.res.statusCode, headers, r.body);
  }
  stats.allRefused++;
  reply(res, 503, { "x-soak-proxy-error": "all-refused" }, Buffer.from('{"error":"soak_proxy_no_backend"}'));
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.on("clientError", (_err, socket) => socket.destroy());
server.listen(Number(portArg), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close();
    for (const b of backends) b.agent.destroy();
    process.exit(0);
  });
}
