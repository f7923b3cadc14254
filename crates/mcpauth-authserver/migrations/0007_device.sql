-- mcpauth-authserver schema, version 7: the device authorization grant (RFC 8628, SPEC V1-V2).
-- Portable SQL, like version 1. One row per device authorization: the device code is kept as its
-- SHA-256 (it is a secret), the user code as typed without its dash (unique among live codes).
-- status: 'pending' (waiting for the user), 'approved' (user_id and family_id set), 'denied',
-- 'used' (the tokens were issued: a second exchange is invalid_grant).
-- poll_interval is in seconds (it grows by 5 on each slow_down), last_poll_at in milliseconds.
CREATE TABLE device_codes (
    device_hash TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT,
    status TEXT NOT NULL,
    user_id TEXT,
    family_id TEXT,
    poll_interval BIGINT NOT NULL,
    last_poll_at BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
