-- mcpauth-authserver schema, version 1. Written in the subset of SQL that SQLite and PostgreSQL
-- share (TEXT, BIGINT, partial indexes, ON CONFLICT), so one file serves both backends.
-- Secrets (codes, refresh tokens, client secrets, session ids) are stored as SHA-256 hex;
-- passwords as argon2id PHC strings. Times are Unix seconds.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- kind: 'static' (admin), 'dynamic' (RFC 7591) or 'metadata_document' (a cached CIMD fetch,
-- valid until expires_at). metadata is the RFC 7591 client metadata as JSON.
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    secret_hash TEXT,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT,
    scope TEXT NOT NULL,
    family_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- A family is everything issued from one authorization code; access token jtis start with
-- "<family_id>." so that revoking the family revokes them too.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    successor_hash TEXT,
    successor_sealed TEXT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE revoked_families (
    family_id TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- RFC 7523 §3 client assertion replay protection.
CREATE TABLE client_assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);

CREATE TABLE login_sessions (
    session_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A validated authorization request waiting for login and consent, bound to the browser that
-- made it (browser_hash = SHA-256 of its session cookie).
CREATE TABLE authorization_requests (
    id TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    request TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- status: 'current' (signs), 'previous' (still in the JWKS), 'retired'.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_pkcs8 TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (status) WHERE status = 'current';
