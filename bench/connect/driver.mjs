// The measuring side of bench/connect.sh: a minimal stdio MCP client (newline-delimited
// JSON-RPC, no SDK, so it costs the same for every proxy) and a direct HTTP client.
//
//   node driver.mjs login   URL PASSWORD -- CMD ARGS…   start a proxy, play the browser on the
//                                                       authorization URL it prints on stderr
//                                                       (mcpauth gateway's pages), wait for the
//                                                       initialize answer, exit
//   node driver.mjs startup RUNS -- CMD ARGS…           RUNS times: spawn, initialize,
//                                                       notifications/initialized, tools/list;
//                                                       prints JSON {ms:[…], rssKb:[…], hwmKb:[…]}
//                                                       (ms = spawn -> tools/list answer; RSS
//                                                       read from /proc right after it)
//   node driver.mjs relay   SECONDS WINDOW -- CMD ARGS… tools/call add through the proxy with
//                                                       WINDOW requests in flight; prints JSON
//                                                       {rps, n}
//   node driver.mjs direct  SECONDS WINDOW URL TOKEN    the same straight over HTTP (keep-alive)
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { loginAndConsent } from "../../interop/lib/http-login.mjs";

const [mode, ...rest] = process.argv.slice(2);
const dash = rest.indexOf("--");
const opts = dash >= 0 ? rest.slice(0, dash) : rest;
const cmd = dash >= 0 ? rest.slice(dash + 1) : [];

const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "bench", version: "0" } },
};

/** A spawned stdio MCP peer with request/answer matching by id. */
class Peer {
  constructor(argv, { onStderrLine } = {}) {
    this.t0 = process.hrtime.bigint();
    this.proc = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    this.waiting = new Map();
    this.stderr = "";
    let buf = "";
    this.proc.stdout.setEncoding("utf8");
    this.proc.stdout.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let m;
        try {
          m = JSON.parse(line);
        } catch {
          continue;
        }
        const w = this.waiting.get(m.id);
        if (w) {
          this.waiting.delete(m.id);
          w(m);
        }
      }
    });
    let ebuf = "";
    this.proc.stderr.setEncoding("utf8");
    this.proc.stderr.on("data", (chunk) => {
      this.stderr += chunk;
      ebuf += chunk;
      let nl;
      while ((nl = ebuf.indexOf("\n")) >= 0) {
        onStderrLine?.(ebuf.slice(0, nl));
        ebuf = ebuf.slice(nl + 1);
      }
    });
    this.exited = new Promise((r) => this.proc.on("exit", r));
  }
  send(m) {
    this.proc.stdin.write(JSON.stringify(m) + "\n");
  }
  request(m, ms = 60000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to ${m.method} in ${ms} ms\n${this.stderr}`)), ms);
      this.waiting.set(m.id, (a) => {
        clearTimeout(t);
        resolve(a);
      });
      this.send(m);
    });
  }
  async initialize(ms) {
    const a = await this.request(INIT, ms);
    if (!a.result) throw new Error(`initialize failed: ${JSON.stringify(a)}\n${this.stderr}`);
    this.send({ jsonrpc: "2.0", method: "notifications/initialized" });
  }
  async stop() {
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 3000);
    await this.exited;
    clearTimeout(t);
  }
}

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
function procCpu(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // clock ticks; USER_HZ is 100 on Linux
}

function procStatus(pid) {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k) => Number(s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

async function login(url, password) {
  let done;
  const authUrl = new Promise((r) => (done = r));
  const peer = new Peer(cmd, {
    onStderrLine: (l) => {
      const m = l.match(/(https?:\/\/\S+\/authorize\?\S+)/);
      if (m) done(m[1]);
    },
  });
  const browser = authUrl.then(async (u) => {
    const back = await loginAndConsent(u, { username: "demo", password });
    const r = await fetch(back, { redirect: "manual" });
    await r.text();
  });
  const init = peer.initialize(60000);
  await Promise.race([init, browser.then(() => init)]);
  const tools = await peer.request({ jsonrpc: "2.0", id: 2, method: "tools/list", params: {} });
  if (!tools.result) throw new Error(`tools/list failed after login: ${JSON.stringify(tools)}`);
  await peer.stop();
}

async function startup(runs) {
  const ms = [];
  const rssKb = [];
  const hwmKb = [];
  for (let i = 0; i < runs; i++) {
    const peer = new Peer(cmd);
    await peer.initialize(30000);
    const a = await peer.request({ jsonrpc: "2.0", id: 2, method: "tools/list", params: {} }, 30000);
    const t = Number(process.hrtime.bigint() - peer.t0) / 1e6;
    if (!a.result?.tools?.length) throw new Error(`tools/list failed: ${JSON.stringify(a)}\n${peer.stderr}`);
    const st = procStatus(peer.proc.pid);
    ms.push(t);
    rssKb.push(st.rss);
    hwmKb.push(st.hwm);
    await peer.stop();
  }
  console.log(JSON.stringify({ ms, rssKb, hwmKb }));
}

const call = (id) => ({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "add", arguments: { a: id, b: 1 } } });

async function loadLoop(seconds, window, one) {
  const end = Date.now() + seconds * 1000;
  let n = 0;
  let next = 10;
  const worker = async () => {
    while (Date.now() < end) {
      const id = next++;
      const a = await one(id);
      if (a.result?.content?.[0]?.text !== String(id + 1)) throw new Error(`bad answer: ${JSON.stringify(a)}`);
      n++;
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: window }, worker));
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { rps: n / s, n };
}

async function relay(seconds, window) {
  const peer = new Peer(cmd);
  await peer.initialize(30000);
  // Warm up: one call so the connection pool and the token are ready.
  await peer.request(call(9), 30000);
  const cpu0 = procCpu(peer.proc.pid);
  const me0 = process.cpuUsage();
  const r = await loadLoop(seconds, window, (id) => peer.request(call(id), 30000));
  const st = procStatus(peer.proc.pid);
  const proxyCpu = procCpu(peer.proc.pid) - cpu0;
  const me = process.cpuUsage(me0);
  await peer.stop();
  // CPU use relative to the run's wall time (1.0 = one core busy), to see who is the bottleneck.
  console.log(JSON.stringify({ ...r, rssKb: st.rss, hwmKb: st.hwm, proxyCores: proxyCpu / seconds, driverCores: (me.user + me.system) / 1e6 / seconds }));
}

async function direct(seconds, window, url, token) {
  const headers = {
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
  };
  const post = async (m, extra = {}) => {
    const r = await fetch(url, { method: "POST", headers: { ...headers, ...extra }, body: JSON.stringify(m) });
    const text = await r.text();
    return { r, text };
  };
  const parse = (text) => {
    const t = text.trim();
    if (t.startsWith("{")) return JSON.parse(t);
    // SSE: the last data: line carries the answer.
    const data = t.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim());
    return JSON.parse(data[data.length - 1]);
  };
  const init = await post(INIT);
  const sid = init.r.headers.get("mcp-session-id");
  const session = sid ? { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" } : { "mcp-protocol-version": "2025-06-18" };
  await post({ jsonrpc: "2.0", method: "notifications/initialized" }, session);
  const r = await loadLoop(seconds, window, async (id) => parse((await post(call(id), session)).text));
  if (sid) await fetch(url, { method: "DELETE", headers: { authorization: headers.authorization, ...session } }).catch(() => {});
  console.log(JSON.stringify(r));
}

try {
  if (mode === "login") await login(opts[0], opts[1]);
  else if (mode === "startup") await startup(Number(opts[0]));
  else if (mode === "relay") await relay(Number(opts[0]), Number(opts[1]));
  else if (mode === "direct") await direct(Number(opts[0]), Number(opts[1]), opts[2], opts[3]);
  else throw new Error(`unknown mode ${mode}`);
  process.exit(0);
} catch (e) {
  console.error(`driver ${mode}: ${e?.stack ?? e}`);
  process.exit(1);
}
