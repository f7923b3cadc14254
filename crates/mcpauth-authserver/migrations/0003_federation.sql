-- mcpauth-authserver schema, version 3: federation (SPEC F1-F8). Portable SQL, like version 1.
-- A sign-in at an upstream identity provider waiting for its callback: found by the SHA-256 of
-- the state sent, deleted when used, bound to the browser (browser_hash = SHA-256 of its session
-- cookie) and to the pending authorization request.
CREATE TABLE upstream_logins (
    state_hash TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The provider that signs a user in (users named PROVIDER:SUB, whose password hash matches no
-- password); NULL for users with a local password.
ALTER TABLE users ADD COLUMN external_provider TEXT;
