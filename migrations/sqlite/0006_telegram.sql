-- Telegram mailings: what kind of message, its media and options, as JSON (TelegramContent).
ALTER TABLE mailings ADD COLUMN telegram TEXT;
-- Set when Telegram told us the client blocked the bot or is gone; Telegram mailings leave it out.
ALTER TABLE clients ADD COLUMN telegram_blocked_at INTEGER;

-- Files given with a mailing (a local photo, a document): kept here, not on one machine's disk,
-- so any worker can upload them.
CREATE TABLE media_files (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_name  TEXT NOT NULL,
    content    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- The file_id Telegram gave for an uploaded media file, per bot (a file_id is only valid for the
-- bot that uploaded it): every later recipient gets the file by its id instead of an upload.
CREATE TABLE telegram_file_ids (
    media_id INTEGER NOT NULL REFERENCES media_files(id) ON DELETE CASCADE,
    bot_id   TEXT NOT NULL,
    file_id  TEXT NOT NULL,
    PRIMARY KEY (media_id, bot_id)
);
