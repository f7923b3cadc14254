# Shared by interop/run-federation and conformance/run-authorization --with-idp (sourced, after
# interop/lib/common.sh, ensure_node and ensure_interop_modules): the upstream OpenID Connect
# provider interop/federation/idp.mjs (oidc-provider) with a confidential client for mcpauth.

IDP_CLIENT_ID=mcpauth
IDP_NAME=exampleidp
IDP_DISPLAY_NAME="Example IdP"

# Picks the provider's port and writes our client secret (0600): prepare_idp DIR.
# Sets IDP_PORT, IDP_ISSUER and IDP_SECRET_FILE; the provider starts later (start_idp), once the
# redirect URI is known. The flags for mcpauth serve / gateway are in IDP_FLAGS.
prepare_idp() {
  local dir=$1
  IDP_PORT=$(free_port)
  IDP_ISSUER="http://127.0.0.1:$IDP_PORT"
  IDP_SECRET_FILE=$dir/idp-client-secret
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$IDP_SECRET_FILE") || fail "cannot write $IDP_SECRET_FILE"
  IDP_FLAGS=(--idp-issuer "$IDP_ISSUER" --idp-client-id "$IDP_CLIENT_ID" --idp-client-secret-file "$IDP_SECRET_FILE"
    --idp-name "$IDP_NAME" --idp-display-name "$IDP_DISPLAY_NAME")
}

# Starts the provider with REDIRECT_URI registered: start_idp REDIRECT_URI LOGFILE. Sets IDP_PID.
start_idp() {
  local redirect=$1 logfile=$2
  IDP_PORT=$IDP_PORT IDP_CLIENT_ID=$IDP_CLIENT_ID IDP_CLIENT_SECRET_FILE=$IDP_SECRET_FILE \
    IDP_REDIRECT_URIS=$redirect IDP_PASSWORD=$PASSWORD \
    "$NODE" "$INTEROP_DIR/src/federation/idp.mjs" </dev/null >>"$logfile" 2>&1 &
  IDP_PID=$!
  _CLEAN_PIDS+=("$IDP_PID")
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$IDP_ISSUER/.well-known/openid-configuration" 2>/dev/null && return 0
    kill -0 "$IDP_PID" 2>/dev/null || { cat "$logfile" >&2; fail "oidc-provider exited at start"; }
    sleep 0.1
  done
  cat "$logfile" >&2
  fail "oidc-provider does not answer at $IDP_ISSUER"
}
