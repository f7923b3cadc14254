#!/usr/bin/env bash
# On demand, never in CI: the cost of mcpauth's resource-server side, in ONE run on 127.0.0.1
# (targets one after another, never side by side; each gets a warm-up, then
# `wrk -t1 -c$CONNECTIONS -d$DURATION --latency` of an MCP tools/call echo, bench/gateway/tools-call.lua).
#
#   bench/gateway.sh [--duration 10] [--connections 32] [--no-build]
#
# (a) layer overhead: the same trivial axum MCP handler (bench/gateway/mcp-server, its own cargo
#     workspace) served twice: bare, and behind mcpauth-resource's BearerAuthLayer (JwtVerifier,
#     JWKS prefetched) + OriginGuardLayer, with a JWT from `mcpauth serve`. Target: the layers
#     cost < 5% of the throughput.
# (b) `mcpauth gateway --upstream` (embedded authorization server; its token from client_credentials
#     at its /token before the run) in front of the bare trivial handler, vs the TypeScript SDK's
#     own protected server (bench/gateway/ts-bearer-server.mjs: requireBearerAuth whose verifier
#     checks the JWT locally with jose against `mcpauth serve`'s JWKS, stateless Streamable HTTP
#     with JSON answers). Local JWT verification on both sides is the fairest: introspection would
#     add a network round trip to the SDK side only. Target: gateway >= 10x the req/s, lower p99.
# (c) the gateway's RSS (VmRSS from /proc/PID/status): idle after start, and the peak sampled
#     every 0.2 s under the (b) load.
#
# Installs, idempotently: wrk (Debian) when missing, Node 22 (.cache/conformance) and
# interop/gateway's npm packages (.cache/interop-gateway). Builds target/release/mcpauth and the
# bench handler unless --no-build. Raw wrk output goes to .cache/bench/results/gateway-*.txt.

set -uo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
fail() { echo "bench/gateway.sh: $*" >&2; exit 1; }
# shellcheck source=../interop/lib/common.sh
source "$REPO_ROOT/interop/lib/common.sh"

DURATION=10
CONNECTIONS=32
WARMUP=3
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --no-build) export MCPAUTH_NO_BUILD=1; shift ;;
    -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
export NO_PROXY="localhost,127.0.0.1,::1${NO_PROXY:+,$NO_PROXY}" no_proxy="localhost,127.0.0.1,::1${no_proxy:+,$no_proxy}"

# --- installs and builds -------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk (apt-get update; apt-get install -y wrk)"
  sudo=
  ((EUID == 0)) || sudo=sudo
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >&2 ||
    fail "apt-get install wrk failed"
fi
ensure_node
ensure_mcpauth
# shellcheck source=../interop/gateway/lib.sh
source "$REPO_ROOT/interop/gateway/lib.sh"
ensure_gateway_modules
cp "$SCRIPT_DIR/gateway/ts-bearer-server.mjs" "$GW_DIR/src/"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
BENCH_BIN=$TARGET_DIR/release/mcpauth-bench-mcp-server
if [[ ${MCPAUTH_NO_BUILD:-0} != 1 || ! -x $BENCH_BIN ]]; then
  log "cargo build --release --manifest-path bench/gateway/mcp-server/Cargo.toml"
  (cd "$REPO_ROOT" && cargo build --release --locked --manifest-path bench/gateway/mcp-server/Cargo.toml \
    --target-dir "$TARGET_DIR" >&2) || fail "building the bench MCP handler failed"
fi
[[ -x $BENCH_BIN ]] || fail "no $BENCH_BIN"

RESULT_DIR=$REPO_ROOT/.cache/bench/results
mkdir -p "$RESULT_DIR"
LUA=$SCRIPT_DIR/gateway/tools-call.lua

# wrk_parse FILE -> "rps p99_ms non2xx socket_errors"
wrk_parse() {
  awk '
    /^Requests\/sec:/ { rps = $2 }
    $1 == "99%" { v = $2; ms = v + 0
      if (v ~ /us$/) ms = ms / 1000; else if (v ~ /ms$/) ms = ms + 0; else if (v ~ /s$/) ms = ms * 1000
      p99 = ms }
    /Non-2xx or 3xx responses:/ { non = $NF }
    /Socket errors:/ { gsub(/,/, ""); errs = $4 + $6 + $8 + $10 }
    END { printf "%s %.2f %d %d\n", rps, p99, non, errs }' "$1"
}

declare -A RPS P99
INVALID=0
# measure NAME URL TOKEN: warm-up, then the measured run; fills RPS[NAME] and P99[NAME].
measure() {
  local name=$1 url=$2 token=$3 out=$RESULT_DIR/gateway-$1.txt rps p99 non errs code
  code=$(curl -s -o "$out.check" -w '%{http_code}' -X POST "$url" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-11-25' \
    ${token:+-H "authorization: Bearer $token"} \
    --data '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}')
  grep -q '"hello"' "$out.check" && [[ $code == 200 ]] ||
    fail "$name: tools/call at $url answered HTTP $code: $(head -c 300 "$out.check")"
  BENCH_TOKEN=$token wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s -s "$LUA" "$url" >/dev/null 2>&1
  BENCH_TOKEN=$token wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency -s "$LUA" "$url" >"$out" 2>&1 ||
    { cat "$out" >&2; fail "wrk failed against $url"; }
  read -r rps p99 non errs < <(wrk_parse "$out")
  RPS[$name]=$rps P99[$name]=$p99
  printf '  %-34s %10.0f req/s   p99 %8.2f ms   non-2xx %d   socket errors %d\n' "$name" "$rps" "$p99" "$non" "$errs"
  if ((non > 0 || errs > 0)); then
    INVALID=1
    echo "    INVALID: $non non-2xx, $errs socket errors (see $out)"
  fi
}

wait_http() { # wait_http URL PID LOG
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "$1: the server exited at start"; }
    sleep 0.1
  done
  cat "$3" >&2
  fail "$1 does not answer"
}
start_bench_server() { # start_bench_server LOG ARGS... ; sets BENCH_PID
  "$BENCH_BIN" "$@" </dev/null >>"$1" 2>&1 &
  BENCH_PID=$!
  _CLEAN_PIDS+=("$BENCH_PID")
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

new_tmpdir HOME_DIR
BARE_PORT=$(free_port)
LAYER_PORT=$(free_port)
TS_PORT=$(free_port)
LAYER_URL=http://127.0.0.1:$LAYER_PORT/mcp
TS_URL=http://127.0.0.1:$TS_PORT/mcp

# The authorization server for (a) and the SDK side of (b).
SERVE_DB="sqlite://$HOME_DIR/serve.db?mode=rwc"
client=$(mcpauth_cmd "$HOME_DIR" clients add --database "$SERVE_DB" --json --id bench --grant-type client_credentials) ||
  fail "mcpauth clients add failed"
SECRET=$(json_field client_secret <<<"$client")
start_serve "$HOME_DIR" "$HOME_DIR/serve.log" --no-rate-limits --database "$SERVE_DB" \
  --resource "$LAYER_URL" --resource "$TS_URL"
SERVE_ISSUER=$ISSUER
LAYER_TOKEN=$(token_cc "$SERVE_ISSUER/token" bench "$SECRET" "$LAYER_URL")
TS_TOKEN=$(token_cc "$SERVE_ISSUER/token" bench "$SECRET" "$TS_URL")

echo "mcpauth gateway / resource-layer benchmark: wrk -t1 -c$CONNECTIONS -d${DURATION}s (after ${WARMUP}s warm-up), tools/call echo, $(nproc) cores"
echo
echo "(a) the same trivial axum MCP handler, without and with the mcpauth-resource layers"
start_bench_server "$HOME_DIR/bare.log" --bind "127.0.0.1:$BARE_PORT"
BARE_PID=$BENCH_PID
wait_http "http://127.0.0.1:$BARE_PORT/healthz" "$BARE_PID" "$HOME_DIR/bare.log"
start_bench_server "$HOME_DIR/layer.log" --bind "127.0.0.1:$LAYER_PORT" --issuer "$SERVE_ISSUER" --resource "$LAYER_URL"
LAYER_PID=$BENCH_PID
wait_http "http://127.0.0.1:$LAYER_PORT/healthz" "$LAYER_PID" "$HOME_DIR/layer.log"
measure "axum handler, no auth" "http://127.0.0.1:$BARE_PORT/mcp" ""
measure "axum handler + mcpauth-resource" "$LAYER_URL" "$LAYER_TOKEN"
kill -TERM "$LAYER_PID" 2>/dev/null

echo
echo "(b) authenticated tools/call: mcpauth gateway --upstream (trivial handler) vs the TypeScript SDK server"
GW_DB="sqlite://$HOME_DIR/gateway.db?mode=rwc"
gwclient=$(mcpauth_cmd "$HOME_DIR" clients add --database "$GW_DB" --json --id bench-gw --grant-type client_credentials) ||
  fail "mcpauth clients add (gateway) failed"
start_gateway "$HOME_DIR" "$HOME_DIR/gateway.log" --database "$GW_DB" --upstream "http://127.0.0.1:$BARE_PORT/mcp"
GW_TOKEN=$(token_cc "$ISSUER/token" bench-gw "$(json_field client_secret <<<"$gwclient")" "$GATEWAY_URL")
sleep 1
RSS_IDLE=$(rss_kb "$GATEWAY_PID")
RSS_LOG=$HOME_DIR/rss.txt
( while kill -0 "$GATEWAY_PID" 2>/dev/null; do rss_kb "$GATEWAY_PID"; sleep 0.2; done ) >"$RSS_LOG" &
SAMPLER=$!
measure "mcpauth gateway --upstream" "$GATEWAY_URL" "$GW_TOKEN"
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
RSS_PEAK=$(sort -n "$RSS_LOG" | tail -n1)
kill -TERM "$GATEWAY_PID" 2>/dev/null
(cd "$GW_DIR/src" && exec "$NODE" ts-bearer-server.mjs "$TS_PORT" "$SERVE_ISSUER") </dev/null >>"$HOME_DIR/ts.log" 2>&1 &
TS_PID=$!
_CLEAN_PIDS+=("$TS_PID")
wait_http "http://127.0.0.1:$TS_PORT/healthz" "$TS_PID" "$HOME_DIR/ts.log"
measure "TypeScript SDK requireBearerAuth" "$TS_URL" "$TS_TOKEN"
TS_RSS=$(rss_kb "$TS_PID")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
overhead=$(awk -v a="${RPS[axum handler, no auth]}" -v b="${RPS[axum handler + mcpauth-resource]}" 'BEGIN { printf "%.1f", (a - b) / a * 100 }')
gw_x=$(ratio "${RPS[mcpauth gateway --upstream]}" "${RPS[TypeScript SDK requireBearerAuth]}")
p99_x=$(ratio "${P99[TypeScript SDK requireBearerAuth]}" "${P99[mcpauth gateway --upstream]}")
echo
echo "(c) mcpauth gateway RSS: ${RSS_IDLE:-?} kB idle, ${RSS_PEAK:-?} kB peak under load (TypeScript SDK server after its run: ${TS_RSS:-?} kB)"
echo
echo "Summary"
printf '  layer cost:     %s%% of the bare handler'"'"'s req/s            (target < 5%%)   %s\n' "$overhead" \
  "$(awk -v o="$overhead" 'BEGIN { print (o < 5) ? "MET" : "MISSED" }')"
printf '  gateway vs SDK: %sx req/s, p99 %s ms vs %s ms (%sx lower)  (target >= 10x, lower p99)   %s\n' "$gw_x" \
  "${P99[mcpauth gateway --upstream]}" "${P99[TypeScript SDK requireBearerAuth]}" "$p99_x" \
  "$(awk -v x="$gw_x" -v a="${P99[mcpauth gateway --upstream]}" -v b="${P99[TypeScript SDK requireBearerAuth]}" 'BEGIN { print (x >= 10 && a < b) ? "MET" : "MISSED" }')"
printf '  gateway RSS:    %s MiB peak\n' "$(awk -v k="${RSS_PEAK:-0}" 'BEGIN { printf "%.1f", k / 1024 }')"
((INVALID == 0)) || { echo "some runs had errors: the numbers above are not valid"; exit 1; }
