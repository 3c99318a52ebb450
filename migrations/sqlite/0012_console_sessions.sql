-- Web console sessions: stored here, so any `blast serve` process behind a load balancer
-- serves any request. Only a hash of the cookie's token is kept.
CREATE TABLE console_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The token every state-changing form of this session must carry.
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
