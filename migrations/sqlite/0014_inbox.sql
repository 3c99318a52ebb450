-- In-app inboxes: one item per message sent on the `inapp` channel. Stored when it is sent
-- (`sent`), acknowledged by an app's socket (`delivered_at`), read and archived by the user.
-- AUTOINCREMENT: ids never come back, so an app that catches up "after id N" misses nothing.
CREATE TABLE inbox_items (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL,
    client_id    INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    -- One item per message: a send repeated after a crash finds it there.
    message_id   INTEGER NOT NULL UNIQUE,
    mailing_id   INTEGER NOT NULL,
    title        TEXT,
    text         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    read_at      INTEGER,
    archived_at  INTEGER
);
CREATE INDEX inbox_items_client ON inbox_items (client_id, id);
