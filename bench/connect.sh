#!/usr/bin/env bash
# `mcpauth connect` vs `mcp-remote` (npm), on demand (not CI), in one run against the same local
# server: `mcpauth gateway --demo` on 127.0.0.1 (embedded authorization server, tool `add`).
#
#   bench/connect.sh [--no-build] [--runs N] [--seconds S] [--window W]
#
# 1. Both proxies log in once (bench/connect/driver.mjs plays the browser on the gateway's pages
#    from the authorization URL each prints on stderr), so both then start with a cached token.
# 2. Start-up: N times each, alternating, a minimal stdio client (the same for both, no SDK)
#    spawns the proxy, sends initialize, notifications/initialized, tools/list, and records the
#    time from spawn to the tools/list answer and VmRSS/VmHWM from /proc/PID/status right then.
#    mcp-remote runs as `node …/mcp-remote/dist/proxy.js URL PORT` (no npx in the measurement).
# 3. Relay throughput: tools/call add for S seconds with W requests in flight, through
#    `mcpauth connect`, through mcp-remote, and directly over HTTP (Node fetch, keep-alive, same
#    token) as the ceiling.
#
# Targets (DESIGN.md "Performance targets"): first tools/list at least 10x sooner than
# mcp-remote, at most a tenth of its memory. Ratios are printed, never asserted.
# Installs what interop/run-connect installs (.cache/conformance for Node 22,
# .cache/interop-connect for mcp-remote and the SDK).

set -uo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
fail() { echo "bench/connect.sh: $*" >&2; exit 1; }
# shellcheck source=../interop/lib/common.sh
source "$REPO_ROOT/interop/lib/common.sh"
# shellcheck source=../interop/connect/install.sh
source "$REPO_ROOT/interop/connect/install.sh"

RUNS=10
SECONDS_=5
WINDOW=16
while (($#)); do
  case $1 in
    --no-build) export MCPAUTH_NO_BUILD=1; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
export NO_PROXY="localhost,127.0.0.1,::1${NO_PROXY:+,$NO_PROXY}" no_proxy="localhost,127.0.0.1,::1${no_proxy:+,$no_proxy}"

ensure_node
ensure_mcpauth
ensure_connect_modules
MCP_REMOTE=$CONNECT_DIR/node_modules/mcp-remote/dist/proxy.js
[[ -f $MCP_REMOTE ]] || fail "no mcp-remote at $MCP_REMOTE"
MCP_REMOTE_VERSION=$(_pkg_version "$CONNECT_DIR/node_modules/mcp-remote")
DRIVER=$REPO_ROOT/bench/connect/driver.mjs

new_tmpdir home
log "mcpauth gateway --demo"
env -u MCP_CLIENT_ID -u MCP_CLIENT_SECRET -u MCPAUTH_CLIENT_SECRET -u MCPAUTH_DATABASE_URL \
  MCPAUTH_HOME="$home/gateway" RUST_LOG=warn \
  "$MCPAUTH_BIN" gateway --demo --bind 127.0.0.1:0 </dev/null >"$home/gateway.log" 2>&1 &
GATEWAY_PID=$!
_CLEAN_PIDS+=("$GATEWAY_PID")
for _ in $(seq 1 300); do
  grep -q "Press Ctrl-C" "$home/gateway.log" && break
  kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$home/gateway.log" >&2; fail "the gateway exited at start"; }
  sleep 0.1
done
URL=$(sed -n 's/^[[:space:]]*MCP server:[[:space:]]*//p' "$home/gateway.log" | head -n1)
PASSWORD_DEMO=$(sed -n 's/^[[:space:]]*demo login:.*password[[:space:]]*//p' "$home/gateway.log" | head -n1)
[[ -n $URL && -n $PASSWORD_DEMO ]] || { cat "$home/gateway.log" >&2; fail "no URL or demo password in the gateway's banner"; }
log "gateway at $URL"

export MCPAUTH_HOME=$home/mcpauth MCP_REMOTE_CONFIG_DIR=$home/mcp-remote RUST_LOG=warn BROWSER=true
unset MCP_CLIENT_ID MCP_CLIENT_SECRET MCPAUTH_CLIENT_SECRET
CB_PORT=$(free_port)
CONNECT_CMD=("$MCPAUTH_BIN" connect "$URL" --no-browser)
REMOTE_CMD=("$NODE" "$MCP_REMOTE" "$URL" "$CB_PORT")

log "logging both proxies in once (through the gateway's pages)"
"$NODE" "$DRIVER" login "$URL" "$PASSWORD_DEMO" -- "${CONNECT_CMD[@]}" || fail "mcpauth connect could not log in"
"$NODE" "$DRIVER" login "$URL" "$PASSWORD_DEMO" -- "${REMOTE_CMD[@]}" || fail "mcp-remote could not log in"
TOKEN=$("$MCPAUTH_BIN" token "$URL") || fail "mcpauth token gave no token"

log "start-up: $RUNS runs each, alternating"
"$NODE" "$DRIVER" startup 1 -- "${CONNECT_CMD[@]}" >/dev/null || fail "warm-up (connect) failed"
"$NODE" "$DRIVER" startup 1 -- "${REMOTE_CMD[@]}" >/dev/null || fail "warm-up (mcp-remote) failed"
for _ in $(seq 1 "$RUNS"); do
  "$NODE" "$DRIVER" startup 1 -- "${CONNECT_CMD[@]}" >>"$home/c.lines" || fail "start-up run (connect) failed"
  "$NODE" "$DRIVER" startup 1 -- "${REMOTE_CMD[@]}" >>"$home/r.lines" || fail "start-up run (mcp-remote) failed"
done

log "relay throughput: tools/call add, ${SECONDS_}s each, $WINDOW in flight"
DIRECT=$("$NODE" "$DRIVER" direct "$SECONDS_" "$WINDOW" "$URL" "$TOKEN") || fail "direct HTTP run failed"
VIA_CONNECT=$("$NODE" "$DRIVER" relay "$SECONDS_" "$WINDOW" -- "${CONNECT_CMD[@]}") || fail "relay run (connect) failed"
VIA_REMOTE=$("$NODE" "$DRIVER" relay "$SECONDS_" "$WINDOW" -- "${REMOTE_CMD[@]}") || fail "relay run (mcp-remote) failed"
WRK='{"rps":0,"bad":0}'
if command -v wrk >/dev/null; then
  # A session for wrk (the gateway may require one), opened like any client would.
  SESSION=$(curl -sS -D - -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' \
    --data '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"wrk","version":"0"}}}' \
    "$URL" | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d:[[:space:]]*//p' | tr -d '\r')
  out=$(BENCH_TOKEN=$TOKEN BENCH_SESSION=$SESSION wrk -t1 -c"$WINDOW" -d"${SECONDS_}s" \
    -s "$REPO_ROOT/bench/connect/tools-call.lua" "$URL" 2>&1) || fail "wrk failed: $out"
  read -r _ n bad rps <<<"$(grep '^WRK_RESULT' <<<"$out")"
  ((bad == 0)) || fail "wrk saw $bad bad answers: $out"
  WRK="{\"rps\":$rps,\"bad\":$bad}"
else
  log "no wrk (apt-get install wrk): the direct HTTP ceiling is left out"
fi

WINDOW=$WINDOW "$NODE" - "$home/c.lines" "$home/r.lines" "$DIRECT" "$VIA_CONNECT" "$VIA_REMOTE" "$MCP_REMOTE_VERSION" "$(nproc)" "$WRK" <<'EOF'
const fs = require("fs");
const [cFile, rFile, direct, viaC, viaR, rv, cpus, wrk] = process.argv.slice(2);
const w = JSON.parse(wrk);
const merge = (f) => fs.readFileSync(f, "utf8").trim().split("\n").map(JSON.parse)
  .reduce((a, o) => ({ ms: [...a.ms, ...o.ms], rssKb: [...a.rssKb, ...o.rssKb], hwmKb: [...a.hwmKb, ...o.hwmKb] }), { ms: [], rssKb: [], hwmKb: [] });
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const c = merge(cFile), r = merge(rFile);
const d = JSON.parse(direct), vc = JSON.parse(viaC), vr = JSON.parse(viaR);
const f1 = (x) => x.toFixed(1), mb = (kb) => (kb / 1024).toFixed(1) + " MiB";
console.log(`\nmcpauth connect vs mcp-remote ${rv}, same mcpauth gateway --demo, cached token, ${c.ms.length} runs each (median), ${cpus} CPUs`);
console.log(`                           mcpauth connect   mcp-remote      ratio`);
const row = (name, a, b, fmt, better) => console.log(`${name.padEnd(27)}${fmt(a).padEnd(18)}${fmt(b).padEnd(16)}${(b / a).toFixed(1)}x ${better}`);
row("spawn -> tools/list answer", med(c.ms), med(r.ms), (x) => f1(x) + " ms", "faster (target >= 10x)");
row("VmRSS at that point", med(c.rssKb), med(r.rssKb), mb, "less memory (target >= 10x)");
row("VmHWM (peak RSS)", med(c.hwmKb), med(r.hwmKb), mb, "less memory (target >= 10x)");
console.log(`  min/max ms: connect ${f1(Math.min(...c.ms))}/${f1(Math.max(...c.ms))}, mcp-remote ${f1(Math.min(...r.ms))}/${f1(Math.max(...r.ms))}`);
console.log(`\nrelay throughput, tools/call add (requests/s)`);
if (w.rps) console.log(`  direct HTTP (wrk, -c${process.env.WINDOW})    ${f1(w.rps)}   (the server's ceiling)`);
console.log(`  direct HTTP (Node fetch)   ${f1(d.rps)}   (the driver's own HTTP client)`);
console.log(`  via mcpauth connect        ${f1(vc.rps)}   (${w.rps ? (100 * vc.rps / w.rps).toFixed(0) + "% of wrk, " : ""}${(100 * vc.rps / d.rps).toFixed(0)}% of Node fetch; peak RSS ${mb(vc.hwmKb)}; CPU: proxy ${vc.proxyCores.toFixed(2)}, driver ${vc.driverCores.toFixed(2)} cores)`);
console.log(`  via mcp-remote             ${f1(vr.rps)}   (${w.rps ? (100 * vr.rps / w.rps).toFixed(0) + "% of wrk, " : ""}${(100 * vr.rps / d.rps).toFixed(0)}% of Node fetch; peak RSS ${mb(vr.hwmKb)}; CPU: proxy ${vr.proxyCores.toFixed(2)}, driver ${vr.driverCores.toFixed(2)} cores)`);
console.log(`  mcpauth connect / mcp-remote: ${(vc.rps / vr.rps).toFixed(1)}x`);
const ok1 = med(r.ms) / med(c.ms) >= 10, ok2 = med(r.hwmKb) / med(c.hwmKb) >= 10;
console.log(`\ntargets: start-up ${ok1 ? "MET" : "MISSED"}, memory ${ok2 ? "MET" : "MISSED"}`);
EOF
