#!/usr/bin/env bash
# Token-endpoint cost and throughput of the authorization server, against oidc-provider, in one
# run (issue 17: at least 10x less server CPU per token than oidc-provider for client_credentials
# and refresh_token, SQLite and PostgreSQL alike). Not part of CI; run on demand:
#
#   bench/authserver-token.sh                    all targets, 10 s per measurement
#   bench/authserver-token.sh --duration 20 --connections 64 --threads 1
#   bench/authserver-token.sh --only mcpauth-sqlite --only oidc-provider
#   bench/authserver-token.sh --no-build         use the existing release binaries
#
# Targets (each started fresh, on 127.0.0.1, one after another, so they never share the CPU):
#   mcpauth-sqlite     the authorization server on a new SQLite file
#   mcpauth-postgres   the same on a new database at 127.0.0.1:5432 (trust, user postgres;
#                      MCPAUTH_TEST_DATABASE_URL overrides the admin URL), dropped afterwards
#   mcpauth-sqlite-metrics  (only with --only) the cost of metrics and the audit log (issue 16:
#                      under 3%): two SQLite servers up at once, without and with --metrics-bind
#                      and --audit-log, pinned to CPU 0 (wrk to CPU 1), each grant measured
#                      BENCH_ROUNDS (7) times alternately for D/2 seconds; one check per grant on
#                      the median CPU per token
#   oidc-provider      npm oidc-provider (interop/package-lock.json), configured alike: see
#                      bench/oidc-provider-server.mjs and bench/README.md
#
# The mcpauth server runs as `mcpauth serve --no-rate-limits` (its default /token limits, 100/s
# per IP and 50/s per client, would measure the limiter).
#
# Per target, with wrk (Debian package, installed if missing) on loopback:
#   client_credentials  warm-up (3 s), then D seconds of POST /token grant_type=client_credentials
#                       &resource=R&scope=S, client_secret_basic
#   refresh_token       a pool of refresh tokens made beforehand by the code flow over HTTP
#                       (bench/refresh-pool.mjs), sized from the client_credentials rate; then D
#                       seconds of POST /token grant_type=refresh_token&resource=R&refresh_token=T,
#                       client_secret_basic, each token spent once (bench/wrk/refresh-token.lua);
#                       every response must be 200 and the pool must not run out
#
# BENCH_PERF=1: `perf record -g` of the server process during each measured run; the report (self
# time, entries of at least 1.5%) goes to .cache/bench/results/TARGET-GRANT.perf.txt.
#
# Prints requests/s, p99, non-2xx and the server CPU time per token per target and grant, and
# the ratios to oidc-provider. Server CPU is read from /proc (user + system time of every thread)
# around each measured wrk run: the mcpauth process or oidc-provider's node process, and for
# mcpauth-postgres also the PostgreSQL backends connected to the bench database and the server's
# WAL writer, background writer and checkpointer (other databases' backends are not counted).
# The last line is "N passed, M failed": one check per (mcpauth target, grant) whose CPU per token
# must be at least 10x (BENCH_TARGET_RATIO) lower than oidc-provider's, a measure any machine can
# make (throughput on 2 cores also measures wrk). Exit status: 0 all met, 3 measured but a ratio
# is under target, 1 a measurement is invalid (errors, non-2xx, pool exhausted) or a target could
# not run.

set -uo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
fail() { echo "bench/authserver-token.sh: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
# shellcheck source=../interop/lib/common.sh
source "$REPO_ROOT/interop/lib/common.sh"
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION=10
WARMUP=3
CONNECTIONS=32
THREADS=1
TARGET_RATIO=${BENCH_TARGET_RATIO:-10}
MAX_POOL=${BENCH_MAX_POOL:-150000}
WARMUP_POOL=6000
ROUNDS=${BENCH_ROUNDS:-7}
WRK_PREFIX=(env) # a command wrk runs under (taskset for mcpauth-sqlite-metrics)
TARGETS=()
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --only) TARGETS+=("$2"); shift 2 ;;
    --no-build) export MCPAUTH_NO_BUILD=1; shift ;;
    -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#TARGETS[@]})) || TARGETS=(mcpauth-sqlite mcpauth-postgres oidc-provider)
for t in "${TARGETS[@]}"; do
  case $t in mcpauth-sqlite | mcpauth-postgres | mcpauth-sqlite-metrics | oidc-provider) ;; *) fail "unknown target $t" ;; esac
done

USERNAME=alice
SCOPE=mcp:tools
RESOURCE=http://127.0.0.1:8931/mcp
REDIRECT_URI=http://127.0.0.1:8932/callback
urlenc() { "$NODE" -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' -- "$1"; }

# --- installs and builds -------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk (apt-get update; apt-get install -y wrk)"
  sudo=
  ((EUID == 0)) || sudo=sudo
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >&2 ||
    fail "apt-get install wrk failed"
fi
ensure_node
ensure_interop_modules
mkdir -p "$INTEROP_DIR/src/bench"
cp "$SCRIPT_DIR"/*.mjs "$INTEROP_DIR/src/bench/"
ensure_mcpauth

# --- wrk runs ------------------------------------------------------------------------------
# wrk_run OUTFILE LUA URL SECONDS: runs wrk and prints its output to OUTFILE.
wrk_run() {
  "${WRK_PREFIX[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${4}s" --timeout 5s --latency -s "$2" "$3" >"$1" 2>&1 ||
    { cat "$1" >&2; fail "wrk failed against $3"; }
}
# Parses wrk output: "rps p99_ms non2xx socket_errors".
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

# server_pids: the processes whose CPU a token costs (SERVER_PID; with BENCH_PG_DATABASE, that
# database's backends and PostgreSQL's writer processes).
server_pids() {
  echo "$SERVER_PID"
  if [[ -n ${BENCH_PG_DATABASE:-} ]]; then
    psql "$PG_ADMIN_URL" -qtAc "SELECT pid FROM pg_stat_activity WHERE datname = '$BENCH_PG_DATABASE' \
      OR backend_type IN ('walwriter', 'background writer', 'checkpointer')"
  fi
}

declare -A RPS P99 NON ERRS NOTE CPU
INVALID=0
RESULT_DIR=$REPO_ROOT/.cache/bench/results
mkdir -p "$RESULT_DIR"

# measure TARGET GRANT LUA URL SECONDS
measure() {
  local target=$1 grant=$2 out=$RESULT_DIR/$1-$2.txt rps p99 non errs pids before after requests
  mapfile -t pids < <(server_pids)
  local perf_pid=
  if [[ -n ${BENCH_PERF:-} ]]; then
    perf record -q -F 999 -g -p "${pids[0]}" -o "$RESULT_DIR/$1-$2.perf.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  before=$(cpu_ticks "${pids[@]}")
  wrk_run "$out" "$3" "$4" "$5"
  after=$(cpu_ticks "${pids[@]}")
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" && wait "$perf_pid"
    perf report -q --no-children --stdio --percent-limit 1.5 -g none -i "$RESULT_DIR/$1-$2.perf.data" \
      >"$RESULT_DIR/$1-$2.perf.txt" 2>/dev/null
    echo "    perf profile of the server (self time, >= 1.5%): $RESULT_DIR/$1-$2.perf.txt" >&2
  fi
  read -r rps p99 non errs < <(wrk_parse "$out")
  requests=$(awk '/requests in/ { print $1 }' "$out")
  RPS[$target/$grant]=$rps P99[$target/$grant]=$p99 NON[$target/$grant]=$non ERRS[$target/$grant]=$errs
  CPU[$target/$grant]=$(per_call $((after - before)) "${requests:-0}")
  printf '    %-18s %10.0f req/s   p99 %8.2f ms   non-2xx %d   socket errors %d   server CPU %s us/token (%d processes)\n' \
    "$grant" "$rps" "$p99" "$non" "$errs" "${CPU[$target/$grant]}" "${#pids[@]}" >&2
  if ((non > 0 || errs > 0)); then
    INVALID=1
    NOTE[$target/$grant]="INVALID: $non non-2xx, $errs socket errors (see $out)"
  fi
  local pool
  pool=$(grep '^pool:' "$out" || true)
  if [[ -n $pool ]]; then
    echo "    $pool" >&2
    if [[ $pool != *", 0 requests after exhaustion" ]]; then
      INVALID=1
      NOTE[$target/$grant]="INVALID: the refresh-token pool ran out ($pool)"
    fi
  fi
}

# make_pool TARGET FILE COUNT: COUNT refresh tokens of client RT_ID by the code flow.
make_pool() {
  log "$1: $3 refresh tokens by the code flow"
  (cd "$INTEROP_DIR/src/bench" && BENCH_ISSUER=$ISSUER BENCH_CLIENT_ID=$RT_ID BENCH_CLIENT_SECRET=$RT_SECRET \
    BENCH_REDIRECT_URI=$REDIRECT_URI BENCH_RESOURCE=$RESOURCE BENCH_SCOPE=$SCOPE BENCH_USERNAME=$USERNAME \
    BENCH_PASSWORD=$PASSWORD "$NODE" refresh-pool.mjs "$2" "$3") || fail "$1: making the refresh-token pool failed"
}

# client_env: the wrk inputs of the clients in CC_ID/CC_SECRET and RT_ID/RT_SECRET (CC_BASIC,
# RT_BASIC, CC_BODY, RESOURCE_ENC).
client_env() {
  RESOURCE_ENC=$(urlenc "$RESOURCE")
  CC_BASIC=$(printf '%s:%s' "$(urlenc "$CC_ID")" "$(urlenc "$CC_SECRET")" | base64 -w0)
  RT_BASIC=$(printf '%s:%s' "$(urlenc "$RT_ID")" "$(urlenc "$RT_SECRET")" | base64 -w0)
  CC_BODY="grant_type=client_credentials&resource=$RESOURCE_ENC&scope=$(urlenc "$SCOPE")"
}

# probe TARGET: a functional check before loading (one client_credentials token must be issued),
# then a client_credentials warm-up.
probe() {
  local probe
  probe=$(curl -sS -H "Authorization: Basic $CC_BASIC" -d "$CC_BODY" "$ISSUER/token") || fail "$1: /token unreachable"
  [[ $(json_field access_token <<<"$probe") == ey* ]] || fail "$1: client_credentials failed: $probe"
  log "$1: client_credentials warm-up (${WARMUP}s, $CONNECTIONS connections)"
  BENCH_BASIC=$CC_BASIC BENCH_BODY=$CC_BODY wrk_run "$RESULT_DIR/$1-warmup.txt" "$SCRIPT_DIR/wrk/client-credentials.lua" "$ISSUER/token" "$WARMUP"
}

# measure_cc TARGET SECONDS
measure_cc() {
  BENCH_BASIC=$CC_BASIC BENCH_BODY=$CC_BODY measure "$1" client_credentials "$SCRIPT_DIR/wrk/client-credentials.lua" "$ISSUER/token" "$2"
}

# measure_refresh TARGET POOL SECONDS
measure_refresh() {
  BENCH_BASIC=$RT_BASIC BENCH_POOL=$2 BENCH_THREADS=$THREADS BENCH_EXTRA="&resource=$RESOURCE_ENC" \
    measure "$1" refresh_token "$SCRIPT_DIR/wrk/refresh-token.lua" "$ISSUER/token" "$3"
}

# refresh_pool_size TARGET SECONDS: the refresh tokens SECONDS of refresh_token need (+60%; at
# most BENCH_MAX_POOL), from a 1 s warm-up on a small pool that also estimates the rate.
refresh_pool_size() {
  local est used count
  make_pool "$1" "$RESULT_DIR/$1-pool-warmup.txt" "$WARMUP_POOL"
  log "$1: refresh_token warm-up (1s) to size the pool"
  BENCH_BASIC=$RT_BASIC BENCH_POOL=$RESULT_DIR/$1-pool-warmup.txt BENCH_THREADS=$THREADS BENCH_EXTRA="&resource=$RESOURCE_ENC" \
    wrk_run "$RESULT_DIR/$1-refresh-warmup.txt" "$SCRIPT_DIR/wrk/refresh-token.lua" "$ISSUER/token" 1
  rm -f "$RESULT_DIR/$1-pool-warmup.txt"
  used=$(sed -n 's/^pool: \([0-9]*\) used.*/\1/p' "$RESULT_DIR/$1-refresh-warmup.txt")
  est=${used:-0}
  if ! grep -q '^pool: .*, 0 requests after exhaustion' "$RESULT_DIR/$1-refresh-warmup.txt"; then
    est=${RPS[$1/client_credentials]:-$((WARMUP_POOL * 2))} # it ran out: take the (higher) client_credentials rate
    est=${est%.*}
  fi
  count=$(((est * $2 * 16 / 10) + 1000))
  ((count > MAX_POOL)) && count=$MAX_POOL
  echo "$count"
}

# bench_target TARGET: server already started (ISSUER, SERVER_PID); clients in CC_ID/CC_SECRET
# and RT_ID/RT_SECRET.
bench_target() {
  local target=$1 pool count
  client_env
  probe "$target"
  log "$target: client_credentials (${DURATION}s, $CONNECTIONS connections)"
  measure_cc "$target" "$DURATION"
  count=$(refresh_pool_size "$target" "$DURATION") || exit 1
  pool=$RESULT_DIR/$target-pool.txt
  make_pool "$target" "$pool" "$count"
  log "$target: refresh_token (${DURATION}s, each token spent once)"
  measure_refresh "$target" "$pool" "$DURATION"
  rm -f "$pool"
}

# start_mcpauth sqlite|postgres TARGET [EXTRA-SERVE-FLAGS...]: a fresh store with the bench user
# and clients, and `mcpauth serve` on it (ISSUER, SERVER_PID, CC_*, RT_*, BENCH_PG_DATABASE).
start_mcpauth() {
  local kind=$1 target=$2 home database out
  shift 2
  new_tmpdir home
  local extra=("$@")
  ((${#extra[@]})) && extra+=(--audit-log "$home/audit.jsonl")
  if [[ $kind == sqlite ]]; then
    database="sqlite://$home/authserver.db?mode=rwc"
  else
    ensure_postgres || fail "$target: no PostgreSQL answers at $PG_ADMIN_URL"
    fresh_pg_database database mcpauth_bench
  fi
  printf '%s\n' "$PASSWORD" | mcpauth_cmd "$home" users add "$USERNAME" --database "$database" >/dev/null ||
    fail "$target: users add failed"
  out=$(mcpauth_cmd "$home" clients add --id bench-cc --name "bench client_credentials" \
    --grant-type client_credentials --database "$database" --json) || fail "$target: clients add failed"
  CC_ID=bench-cc CC_SECRET=$(json_field client_secret <<<"$out")
  out=$(mcpauth_cmd "$home" clients add --id bench-rt --name "bench refresh_token" --redirect-uri "$REDIRECT_URI" \
    --grant-type authorization_code --grant-type refresh_token --database "$database" --json) ||
    fail "$target: clients add failed"
  RT_ID=bench-rt RT_SECRET=$(json_field client_secret <<<"$out")

  # `mcpauth serve --no-rate-limits` (start_serve adds `serve --bind 127.0.0.1:0`).
  start_serve "$home" "$home/server.log" --no-rate-limits --database "$database" --resource "$RESOURCE" --scope "$SCOPE" \
    "${extra[@]}"
  SERVER_PID=$SERVE_PID
  BENCH_PG_DATABASE=
  [[ $kind == postgres ]] && BENCH_PG_DATABASE=${database##*/}
  echo "== $target: $ISSUER (mcpauth serve --no-rate-limits${extra[*]:+ ${extra[*]}}, ${database%%://*})" >&2
}

run_mcpauth() { # run_mcpauth sqlite|postgres
  start_mcpauth "$1" "mcpauth-$1"
  bench_target "mcpauth-$1"
  stop_pid "$SERVER_PID" || true
}

# The cost of metrics and the audit log (issue 16): two servers on SQLite up at once, without
# (off) and with --metrics-bind and --audit-log (on), pinned to CPU 0 with wrk on CPU 1 so that
# the server under test never competes with the load generator; each grant measured ROUNDS
# times alternately, each run DURATION / 2 seconds; the verdict is on the medians of the CPU per
# token (PAIR_CPU[off|on/GRANT]).
declare -A PAIR_CPU PAIR_RUNS
run_metrics_pair() {
  local target=mcpauth-sqlite-metrics name round grant secs=$(((DURATION + 1) / 2)) count
  local -A iss pid cc_id cc_secret rt_id rt_secret
  for name in off on; do
    if [[ $name == off ]]; then
      start_mcpauth sqlite "$target-off"
    else
      start_mcpauth sqlite "$target-on" --metrics-bind 127.0.0.1:0
    fi
    iss[$name]=$ISSUER pid[$name]=$SERVER_PID cc_id[$name]=$CC_ID cc_secret[$name]=$CC_SECRET
    rt_id[$name]=$RT_ID rt_secret[$name]=$RT_SECRET
  done
  use() { # use off|on: that server's ISSUER, SERVER_PID and clients
    ISSUER=${iss[$1]} SERVER_PID=${pid[$1]} CC_ID=${cc_id[$1]} CC_SECRET=${cc_secret[$1]}
    RT_ID=${rt_id[$1]} RT_SECRET=${rt_secret[$1]} BENCH_PG_DATABASE=
    client_env
  }
  if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
    taskset -a -p -c 0 "${pid[off]}" >/dev/null && taskset -a -p -c 0 "${pid[on]}" >/dev/null ||
      fail "taskset failed"
    WRK_PREFIX=(taskset -c 1)
    echo "    (both servers pinned to CPU 0; wrk to CPU 1)" >&2
  fi
  for name in off on; do
    use "$name"
    probe "$target-$name"
  done
  for round in $(seq 1 "$ROUNDS"); do
    for name in off on; do
      use "$name"
      log "$target-$name: client_credentials, round $round of $ROUNDS (${secs}s)"
      measure_cc "$target-$name-$round" "$secs"
      PAIR_RUNS[$name/client_credentials]+=" ${CPU[$target-$name-$round/client_credentials]}"
    done
  done
  # Refresh tokens: one pool per server for every round, cut into ROUNDS slices.
  for name in off on; do
    use "$name"
    RPS[$target-$name/client_credentials]=${RPS[$target-$name-1/client_credentials]}
    count=$(refresh_pool_size "$target-$name" "$((secs * ROUNDS))") || exit 1
    make_pool "$target-$name" "$RESULT_DIR/$target-$name-pool.txt" "$count"
    (cd "$RESULT_DIR" && split -n "l/$ROUNDS" -d -a 3 "$target-$name-pool.txt" "$target-$name-pool.") ||
      fail "cannot split the refresh-token pool"
    rm -f "$RESULT_DIR/$target-$name-pool.txt"
  done
  for round in $(seq 1 "$ROUNDS"); do
    for name in off on; do
      use "$name"
      log "$target-$name: refresh_token, round $round of $ROUNDS (${secs}s)"
      local slice
      slice=$RESULT_DIR/$target-$name-pool.$(printf '%03d' $((round - 1)))
      measure_refresh "$target-$name-$round" "$slice" "$secs"
      rm -f "$slice"
      PAIR_RUNS[$name/refresh_token]+=" ${CPU[$target-$name-$round/refresh_token]}"
    done
  done
  WRK_PREFIX=(env)
  for name in off on; do
    for grant in client_credentials refresh_token; do
      # shellcheck disable=SC2086 # the runs are a space-separated list
      PAIR_CPU[$name/$grant]=$(median ${PAIR_RUNS[$name/$grant]})
    done
    stop_pid "${pid[$name]}" || true
  done
}

wait_issuer() { # wait_issuer LOGFILE: sets ISSUER
  ISSUER=
  for _ in $(seq 1 300); do
    ISSUER=$(sed -n 's/^[[:space:]]*issuer:[[:space:]]*//p' "$1" | head -n1)
    [[ -n $ISSUER ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$1" >&2; fail "the server exited at start"; }
    sleep 0.1
  done
  [[ -n $ISSUER ]] || { cat "$1" >&2; fail "the server printed no issuer"; }
}

run_oidc_provider() {
  local target=oidc-provider dir port
  new_tmpdir dir
  port=$(free_port)
  CC_ID=bench-cc CC_SECRET=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d =)
  RT_ID=bench-rt RT_SECRET=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d =)
  cat >"$dir/clients.json" <<EOF
[{"client_id":"$CC_ID","client_secret":"$CC_SECRET","grant_types":["client_credentials"]},
 {"client_id":"$RT_ID","client_secret":"$RT_SECRET","grant_types":["authorization_code","refresh_token"],
  "redirect_uris":["$REDIRECT_URI"]}]
EOF
  (cd "$INTEROP_DIR/src/bench" && exec env NODE_ENV=production BENCH_PORT="$port" BENCH_RESOURCE="$RESOURCE" \
    BENCH_SCOPE="$SCOPE" BENCH_CLIENTS_FILE="$dir/clients.json" "$NODE" oidc-provider-server.mjs) \
    </dev/null >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  BENCH_PG_DATABASE=
  _CLEAN_PIDS+=("$SERVER_PID")
  wait_issuer "$dir/server.log"
  echo "== $target: $ISSUER (oidc-provider $(_pkg_version "$INTEROP_DIR/node_modules/oidc-provider"), Node $("$NODE" --version), in-memory adapter)" >&2
  bench_target "$target"
  stop_pid "$SERVER_PID" || true
  if grep -q server_error "$dir/server.log"; then
    cat "$dir/server.log" >&2
    fail "oidc-provider logged server errors"
  fi
}

for t in "${TARGETS[@]}"; do
  case $t in
    mcpauth-sqlite) run_mcpauth sqlite ;;
    mcpauth-postgres) run_mcpauth postgres ;;
    mcpauth-sqlite-metrics) run_metrics_pair ;;
    oidc-provider) run_oidc_provider ;;
  esac
done

# --- report --------------------------------------------------------------------------------
echo
echo "Token endpoint throughput (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on loopback; $(nproc) cores shared by wrk and the server)"
printf '%-18s %-20s %12s %10s %9s %14s   %s\n' target grant "req/s" "p99 ms" "non-2xx" "CPU us/token" "vs oidc-provider"
PASS=0
FAILN=0
for t in "${TARGETS[@]}"; do
  for g in client_credentials refresh_token; do
    k=$t/$g
    [[ -n ${RPS[$k]:-} ]] || continue
    ratio=
    if [[ $t != oidc-provider && -n ${RPS[oidc-provider/$g]:-} ]]; then
      ratio=$(awk -v a="${RPS[$k]}" -v b="${RPS[oidc-provider/$g]}" 'BEGIN { printf "%.1fx", a / b }')
      p99r=$(awk -v a="${P99[$k]}" -v b="${P99[oidc-provider/$g]}" 'BEGIN { printf "%.2f", a / b }')
      cpur=$(awk -v a="${CPU[$k]}" -v b="${CPU[oidc-provider/$g]}" 'BEGIN { if (a > 0) printf "%.1f", b / a; else print "inf" }')
      ratio="${cpur}x less CPU per token, $ratio throughput, p99 x$p99r"
    fi
    printf '%-18s %-20s %12.0f %10.2f %9d %14s   %s %s\n' "$t" "$g" "${RPS[$k]}" "${P99[$k]}" "${NON[$k]}" "${CPU[$k]}" "$ratio" "${NOTE[$k]:-}"
  done
done
echo
# verdict OK TEXT: prints "PASS  TEXT" and counts it when OK is 1, else "FAIL  TEXT".
verdict() {
  if (($1)); then
    echo "  PASS  $2"
    PASS=$((PASS + 1))
  else
    echo "  FAIL  $2"
    FAILN=$((FAILN + 1))
  fi
}
# Metrics and the audit log on vs off (issue 16): the medians of the pair's CPU per token.
if [[ -n ${PAIR_CPU[off/client_credentials]:-} ]]; then
  echo "Metrics and audit log cost (two SQLite servers pinned to CPU 0, $ROUNDS alternating runs of $(((DURATION + 1) / 2))s per grant)"
  for g in client_credentials refresh_token; do
    on=${PAIR_CPU[on/$g]} off=${PAIR_CPU[off/$g]}
    printf '  %-20s CPU us/token without:%s  with:%s\n' "$g" "${PAIR_RUNS[off/$g]}" "${PAIR_RUNS[on/$g]}"
    cost=$(awk -v a="$off" -v b="$on" 'BEGIN { printf "%.1f", (b - a) / b * 100 }')
    verdict "$(awk -v c="$cost" 'BEGIN { print (c < 3) ? 1 : 0 }')" \
      "metrics + audit log cost $g: $cost% of the CPU per token (medians $on vs $off us; target < 3%)"
  done
fi
for t in "${TARGETS[@]}"; do
  [[ $t == oidc-provider || $t == *-metrics ]] && continue
  for g in client_credentials refresh_token; do
    k=$t/$g
    if [[ -z ${RPS[oidc-provider/$g]:-} ]]; then
      echo "  NOT RUN  $t $g: ${TARGET_RATIO}x less CPU per token than oidc-provider (oidc-provider was not measured; not counted)"
      continue
    fi
    if [[ -n ${NOTE[$k]:-} || -n ${NOTE[oidc-provider/$g]:-} ]]; then
      verdict 0 "$t $g: invalid measurement"
    elif awk -v a="${CPU[$k]}" -v b="${CPU[oidc-provider/$g]}" -v r="$TARGET_RATIO" 'BEGIN { exit !(a > 0 && b >= r * a) }'; then
      verdict 1 "$t $g: server CPU per token ${TARGET_RATIO}x or more below oidc-provider's"
    else
      verdict 0 "$t $g: server CPU per token less than ${TARGET_RATIO}x below oidc-provider's"
    fi
  done
done
echo "raw wrk output: $RESULT_DIR"
echo "$PASS passed, $FAILN failed"
((INVALID)) && exit 1
((FAILN)) && exit 3
((PASS > 0)) || exit 1
exit 0
