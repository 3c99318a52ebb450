-- The HTTP API: short-lived session tokens and idempotent creates.

-- NULL: a long-lived API token (blast token create); otherwise a session token's expiry (ms).
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;

-- The first response to each (tenant, Idempotency-Key); a retry gets it back.
CREATE TABLE idempotency_keys (
    tenant_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    -- NULL while the first request is still being handled
    status       INTEGER,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

-- The per-message listing filters by state within a mailing.
CREATE INDEX messages_mailing_state_id ON messages (mailing_id, state, id);
