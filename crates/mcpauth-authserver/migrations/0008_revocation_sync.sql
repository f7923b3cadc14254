-- mcpauth-authserver schema, version 8: revocations are read by the other instances sharing the
-- database incrementally, by when they were made (issue 17: each instance re-read every revoked
-- token still valid every 2 s). Rows from before this version read as made at 0, which only the
-- first read at start-up (everything still valid) takes.
ALTER TABLE revoked_access_tokens ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX revoked_access_tokens_revoked_at ON revoked_access_tokens (revoked_at);
CREATE INDEX revoked_families_revoked_at ON revoked_families (revoked_at);
