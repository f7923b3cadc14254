-- mcpauth-authserver schema, version 6: secrets every instance shares (portable SQL, like
-- version 1). `dpop-nonce`: the key of the stateless DPoP nonces (RFC 9449 §8, SPEC D7), made by
-- the first instance that needs it; `secret` is base64url.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
