-- blast schema, SQLite flavour. Times are unix milliseconds (INTEGER) so that the same queries
-- compare them on SQLite and PostgreSQL alike.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    label        TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE clients (
    id               INTEGER PRIMARY KEY,
    tenant_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    phone            TEXT NOT NULL,
    operator_code    TEXT NOT NULL,
    name             TEXT NOT NULL DEFAULT '',
    email            TEXT,
    telegram_chat_id INTEGER,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    attributes       TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (tenant_id, phone)
);
CREATE INDEX clients_operator ON clients (tenant_id, operator_code);

CREATE TABLE tags (
    id        INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE client_tags (
    client_id INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    tag_id    INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, client_id)
) WITHOUT ROWID;
CREATE INDEX client_tags_client ON client_tags (client_id);

CREATE TABLE mailings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    text            TEXT NOT NULL,
    -- the audience filter as JSON: {"tags": [...], "operator_codes": [...]}
    filter          TEXT NOT NULL,
    priority        TEXT NOT NULL,
    start_at        INTEGER NOT NULL,
    end_at          INTEGER NOT NULL,
    -- scheduled -> running -> done | cancelled
    state           TEXT NOT NULL,
    recipients      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX mailings_state ON mailings (state, start_at);
CREATE INDEX mailings_tenant ON mailings (tenant_id, id);

-- One row per (mailing, client): the delivery state machine (see ARCHITECTURE.md).
-- AUTOINCREMENT: the id is the provider's deduplication key and must never be reused.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    mailing_id      INTEGER NOT NULL REFERENCES mailings(id) ON DELETE CASCADE,
    client_id       INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claim           INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (mailing_id, client_id)
);
-- The pump's question: which rows of this mailing are due?
CREATE INDEX messages_due ON messages (mailing_id, state, next_attempt_at);
-- The reconciler's question: which claimed rows have been held too long?
CREATE INDEX messages_held ON messages (state, updated_at);
-- Deleting a client cascades to its messages.
CREATE INDEX messages_client ON messages (client_id);

-- Live blast processes, by heartbeat. `blast up` owns an embedded database alone and checks
-- here that no other process is alive before it recovers leftover work at once.
CREATE TABLE instances (
    name         TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
