// A streaming HTTP proxy for conformance/run-server: the conformance suite has no option for an
// Authorization header, so this proxy, listening where the gateway's --public-url points, adds
// `Authorization: Bearer <token>` to every request that carries none and passes everything else
// through as received: method, path, every header (Host, Origin, Mcp-*, Last-Event-ID, ...) in
// its original order and spelling, and the body; the answer's status, headers and body come back
// the same way, each chunk as it arrives (SSE streams are never buffered).
//
//   node bearer-proxy.mjs LISTEN_PORT TARGET_PORT TOKEN_FILE
//
// TOKEN_FILE is read on every request: the harness starts the proxy before the gateway (whose
// public URL is the proxy's), gets a token through it, then writes the file. Until then requests
// pass without a token. The token is never logged. The proxy listens on 127.0.0.1 only.
import { readFileSync } from "node:fs";
import http from "node:http";

const [listenPort, targetPort, tokenFile] = process.argv.slice(2);
if (!/^\d+$/.test(listenPort ?? "") || !/^\d+$/.test(targetPort ?? "") || !tokenFile) {
  console.error("usage: node bearer-proxy.mjs LISTEN_PORT TARGET_PORT TOKEN_FILE");
  process.exit(2);
}

function token() {
  try {
    return readFileSync(tokenFile, "utf8").trim();
  } catch {
    return "";
  }
}

/** rawHeaders ([name, value, name, value, ...]) with Authorization added when absent. */
function withBearer(raw) {
  const out = [...raw];
  const hasAuth = raw.some((v, i) => i % 2 === 0 && v.toLowerCase() === "authorization");
  const t = token();
  if (!hasAuth && t) out.push("Authorization", `Bearer ${t}`);
  return out;
}

const agent = new http.Agent({ keepAlive: true });
const server = http.createServer((req, res) => {
  req.socket.setNoDelay(true);
  const upstream = http.request({
    host: "127.0.0.1",
    port: Number(targetPort),
    method: req.method,
    path: req.url,
    headers: withBearer(req.rawHeaders),
    agent,
    // Keep the client's framing: no automatic Date/Connection handling beyond Node's own.
    setHost: false,
  });
  upstream.on("response", (answer) => {
    res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
    res.flushHeaders();
    answer.on("data", (chunk) => res.write(chunk));
    answer.on("end", () => res.end());
    answer.on("error", () => res.destroy());
  });
  upstream.on("error", (e) => {
    if (!res.headersSent) {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(`bearer-proxy: upstream error: ${e.code ?? e.message}\n`);
    } else {
      res.destroy();
    }
  });
  // A client that goes away (e.g. closing an SSE stream) ends the upstream request too.
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
});
server.listen(Number(listenPort), "127.0.0.1", () => {
  console.error(`bearer-proxy: 127.0.0.1:${listenPort} -> 127.0.0.1:${targetPort}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close();
    agent.destroy();
    process.exit(0);
  });
}
