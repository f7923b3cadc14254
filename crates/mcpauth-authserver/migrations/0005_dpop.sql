-- mcpauth-authserver schema, version 5: DPoP (RFC 9449, SPEC D6-D7). Portable SQL, like version 1.
-- Proofs seen at the token endpoint (RFC 9449 §11.1): the SHA-256 of the proof key's thumbprint
-- and the proof's jti, kept until the proof's iat window has closed; one table for every instance.
CREATE TABLE dpop_proofs (
    proof_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- The key a public client's grant is bound to (RFC 9449 §5): every refresh of the family needs a
-- proof by this key (RFC 7638 thumbprint). Confidential clients' grants are not bound.
CREATE TABLE dpop_families (
    family_id TEXT PRIMARY KEY,
    jkt TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
