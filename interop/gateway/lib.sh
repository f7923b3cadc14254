# Shared by interop/run-gateway and bench/gateway.sh (sourced, after interop/lib/common.sh and
# ensure_node): interop/gateway/package.json + package-lock.json installed with `npm ci` into
# .cache/interop-gateway (again only when the lock changed), and the harness sources plus
# interop/lib/http-login.mjs copied into .cache/interop-gateway/src beside node_modules (Node
# resolves packages from the script's directory upwards). Sets GW_DIR and MCP_REMOTE_JS.
ensure_gateway_modules() {
  GW_DIR=${MCPAUTH_INTEROP_GATEWAY_CACHE:-$REPO_ROOT/.cache/interop-gateway}
  mkdir -p "$GW_DIR"
  exec 7>"$GW_DIR/.install.lock"
  flock 7 2>/dev/null || true
  local want have
  want=$(cat "$REPO_ROOT/interop/gateway/package.json" "$REPO_ROOT/interop/gateway/package-lock.json" | sha256sum | cut -c1-64)
  have=$(cat "$GW_DIR/.installed" 2>/dev/null || true)
  if [[ $want != "$have" || ! -d $GW_DIR/node_modules ]]; then
    command -v npm >/dev/null || fail "npm is needed to install the gateway interop packages"
    log "installing interop/gateway/package-lock.json into $GW_DIR (npm ci)"
    cp "$REPO_ROOT/interop/gateway/package.json" "$REPO_ROOT/interop/gateway/package-lock.json" "$GW_DIR/"
    (cd "$GW_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci in $GW_DIR failed"
    echo "$want" >"$GW_DIR/.installed"
  fi
  exec 7>&-
  rm -rf "$GW_DIR/src"
  mkdir -p "$GW_DIR/src/lib"
  cp "$REPO_ROOT"/interop/gateway/*.mjs "$GW_DIR/src/"
  cp "$REPO_ROOT/interop/lib/http-login.mjs" "$REPO_ROOT/interop/lib/checks.mjs" "$GW_DIR/src/lib/"
  MCP_REMOTE_JS=$GW_DIR/node_modules/mcp-remote/dist/proxy.js
  [[ -f $MCP_REMOTE_JS ]] || fail "no mcp-remote at $MCP_REMOTE_JS"
}

# Starts `mcpauth gateway` in the background: start_gateway HOME LOGFILE ARGS... (on
# GATEWAY_BIND, default 127.0.0.1:0). Sets GATEWAY_PID, GATEWAY_URL (from its banner) and ISSUER
# (its authorization server).
start_gateway() {
  local home=$1 logfile=$2; shift 2
  env -u MCP_CLIENT_ID -u MCP_CLIENT_SECRET -u MCPAUTH_CLIENT_SECRET -u MCPAUTH_DATABASE_URL \
    MCPAUTH_HOME="$home" RUST_LOG="${RUST_LOG:-warn}" \
    "$MCPAUTH_BIN" gateway --bind "${GATEWAY_BIND:-127.0.0.1:0}" "$@" </dev/null >>"$logfile" 2>&1 &
  GATEWAY_PID=$!
  _CLEAN_PIDS+=("$GATEWAY_PID")
  GATEWAY_URL=
  for _ in $(seq 1 300); do
    grep -q 'Press Ctrl-C' "$logfile" && GATEWAY_URL=$(sed -n 's/^[[:space:]]*MCP server:[[:space:]]*//p' "$logfile" | head -n1)
    [[ -n $GATEWAY_URL ]] && break
    kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$logfile" >&2; fail "mcpauth gateway exited at start"; }
    sleep 0.1
  done
  [[ -n $GATEWAY_URL ]] || { cat "$logfile" >&2; fail "mcpauth gateway printed no MCP server URL in 30 s"; }
  ISSUER=$(sed -n 's/^[[:space:]]*authorization server:[[:space:]]*\([^ ]*\).*/\1/p' "$logfile" | head -n1)
  [[ -n $ISSUER ]] || fail "mcpauth gateway printed no authorization server"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$ISSUER/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$logfile" >&2
  fail "mcpauth gateway at $ISSUER does not answer /healthz"
}
