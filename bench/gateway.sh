#!/usr/bin/env bash
# On demand, never in CI: the cost of mcpauth's resource-server side, in ONE run on 127.0.0.1
# (targets one after another, never side by side; each gets a warm-up, then
# `wrk -t1 -c$CONNECTIONS -d$DURATION --latency` of an MCP tools/call echo).
#
#   bench/gateway.sh [--mode all|http|stdio|metrics] [--duration 10] [--connections 32] [--no-build]
#
# --mode http (bench/gateway/tools-call.lua):
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
# --mode stdio (bench/gateway/tools-call-session.lua):
# (d) `mcpauth gateway -- COMMAND` (embedded authorization server, token from client_credentials;
#     one initialize for the Mcp-Session-Id, then wrk in that session, a fresh JSON-RPC id per
#     request) vs the SAME stdio server driven directly by a local client
#     (mcpauth-bench-stdio-client: $CONNECTIONS pipelined requests in flight, like wrk's
#     connections, for the same warm-up and duration). Two servers: the trivial one
#     (`mcpauth-bench-mcp-server --stdio`) and the TypeScript SDK's (interop/gateway/server.mjs
#     --stdio), the realistic upstream. CPU per call: utime + stime (/proc/PID/stat) of each
#     process over the measured window, divided by the calls answered in it; wrk's from `times`.
#     Target: the gateway's own CPU is < 10% of the CPU serving a call (gateway + stdio server).
# --mode metrics (bench/gateway/tools-call.lua):
# (e) the cost of `--metrics-bind` and `--audit-log`: `mcpauth gateway --upstream` in front of the
#     trivial handler, without them and with both (the audit log written to a file, the metrics
#     scraped once after the run), both up, measured alternately 3 times in one run; the gateway's
#     CPU per request (utime + stime over each wrk run, warm-up included, / requests) beside
#     req/s. Target: under 3% of the throughput, judged on the median CPU per request (the
#     throughput of a CPU-bound server is its inverse; req/s on 2 cores shared with wrk swings
#     by 10-20% between identical runs).
#     BENCH_PERF=1: `perf record -g` of each gateway during the third round; the self-time
#     reports go to .cache/bench/results/gateway-metrics-{off,on}.perf.txt.
# --mode all (the default) runs http and stdio.
#
# Installs, idempotently: wrk (Debian) when missing, Node 22 (.cache/conformance) and
# interop/gateway's npm packages (.cache/interop-gateway). Builds target/release/mcpauth and the
# bench server and client unless --no-build. Raw wrk output goes to .cache/bench/results/gateway-*.txt.

set -uo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
fail() { echo "bench/gateway.sh: $*" >&2; exit 1; }
# shellcheck source=../interop/lib/common.sh
source "$REPO_ROOT/interop/lib/common.sh"
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION=10
CONNECTIONS=32
WARMUP=3
MODE=all
while (($#)); do
  case $1 in
    --mode)
      MODE=${2:-}
      [[ $MODE == all || $MODE == http || $MODE == stdio || $MODE == metrics ]] ||
        { echo "--mode takes all, http, stdio or metrics, not '$MODE'" >&2; exit 2; }
      shift 2 ;;
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
STDIO_CLIENT=$TARGET_DIR/release/mcpauth-bench-stdio-client
if [[ ${MCPAUTH_NO_BUILD:-0} != 1 || ! -x $BENCH_BIN || ! -x $STDIO_CLIENT ]]; then
  log "cargo build --release --manifest-path bench/gateway/mcp-server/Cargo.toml"
  (cd "$REPO_ROOT" && cargo build --release --locked --manifest-path bench/gateway/mcp-server/Cargo.toml \
    --target-dir "$TARGET_DIR" >&2) || fail "building the bench MCP server and client failed"
fi
[[ -x $BENCH_BIN ]] || fail "no $BENCH_BIN"
[[ -x $STDIO_CLIENT ]] || fail "no $STDIO_CLIENT"

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
# A command wrk runs under (e.g. taskset for --mode metrics); nothing by default.
WRK_PREFIX=(env)
# measure NAME URL TOKEN: warm-up, then the measured run; fills RPS[NAME] and P99[NAME].
measure() {
  local name=$1 url=$2 token=$3 out=$RESULT_DIR/gateway-$1.txt rps p99 non errs code
  code=$(curl -s -o "$out.check" -w '%{http_code}' -X POST "$url" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-11-25' \
    ${token:+-H "authorization: Bearer $token"} \
    --data '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}')
  grep -q '"hello"' "$out.check" && [[ $code == 200 ]] ||
    fail "$name: tools/call at $url answered HTTP $code: $(head -c 300 "$out.check")"
  BENCH_TOKEN=$token "${WRK_PREFIX[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s -s "$LUA" "$url" >"$out.warmup" 2>&1
  BENCH_TOKEN=$token "${WRK_PREFIX[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency -s "$LUA" "$url" >"$out" 2>&1 ||
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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# times_cpu FILE: the children's user + system seconds from bash's `times` (its second line)
times_cpu() {
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"
}
# mcp_post URL AUTH_HEADER_FILE SESSION PROTOCOL BODY [CURL ARGS...]: the answer's body (the
# bearer token comes from a file, never on curl's command line)
mcp_post() {
  local url=$1 auth=$2 session=$3 proto=$4 body=$5
  shift 5
  curl -sS -X POST "$url" -H "@$auth" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' ${session:+-H "mcp-session-id: $session"} \
    ${proto:+-H "mcp-protocol-version: $proto"} --data "$body" "$@"
}

declare -A D_RPS D_P99 D_CLIENT D_SERVER G_RPS G_P99 G_WRK G_GATEWAY G_SERVER
# stdio_direct KEY LABEL COMMAND...: mcpauth-bench-stdio-client drives COMMAND over stdio.
stdio_direct() {
  local key=$1 label=$2 out=$RESULT_DIR/gateway-stdio-direct-$1.txt calls secs p99 cticks sticks
  shift 2
  "$STDIO_CLIENT" --warmup "$WARMUP" --duration "$DURATION" --in-flight "$CONNECTIONS" -- "$@" >"$out" 2>"$out.err" ||
    { cat "$out.err" >&2; fail "$label: the direct stdio run failed"; }
  read -r _ calls secs p99 cticks sticks < <(grep '^RESULT ' "$out")
  [[ -n ${sticks:-} ]] || fail "$label: no RESULT line in $out"
  D_RPS[$key]=$(awk -v n="$calls" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  D_P99[$key]=$p99
  D_CLIENT[$key]=$(per_call "$cticks" "$calls")
  D_SERVER[$key]=$(per_call "$sticks" "$calls")
  printf '  %-30s %8.0f req/s   p99 %7.2f ms   CPU µs/call: client %6.1f, server %6.1f\n' \
    "$label" "${D_RPS[$key]}" "$p99" "${D_CLIENT[$key]}" "${D_SERVER[$key]}"
}

# stdio_gateway KEY LABEL COMMAND...: `mcpauth gateway -- COMMAND`, one session, wrk in it.
stdio_gateway() {
  local key=$1 label=$2 home=$HOME_DIR/stdio-$1 out=$RESULT_DIR/gateway-stdio-gateway-$1.txt
  local db client token init session proto code kids server g0 s0 g1 s1 rps p99 non errs bad calls wrk_s
  shift 2
  mkdir -p "$home"
  : >"$home/gateway.log"
  db="sqlite://$home/gateway.db?mode=rwc"
  client=$(mcpauth_cmd "$home" clients add --database "$db" --json --id bench-stdio --grant-type client_credentials) ||
    fail "mcpauth clients add (stdio gateway) failed"
  start_gateway "$home" "$home/gateway.log" --database "$db" -- "$@"
  token=$(token_cc "$ISSUER/token" bench-stdio "$(json_field client_secret <<<"$client")" "$GATEWAY_URL")
  (umask 077 && printf 'authorization: Bearer %s\n' "$token" >"$home/auth.header")
  # MCP basic/lifecycle: initialize (its answer carries the Mcp-Session-Id, Streamable HTTP
  # §Session Management, and the negotiated version for MCP-Protocol-Version), then initialized.
  init=$(mcp_post "$GATEWAY_URL" "$home/auth.header" "" "" \
    '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench-gateway","version":"0"}}}' \
    -D "$home/init.headers") || fail "$label: initialize through the gateway failed"
  session=$(sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d:[[:space:]]*//p' "$home/init.headers" | tr -d '\r')
  proto=$("$NODE" -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(0,"utf8")).result?.protocolVersion ?? ""))' <<<"$init" 2>/dev/null)
  [[ -n $session && -n $proto ]] || fail "$label: initialize through the gateway gave no session or version: $(head -c 300 <<<"$init")"
  code=$(mcp_post "$GATEWAY_URL" "$home/auth.header" "$session" "$proto" '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
    -o /dev/null -w '%{http_code}')
  [[ $code == 202 ]] || fail "$label: notifications/initialized answered HTTP $code"
  mcp_post "$GATEWAY_URL" "$home/auth.header" "$session" "$proto" \
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}' >"$out.check"
  grep -q 'hello' "$out.check" || fail "$label: tools/call through the gateway answered: $(head -c 300 "$out.check")"
  # The session's stdio server: the gateway's only child.
  kids=$(cat /proc/"$GATEWAY_PID"/task/*/children 2>/dev/null | wc -w)
  server=$(cat /proc/"$GATEWAY_PID"/task/*/children 2>/dev/null | tr -s ' ' '\n' | sed -n 1p)
  [[ $kids == 1 ]] || fail "$label: the gateway has $kids child processes, not the one stdio server"

  BENCH_TOKEN=$token BENCH_SESSION=$session BENCH_PROTOCOL=$proto \
    wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" --timeout 5s -s "$SESSION_LUA" "$GATEWAY_URL" >"$out.warmup" 2>&1
  g0=$(cpu_ticks "$GATEWAY_PID") && s0=$(cpu_ticks "$server") || fail "$label: cannot read /proc/PID/stat"
  ( BENCH_TOKEN=$token BENCH_SESSION=$session BENCH_PROTOCOL=$proto \
      wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency -s "$SESSION_LUA" "$GATEWAY_URL" >"$out" 2>&1
    rc=$?
    times >"$out.times"
    exit $rc ) || { cat "$out" >&2; fail "wrk failed against $GATEWAY_URL"; }
  g1=$(cpu_ticks "$GATEWAY_PID") && s1=$(cpu_ticks "$server") ||
    fail "$label: the gateway or its stdio server ended during the run"
  read -r rps p99 non errs < <(wrk_parse "$out")
  calls=$(awk '/ requests in / { print $1 }' "$out")
  bad=$(awk '/^BAD_ANSWERS/ { print $2 }' "$out")
  wrk_s=$(times_cpu "$out.times")
  G_RPS[$key]=$rps G_P99[$key]=$p99
  G_WRK[$key]=$(awk -v s="$wrk_s" -v n="$calls" 'BEGIN { printf "%.1f", (n > 0) ? s * 1e6 / n : 0 }')
  G_GATEWAY[$key]=$(per_call $((g1 - g0)) "$calls")
  G_SERVER[$key]=$(per_call $((s1 - s0)) "$calls")
  printf '  %-30s %8.0f req/s   p99 %7.2f ms   CPU µs/call: wrk %6.1f, gateway %6.1f, server %6.1f\n' \
    "$label" "$rps" "$p99" "${G_WRK[$key]}" "${G_GATEWAY[$key]}" "${G_SERVER[$key]}"
  if ((non > 0 || errs > 0 || ${bad:-1} > 0)); then
    INVALID=1
    echo "    INVALID: $non non-2xx, $errs socket errors, ${bad:-?} wrong answers (see $out)"
  fi
  kill -TERM "$GATEWAY_PID" 2>/dev/null
  wait "$GATEWAY_PID" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
}

# --mode stdio: (d).
run_stdio() {
  local key share
  SESSION_LUA=$SCRIPT_DIR/gateway/tools-call-session.lua
  echo "(d) authenticated tools/call through mcpauth gateway -- COMMAND vs the same stdio server driven directly"
  echo "    ($CONNECTIONS in flight; trivial = mcpauth-bench-mcp-server --stdio, sdk = interop/gateway/server.mjs --stdio;"
  echo "    load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
  stdio_direct trivial "trivial, direct" "$BENCH_BIN" --stdio
  stdio_gateway trivial "trivial, through the gateway" "$BENCH_BIN" --stdio
  stdio_direct sdk "sdk, direct" "$NODE" "$GW_DIR/src/server.mjs" --stdio
  stdio_gateway sdk "sdk, through the gateway" "$NODE" "$GW_DIR/src/server.mjs" --stdio
  echo
  echo "Summary (stdio): through the gateway / direct; CPU µs per call of the processes serving it"
  for key in trivial sdk; do
    share=$(awk -v g="${G_GATEWAY[$key]}" -v s="${G_SERVER[$key]}" 'BEGIN { printf "%.1f", (g + s > 0) ? 100 * g / (g + s) : 100 }')
    printf '  %-8s %sx the req/s, p99 %s vs %s ms (%sx); gateway + server %s µs vs server %s µs (%sx)\n' "$key:" \
      "$(ratio "${G_RPS[$key]}" "${D_RPS[$key]}")" "${G_P99[$key]}" "${D_P99[$key]}" "$(ratio "${G_P99[$key]}" "${D_P99[$key]}")" \
      "$(awk -v g="${G_GATEWAY[$key]}" -v s="${G_SERVER[$key]}" 'BEGIN { printf "%.1f", g + s }')" "${D_SERVER[$key]}" \
      "$(ratio "$(awk -v g="${G_GATEWAY[$key]}" -v s="${G_SERVER[$key]}" 'BEGIN { print g + s }')" "${D_SERVER[$key]}")"
    printf '           the gateway'"'"'s own CPU: %s µs per call = %s%% of gateway + server   (target < 10%%)   %s\n' \
      "${G_GATEWAY[$key]}" "$share" "$(awk -v s="$share" 'BEGIN { print (s < 10) ? "MET" : "MISSED" }')"
  done
}

# --mode http: (a), (b) and (c).
run_http() {
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
}

# --mode metrics: (e).
run_metrics() {
  BARE_PORT=$(free_port)
  start_bench_server "$HOME_DIR/bare.log" --bind "127.0.0.1:$BARE_PORT"
  wait_http "http://127.0.0.1:$BARE_PORT/healthz" "$BENCH_PID" "$HOME_DIR/bare.log"
  local db="sqlite://$HOME_DIR/metrics.db?mode=rwc" client secret off on metrics_port
  client=$(mcpauth_cmd "$HOME_DIR" clients add --database "$db" --json --id bench-metrics --grant-type client_credentials) ||
    fail "mcpauth clients add (metrics) failed"
  secret=$(json_field client_secret <<<"$client")
  echo "(e) mcpauth gateway --upstream (trivial handler) without and with --metrics-bind and --audit-log"
  echo "    (both gateways up, measured alternately twice; the better run of each counts)"
  local off_url off_pid on_url on_pid off_token on_token
  start_gateway "$HOME_DIR" "$HOME_DIR/gateway-plain.log" --database "$db" --upstream "http://127.0.0.1:$BARE_PORT/mcp"
  off_url=$GATEWAY_URL off_pid=$GATEWAY_PID
  off_token=$(token_cc "$ISSUER/token" bench-metrics "$secret" "$off_url")
  metrics_port=$(free_port)
  start_gateway "$HOME_DIR" "$HOME_DIR/gateway-metrics.log" --database "$db" --upstream "http://127.0.0.1:$BARE_PORT/mcp" \
    --metrics-bind "127.0.0.1:$metrics_port" --audit-log "$HOME_DIR/audit.jsonl"
  on_url=$GATEWAY_URL on_pid=$GATEWAY_PID
  on_token=$(token_cc "$ISSUER/token" bench-metrics "$secret" "$on_url")
  # The gateways on CPU 0, the upstream handler and wrk on CPU 1: the gateway under test no
  # longer competes with the load generator, which otherwise makes identical runs differ by
  # 10-20% (an idle CPU 0 gateway costs nothing).
  if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
    taskset -a -p -c 0 "$off_pid" >/dev/null && taskset -a -p -c 0 "$on_pid" >/dev/null &&
      taskset -a -p -c 1 "$BENCH_PID" >/dev/null || fail "taskset failed"
    WRK_PREFIX=(taskset -c 1)
    echo "    (gateways pinned to CPU 0; the upstream handler and wrk to CPU 1)"
  fi
  # Each round measures both, alternately; per run, the gateway's CPU per request (utime + stime
  # of its process over the measured wrk run, divided by the requests answered). On this 2-core
  # machine wrk shares the CPU, so req/s swings by 10-20% between identical runs; the gateway's
  # CPU per request is what its throughput is the inverse of when it is CPU-bound, and it is
  # steady: the cost is judged on the median CPU per request.
  local round cpu_off=() cpu_on=() best_off=0 best_on=0 t0 t1 name
  for round in 1 2 3; do
    for name in off on; do
      local label url token pid
      if [[ $name == off ]]; then
        label="gateway, no metrics ($round)" url=$off_url token=$off_token pid=$off_pid
      else
        label="gateway, metrics + audit log ($round)" url=$on_url token=$on_token pid=$on_pid
      fi
      t0=$(cpu_ticks "$pid") || fail "cannot read /proc/$pid/stat"
      local perf_pid=
      if [[ -n ${BENCH_PERF:-} && $round == 3 ]]; then
        perf record -q -F 999 -g -p "$pid" -o "$RESULT_DIR/gateway-metrics-$name.perf.data" >/dev/null 2>&1 &
        perf_pid=$!
      fi
      measure "$label" "$url" "$token"
      t1=$(cpu_ticks "$pid") || fail "cannot read /proc/$pid/stat"
      if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" && wait "$perf_pid"
        perf report -q --no-children --stdio --percent-limit 0.5 -g none \
          -i "$RESULT_DIR/gateway-metrics-$name.perf.data" >"$RESULT_DIR/gateway-metrics-$name.perf.txt" 2>/dev/null
        echo "    perf profile (self time, >= 0.5%): $RESULT_DIR/gateway-metrics-$name.perf.txt"
      fi
      # The warm-up's requests are in the ticks too: count them from its own wrk output.
      local calls
      calls=$(awk '/requests in/ { n += $1 } END { print n + 0 }' "$RESULT_DIR/gateway-$label.txt" "$RESULT_DIR/gateway-$label.txt.warmup")
      local us
      us=$(per_call $((t1 - t0)) "$calls")
      printf '    %-34s %10s us CPU per request\n' "" "$us"
      if [[ $name == off ]]; then
        cpu_off+=("$us")
        best_off=$(awk -v a="$best_off" -v b="${RPS[$label]}" 'BEGIN { print (b > a) ? b : a }')
      else
        cpu_on+=("$us")
        best_on=$(awk -v a="$best_on" -v b="${RPS[$label]}" 'BEGIN { print (b > a) ? b : a }')
      fi
    done
  done
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -q '^mcpauth_token_verifications_total{result="ok"}' ||
    fail "the metrics listener has no token verification counts"
  stop_pid "$off_pid"
  stop_pid "$on_pid"
  local med_off med_on loss rps_loss
  med_off=$(median "${cpu_off[@]}")
  med_on=$(median "${cpu_on[@]}")
  loss=$(awk -v a="$med_off" -v b="$med_on" 'BEGIN { printf "%.1f", (b - a) / b * 100 }')
  rps_loss=$(awk -v a="$best_off" -v b="$best_on" 'BEGIN { printf "%.1f", (a - b) / a * 100 }')
  echo
  echo "Summary (metrics)"
  printf '  gateway CPU per request (median of 3): %s us without, %s us with metrics + audit log\n' "$med_off" "$med_on"
  printf '  req/s (best of 3): %s without, %s with (%s%% apart; wrk shares the 2 cores)\n' "$best_off" "$best_on" "$rps_loss"
  printf '  metrics + audit log cost: %s%% of the CPU-bound throughput   (target < 3%%)   %s\n' "$loss" \
    "$(awk -v l="$loss" 'BEGIN { print (l < 3) ? "MET" : "MISSED" }')"
}

echo "mcpauth gateway / resource-layer benchmark: wrk -t1 -c$CONNECTIONS -d${DURATION}s (after ${WARMUP}s warm-up), tools/call echo, $(nproc) cores"
if [[ $MODE == metrics ]]; then
  echo
  run_metrics
else
  if [[ $MODE != stdio ]]; then
    echo
    run_http
  fi
  if [[ $MODE != http ]]; then
    echo
    run_stdio
  fi
fi
((INVALID == 0)) || { echo "some runs had errors: the numbers above are not valid"; exit 1; }
