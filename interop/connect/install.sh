# Shared by interop/run-connect and bench/connect.sh (sourced after interop/lib/common.sh, not
# run). Installs idempotently into .cache/interop-connect (git-ignored):
#   node_modules   interop/connect/package.json + package-lock.json with `npm ci` (again only when
#                  they change): @modelcontextprotocol/sdk (client, example servers), mcp-remote
#   src/           the harness sources, with interop/lib/http-login.mjs, beside node_modules
#   venv/          the Python SDK (`mcp` from PyPI) for the Python server

CONNECT_CACHE=${MCPAUTH_INTEROP_CONNECT_CACHE:-$REPO_ROOT/.cache/interop-connect}
PY_MCP_VERSION=2.3.0

# interop/connect's package.json + lock, `npm ci` into $CONNECT_CACHE when they change; the
# harness sources (and interop/lib/http-login.mjs) copied into $CONNECT_CACHE/src so Node resolves
# the packages from there. Sets CONNECT_DIR.
ensure_connect_modules() {
  CONNECT_DIR=$CONNECT_CACHE
  mkdir -p "$CONNECT_DIR"
  exec 7>"$CONNECT_DIR/.install.lock"
  flock 7 2>/dev/null || true
  local want have
  want=$(cat "$REPO_ROOT/interop/connect/package.json" "$REPO_ROOT/interop/connect/package-lock.json" | sha256sum | cut -c1-64)
  have=$(cat "$CONNECT_DIR/.installed" 2>/dev/null || true)
  if [[ $want != "$have" || ! -d $CONNECT_DIR/node_modules ]]; then
    command -v npm >/dev/null || fail "npm is needed to install interop/connect's packages"
    log "installing interop/connect/package-lock.json into $CONNECT_DIR (npm ci)"
    cp "$REPO_ROOT/interop/connect/package.json" "$REPO_ROOT/interop/connect/package-lock.json" "$CONNECT_DIR/"
    (cd "$CONNECT_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
      fail "npm ci in $CONNECT_DIR failed"
    echo "$want" >"$CONNECT_DIR/.installed"
  fi
  exec 7>&-
  rm -rf "$CONNECT_DIR/src"
  mkdir -p "$CONNECT_DIR/src"
  cp "$REPO_ROOT"/interop/connect/*.mjs "$REPO_ROOT"/interop/connect/*.py "$CONNECT_DIR/src/"
  cp "$REPO_ROOT/interop/lib/http-login.mjs" "$CONNECT_DIR/src/"
  TS_EXAMPLES=$CONNECT_DIR/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server
  [[ -f $TS_EXAMPLES/simpleStreamableHttp.js ]] || fail "no simpleStreamableHttp.js in $TS_EXAMPLES"
}

# A venv with the Python SDK from PyPI. Sets PYTHON.
ensure_python_mcp() {
  local venv=$CONNECT_CACHE/venv
  PYTHON=$venv/bin/python
  mkdir -p "$CONNECT_CACHE"
  exec 6>"$CONNECT_CACHE/.venv.lock"
  flock 6 2>/dev/null || true
  if [[ $("$PYTHON" -c 'from importlib.metadata import version; print(version("mcp"))' 2>/dev/null) != "$PY_MCP_VERSION" ]]; then
    command -v python3 >/dev/null || fail "python3 is needed for the Python SDK server"
    log "installing mcp==$PY_MCP_VERSION (PyPI) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q --disable-pip-version-check "mcp==$PY_MCP_VERSION" >&2 || fail "pip install mcp==$PY_MCP_VERSION failed"
  fi
  exec 6>&-
  "$PYTHON" -c 'from mcp.server.mcpserver import MCPServer' || fail "the Python SDK does not import"
}

