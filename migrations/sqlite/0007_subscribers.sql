-- no-transaction
-- The subscriber bot (`blast bot`) makes clients from Telegram's /start: they have a chat and
-- perhaps a tag, but no phone. SQLite cannot drop a NOT NULL in place, so the table is rebuilt
-- (sqlite.org/lang_altertable.html, "making other kinds of table schema changes"): with
-- foreign keys off, so that dropping the old table does not cascade to client_tags and
-- messages, which keep referring to the name `clients`.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE clients_rebuilt (
    id                  INTEGER PRIMARY KEY,
    tenant_id           INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    phone               TEXT,
    operator_code       TEXT NOT NULL DEFAULT '',
    name                TEXT NOT NULL DEFAULT '',
    email               TEXT,
    telegram_chat_id    INTEGER,
    timezone            TEXT NOT NULL DEFAULT 'UTC',
    attributes          TEXT NOT NULL DEFAULT '{}',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    email_opted_out_at  INTEGER,
    telegram_blocked_at INTEGER,
    UNIQUE (tenant_id, phone)
);
INSERT INTO clients_rebuilt (id, tenant_id, phone, operator_code, name, email, telegram_chat_id,
                             timezone, attributes, created_at, updated_at, email_opted_out_at,
                             telegram_blocked_at)
    SELECT id, tenant_id, phone, operator_code, name, email, telegram_chat_id, timezone,
           attributes, created_at, updated_at, email_opted_out_at, telegram_blocked_at
    FROM clients;
DROP TABLE clients;
ALTER TABLE clients_rebuilt RENAME TO clients;
CREATE INDEX clients_operator ON clients (tenant_id, operator_code);
-- /start finds the client of a chat.
CREATE INDEX clients_telegram ON clients (tenant_id, telegram_chat_id)
    WHERE telegram_chat_id IS NOT NULL;

-- Work that one process of the cluster does at a time (the bot's long polling: Telegram
-- answers a second concurrent getUpdates with 409). The holder renews before it expires.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
COMMIT;
PRAGMA foreign_keys = ON;
