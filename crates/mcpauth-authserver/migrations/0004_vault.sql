-- mcpauth-authserver schema, version 4: the upstream token vault (SPEC F2-F5). Portable SQL, like
-- version 1. One row per sign-in at an identity provider: bound to its authorization request
-- (request_id) until the code is issued, then to the grant family the code starts (family_id),
-- and deleted with the family. `sealed` holds
-- the upstream access token, refresh token, expiry and scope, AES-256-GCM under the vault key,
-- which is kept outside the database.
CREATE TABLE upstream_grants (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    family_id TEXT UNIQUE,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
