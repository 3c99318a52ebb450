-- Deduplication: one key per (tenant, channel, recipient, text) sent within mailing.dedup_window_secs.
CREATE TABLE dedup_keys (
    key        TEXT PRIMARY KEY,
    message_id INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dedup_keys_expiry ON dedup_keys (expires_at);
