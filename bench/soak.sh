#!/usr/bin/env bash
# Soak of the authorization server (issue 17, part 4): two `mcpauth serve --no-rate-limits`
# instances on one new PostgreSQL database, with one issuer and so one set of signing keys (they
# live in the database), behind a round-robin reverse proxy (bench/soak-proxy.mjs) on 127.0.0.1,
# under mixed token-endpoint load for D seconds; one instance is killed with SIGKILL half-way.
# Not part of CI; run on demand:
#
#   bench/soak.sh                          60 s, 16 requests in flight, 256 refresh chains
#   bench/soak.sh --duration 300 --concurrency 32 --chains 512
#   bench/soak.sh --no-build               use the existing release binary
#
# Options: --duration N (s, default 60), --concurrency N (16), --chains N (256),
#   --rss-growth PCT (30: the bound on RSS growth, below), --mix "client_credentials=40,
#   refresh_token=45,introspect=10,revoke=5" (weights of the request kinds), --access-token-ttl N
#   (s, default 3600, passed to `serve`: revoked access tokens are remembered that long), --no-build.
#
# Installs what it needs, idempotently: Node 22 in .cache/conformance (as conformance/run and
# the other bench scripts get it); no npm packages. Builds `mcpauth` in release unless
# --no-build (CARGO_TARGET_DIR is honoured). Needs PostgreSQL at 127.0.0.1:5432 (trust, user
# postgres; MCPAUTH_TEST_DATABASE_URL overrides the admin URL); the database is dropped at exit,
# on failure and on Ctrl-C too, when every process started here is stopped.
#
# What it does (bench/soak.mjs is the load and the checks):
#   1. a fresh database; users add, three clients (client_credentials; authorization_code +
#      refresh_token; a resource server allowed to introspect); instance A, then B (each waited
#      for: banner, then /healthz), both `--issuer` the proxy's URL; both must serve the same JWKS;
#      the proxy, waited for through its metadata.
#   2. refresh chains: one refresh token per chain by the code flow with PKCE over HTTP through the
#      proxy (bench/refresh-pool.mjs). Then a closed loop of --concurrency requests for D seconds:
#      client_credentials, refresh_token (each chain always refreshes with its newest token, one
#      request in flight per chain), introspection of recent access tokens (must be active) and
#      revocation of others. Every answer is counted; any error fails the soak.
#   3. VmRSS of each instance from /proc every second: start, peak and end under load, and
#      bounded when the peak of the last third of its time under load is at most --rss-growth %
#      above the peak of the first third.
#   4. at D/2, kill -9 of instance B. The proxy retries a request on the other instance only
#      when its connection was refused (nothing was sent); a request whose connection broke at
#      the kill is "lost in flight" (reported apart, not an error). After the run, through the
#      proxy (the survivor): each chain's newest token must refresh; a chain whose last request was
#      lost in flight is ambiguous, and its previous token must either refresh or be refused as
#      reused (400 invalid_grant); access tokens issued before the kill by either instance must
#      introspect as active, revoked ones as inactive.
#   5. the summary; the last line is `soak: PASS` or `soak: FAIL (reasons)` (exit status 1).
# Tokens and secrets are never printed; the per-run files live in a temporary directory.

set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
fail() {
  echo "bench/soak.sh: $*" >&2
  echo "soak: FAIL ($*)"
  exit 1
}
# shellcheck source=../interop/lib/common.sh
source "$REPO_ROOT/interop/lib/common.sh"
# common.sh's cleanup stops the processes, removes the temporary directories and drops the
# database; errexit must not cut it short (a kill of a process already gone fails).
trap 'set +e; cleanup' EXIT

DURATION=60
CONCURRENCY=16
CHAINS=256
RSS_GROWTH=30
MIX=client_credentials=40,refresh_token=45,introspect=10,revoke=5
ACCESS_TTL=3600
while (($#)); do
  case $1 in
    --duration) DURATION=${2:-}; shift 2 ;;
    --concurrency) CONCURRENCY=${2:-}; shift 2 ;;
    --chains) CHAINS=${2:-}; shift 2 ;;
    --rss-growth) RSS_GROWTH=${2:-}; shift 2 ;;
    --mix) MIX=${2:-}; shift 2 ;;
    --access-token-ttl) ACCESS_TTL=${2:-}; shift 2 ;;
    --no-build) export MCPAUTH_NO_BUILD=1; shift ;;
    -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in DURATION CONCURRENCY CHAINS RSS_GROWTH ACCESS_TTL; do
  [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || { echo "--${v,,} must be a positive integer" | tr _ - >&2; exit 2; }
done
((DURATION >= 6)) || { echo "--duration must be at least 6 s" >&2; exit 2; }
((CHAINS > CONCURRENCY)) || { echo "--chains must exceed --concurrency" >&2; exit 2; }
SECONDS=0

USERNAME=alice
SCOPE=mcp:tools
RESOURCE=http://127.0.0.1:8931/mcp
REDIRECT_URI=http://127.0.0.1:8932/callback
KILL_AT=$((DURATION / 2))

# --- installs and builds -------------------------------------------------------------------
ensure_node
SRC=$REPO_ROOT/.cache/soak/src # refresh-pool.mjs imports ../lib/http-login.mjs
rm -rf "$SRC"
mkdir -p "$SRC/bench" "$SRC/lib"
cp "$SCRIPT_DIR/soak.mjs" "$SCRIPT_DIR/soak-proxy.mjs" "$SCRIPT_DIR/refresh-pool.mjs" "$SRC/bench/"
cp "$REPO_ROOT/interop/lib/http-login.mjs" "$SRC/lib/"
ensure_mcpauth
ensure_postgres || fail "no PostgreSQL answers at ${PG_ADMIN_URL:-127.0.0.1:5432}"

# --- the database, users and clients -------------------------------------------------------
new_tmpdir WORK
mkdir -p "$WORK/a" "$WORK/b"
fresh_pg_database DATABASE mcpauth_soak
log "database ${DATABASE##*/} on 127.0.0.1:5432"
printf '%s\n' "$PASSWORD" | mcpauth_cmd "$WORK/a" users add "$USERNAME" --database "$DATABASE" >/dev/null ||
  fail "users add failed"
out=$(mcpauth_cmd "$WORK/a" clients add --id soak-cc --name "soak client_credentials" \
  --grant-type client_credentials --database "$DATABASE" --json) || fail "clients add (client_credentials) failed"
CC_SECRET=$(json_field client_secret <<<"$out")
out=$(mcpauth_cmd "$WORK/a" clients add --id soak-rt --name "soak refresh_token" --redirect-uri "$REDIRECT_URI" \
  --grant-type authorization_code --grant-type refresh_token --database "$DATABASE" --json) ||
  fail "clients add (refresh_token) failed"
RT_SECRET=$(json_field client_secret <<<"$out")
out=$(mcpauth_cmd "$WORK/a" clients add --id soak-rs --name "soak resource server" --introspection "$RESOURCE" \
  --database "$DATABASE" --json) || fail "clients add (introspection) failed"
IS_SECRET=$(json_field client_secret <<<"$out")
[[ -n $CC_SECRET && -n $RT_SECRET && -n $IS_SECRET ]] || fail "clients add printed no client secret"

# --- two instances and the proxy -----------------------------------------------------------
PROXY_PORT=$(free_port)
ISSUER=http://127.0.0.1:$PROXY_PORT

# start_instance NAME: `mcpauth serve` on 127.0.0.1:0 with the common issuer; waits (30 s) for
# its banner's listening address, then (10 s) for /healthz there. Sets PID_<NAME>, ADDR_<NAME>.
start_instance() {
  local name=$1 dir=$WORK/${1,,} pid addr=
  env -u MCP_CLIENT_ID -u MCP_CLIENT_SECRET -u MCPAUTH_CLIENT_SECRET -u MCPAUTH_DATABASE_URL \
    MCPAUTH_HOME="$dir" RUST_LOG="${RUST_LOG:-warn}" \
    "$MCPAUTH_BIN" serve --bind 127.0.0.1:0 --issuer "$ISSUER" --no-rate-limits --database "$DATABASE" \
    --resource "$RESOURCE" --scope "$SCOPE" --access-token-ttl "$ACCESS_TTL" </dev/null >>"$dir/server.log" 2>&1 &
  pid=$!
  _CLEAN_PIDS+=("$pid")
  disown "$pid" # no "Killed" notice from bash for the instance killed on purpose
  for _ in $(seq 1 300); do
    addr=$(sed -n 's|^[[:space:]]*listening:[[:space:]]*http://||p' "$dir/server.log" | head -n1)
    [[ -n $addr ]] && break
    alive "$pid" || { cat "$dir/server.log" >&2; fail "instance $name exited at start"; }
    sleep 0.1
  done
  [[ -n $addr ]] || { cat "$dir/server.log" >&2; fail "instance $name printed no listening address in 30 s"; }
  local ok=0
  for _ in $(seq 1 100); do
    if curl -fsS -m 2 -o /dev/null "http://$addr/healthz" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
  done
  ((ok)) || { cat "$dir/server.log" >&2; fail "instance $name at $addr does not answer /healthz"; }
  printf -v "PID_$name" '%s' "$pid"
  printf -v "ADDR_$name" '%s' "$addr"
}
# One after the other: the first creates the schema and the signing key, the second finds them.
start_instance A
start_instance B
log "instance A: pid $PID_A at $ADDR_A; instance B: pid $PID_B at $ADDR_B; issuer $ISSUER"
jwks_a=$(curl -fsS -m 5 "http://$ADDR_A/jwks") || fail "GET /jwks at instance A failed"
jwks_b=$(curl -fsS -m 5 "http://$ADDR_B/jwks") || fail "GET /jwks at instance B failed"
[[ $jwks_a == "$jwks_b" && $jwks_a == *'"keys"'* ]] || fail "the two instances publish different JWKS (signing keys not shared)"

(cd "$SRC/bench" && exec "$NODE" soak-proxy.mjs "$PROXY_PORT" "$ADDR_A" "$ADDR_B") </dev/null >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
_CLEAN_PIDS+=("$PROXY_PID")
ready=0
for _ in $(seq 1 100); do
  if grep -q '^listening ' "$WORK/proxy.log"; then ready=1; break; fi
  alive "$PROXY_PID" || { cat "$WORK/proxy.log" >&2; fail "the proxy exited at start (port $PROXY_PORT taken?)"; }
  sleep 0.1
done
((ready)) || { cat "$WORK/proxy.log" >&2; fail "the proxy did not listen in 10 s"; }
for _ in 1 2; do # one request to each instance through the proxy
  got=$(curl -fsS -m 5 "$ISSUER/.well-known/oauth-authorization-server" | json_field issuer) ||
    fail "the metadata through the proxy failed"
  [[ $got == "$ISSUER" ]] || fail "the metadata through the proxy names issuer $got, not $ISSUER"
done

# --- refresh chains ------------------------------------------------------------------------
log "$CHAINS refresh chains by the code flow with PKCE through the proxy"
(cd "$SRC/bench" && BENCH_ISSUER=$ISSUER BENCH_CLIENT_ID=soak-rt BENCH_CLIENT_SECRET=$RT_SECRET \
  BENCH_REDIRECT_URI=$REDIRECT_URI BENCH_RESOURCE=$RESOURCE BENCH_SCOPE=$SCOPE BENCH_USERNAME=$USERNAME \
  BENCH_PASSWORD=$PASSWORD timeout --foreground -k 5 300 "$NODE" refresh-pool.mjs "$WORK/chains.txt" "$CHAINS") ||
  fail "making the refresh chains failed"

# --- the load, the kill, the verification; RSS and CPU sampled meanwhile -----------------------
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
ticks_of() { # user + system time of PID (all its threads) in clock ticks; nothing when gone
  local stat f
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))
}
IDLE_A=$(rss_of "$PID_A")
IDLE_B=$(rss_of "$PID_B")
DBNAME=${DATABASE##*/}

log "load: ${DURATION}s, $CONCURRENCY in flight, kill -9 of instance B at ${KILL_AT}s"
LOAD_START=$EPOCHREALTIME
(cd "$SRC/bench" && exec env SOAK_ISSUER="$ISSUER" SOAK_RESOURCE="$RESOURCE" SOAK_SCOPE="$SCOPE" \
  SOAK_CC_ID=soak-cc SOAK_CC_SECRET="$CC_SECRET" SOAK_RT_ID=soak-rt SOAK_RT_SECRET="$RT_SECRET" \
  SOAK_IS_ID=soak-rs SOAK_IS_SECRET="$IS_SECRET" SOAK_POOL="$WORK/chains.txt" SOAK_DURATION="$DURATION" \
  SOAK_CONCURRENCY="$CONCURRENCY" SOAK_KILL_PID="$PID_B" SOAK_KILL_AT="$KILL_AT" SOAK_VICTIM=1 SOAK_MIX="$MIX" \
  SOAK_RESULT="$WORK/result.json" "$NODE" soak.mjs) </dev/null >"$WORK/soak.txt" &
LOAD_PID=$!
_CLEAN_PIDS+=("$LOAD_PID")

# Every second: "EPOCH P NAME RSS_KB TICKS" for the instances (while they live: a zombie has no
# VmRSS), the proxy and the load generator; "EPOCH G PID TICKS" for PostgreSQL's backends of the
# database and its writer processes.
(
  set +e
  while :; do
    now=$EPOCHREALTIME
    for name in A B proxy load; do
      case $name in A) pid=$PID_A ;; B) pid=$PID_B ;; proxy) pid=$PROXY_PID ;; load) pid=$LOAD_PID ;; esac
      kb=$(rss_of "$pid")
      t=$(ticks_of "$pid")
      [[ -n $kb && -n $t ]] && echo "$now P $name $kb $t"
    done
    for pid in $(timeout 2 psql "$PG_ADMIN_URL" -qtAc "SELECT pid FROM pg_stat_activity WHERE datname = '$DBNAME' \
      OR backend_type IN ('walwriter', 'background writer', 'checkpointer')" 2>/dev/null); do
      t=$(ticks_of "$pid")
      [[ -n $t ]] && echo "$now G $pid $t"
    done
    sleep 1
  done
) >"$WORK/samples.tsv" &
SAMPLER_PID=$!
_CLEAN_PIDS+=("$SAMPLER_PID")

REASONS=()
deadline=$((SECONDS + DURATION + 300))
while alive "$LOAD_PID"; do
  if ((SECONDS > deadline)); then
    kill -KILL "$LOAD_PID" 2>/dev/null || true
    REASONS+=("bench/soak.mjs did not finish within $((DURATION + 300)) s (killed)")
    break
  fi
  sleep 0.5
done
rc=0
wait "$LOAD_PID" || rc=$?
LOAD_END=$EPOCHREALTIME
kill -TERM "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true

[[ $rc == 0 && -s $WORK/result.json ]] || REASONS+=("bench/soak.mjs exited with status $rc")
alive "$PID_A" || REASONS+=("the survivor (instance A) is not running")
if alive "$PID_B"; then REASONS+=("instance B survived its kill -9"); fi
RUN_END=$LOAD_END
TOTAL_OK=0
if [[ -s $WORK/result.json ]]; then
  mapfile -t more < <("$NODE" -e 'for (const f of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).failures) console.log(f)' "$WORK/result.json")
  ((${#more[@]} == 0)) || REASONS+=("${more[@]}")
  read -r RUN_END TOTAL_OK < <("$NODE" -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(((r.startedAtMs + r.runMs) / 1000).toFixed(3), Object.values(r.counts).reduce((s, c) => s + c.ok, 0))' "$WORK/result.json")
fi

# --- RSS -----------------------------------------------------------------------------------
# rss_report INSTANCE IDLE_KB: one line, its last word "bounded" or "UNBOUNDED". The window is
# the load (not the verification after it); for the killed instance, its life under load.
rss_report() {
  awk -v who="$1" -v idle="$2" -v from="$LOAD_START" -v to="$RUN_END" -v max="$RSS_GROWTH" '
    BEGIN { n = 0 }
    $2 == "P" && $3 == who && $1 >= from && $1 <= to { t[n] = $1; kb[n] = $4; n++ }
    END {
      if (n < 3) { printf "only %d samples under load: UNBOUNDED\n", n; exit }
      span = t[n - 1] - t[0]; p1 = 0; p3 = 0; peak = 0
      for (i = 0; i < n; i++) {
        if (kb[i] > peak) peak = kb[i]
        if (t[i] <= t[0] + span / 3 && kb[i] > p1) p1 = kb[i]
        if (t[i] >= t[n - 1] - span / 3 && kb[i] > p3) p3 = kb[i]
      }
      g = p1 > 0 ? (p3 / p1 - 1) * 100 : 1e9
      # least-squares slope over the last third, in KiB per minute (0 when flat)
      m = 0; sx = 0; sy = 0; sxx = 0; sxy = 0
      for (i = 0; i < n; i++) if (t[i] >= t[n - 1] - span / 3) {
        x = t[i] - t[0]; m++; sx += x; sy += kb[i]; sxx += x * x; sxy += x * kb[i]
      }
      slope = (m > 1 && m * sxx - sx * sx > 0) ? (m * sxy - sx * sy) / (m * sxx - sx * sx) * 60 : 0
      printf "idle %.1f MiB; under load (%d samples over %.0f s) start %.1f, peak %.1f, end %.1f MiB; peak of the first third %.1f, of the last third %.1f MiB (%+.1f%%, limit +%d%%; last third %+.0f KiB/min): %s\n",
        idle / 1024, n, span, kb[0] / 1024, peak / 1024, kb[n - 1] / 1024, p1 / 1024, p3 / 1024, g, max, slope,
        (g <= max) ? "bounded" : "UNBOUNDED"
    }' "$WORK/samples.tsv"
}
RSS_A=$(rss_report A "${IDLE_A:-0}") || RSS_A="not measured: UNBOUNDED"
RSS_B=$(rss_report B "${IDLE_B:-0}") || RSS_B="not measured: UNBOUNDED"
[[ $RSS_A == *": bounded" ]] || REASONS+=("RSS of instance A not bounded")
[[ $RSS_B == *": bounded" ]] || REASONS+=("RSS of instance B (before its kill) not bounded")

# CPU during the load, from the samples: each process's last ticks minus its first.
CPU_LINE=$(awk -v from="$LOAD_START" -v to="$RUN_END" -v hz="$(getconf CLK_TCK)" -v ok="$TOTAL_OK" '
  $1 >= from && $1 <= to {
    k = ($2 == "P") ? $3 : "pg:" $3; v = ($2 == "P") ? $5 : $4
    if (!(k in first)) first[k] = v
    last[k] = v
    if (t0 == "" || $1 < t0) t0 = $1
    if ($1 > t1) t1 = $1
  }
  END {
    for (k in first) { d = (last[k] - first[k]) / hz; if (k ~ /^pg:/) pg += d; else c[k] = d }
    w = t1 - t0; if (w <= 0) w = 1
    printf "A %.1f s, B %.1f s (until its kill), proxy %.1f s, load generator %.1f s, PostgreSQL %.1f s over %.0f s (%.2f of %d cores busy); mcpauth about %.0f us per answered request",
      c["A"], c["B"], c["proxy"], c["load"], pg, w, (c["A"] + c["B"] + c["proxy"] + c["load"] + pg) / w, '"$(nproc)"',
      (ok > 0 ? (c["A"] + c["B"]) * 1e6 / ok : 0)
  }' "$WORK/samples.tsv") || CPU_LINE="not measured"

# Server logs: anything at ERROR level, or a panic.
LOG_ERRORS=()
for i in a b; do
  n=$(grep -c -E 'ERROR|panicked' "$WORK/$i/server.log" || true)
  LOG_ERRORS+=("$n")
  ((n == 0)) || REASONS+=("instance ${i^^} logged $n errors")
done

# --- summary -------------------------------------------------------------------------------
echo
echo "== bench/soak.sh: 2 x mcpauth serve --no-rate-limits on PostgreSQL (one database, issuer $ISSUER) behind bench/soak-proxy.mjs; $(nproc) cores shared by everything"
cat "$WORK/soak.txt"
echo "RSS (VmRSS from /proc every 1 s):"
echo "  A (survivor, pid $PID_A): $RSS_A"
echo "  B (killed, pid $PID_B):   $RSS_B"
echo "CPU (user + system from /proc): $CPU_LINE"
echo "server logs (ERROR or panic lines): A ${LOG_ERRORS[0]}, B ${LOG_ERRORS[1]}"
echo "took ${SECONDS}s in all (load ${DURATION}s)"
if ((${#REASONS[@]})); then
  for i in 0 1; do
    name=$([[ $i == 0 ]] && echo a || echo b)
    if [[ ${LOG_ERRORS[$i]} != 0 ]]; then
      echo "--- instance ${name^^}: first error lines of its log" >&2
      grep -E 'ERROR|panicked' "$WORK/$name/server.log" | head -n 20 >&2
    fi
  done
  reasons=$(printf '%s; ' "${REASONS[@]}")
  echo "soak: FAIL (${reasons%; })"
  exit 1
fi
echo "soak: PASS"
