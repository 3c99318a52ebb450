-- Bots a tenant registered beside the configured telegram.bot_token, each with its own limits
-- (keyed by bot_id, the token's public part). A mailing names one by `name`. The token is a
-- credential the worker must present, so it is kept as given; the API never returns it.
CREATE TABLE telegram_bots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    bot_id     TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
