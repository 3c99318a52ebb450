-- The subscriber bot (`blast bot`) makes clients from Telegram's /start: they have a chat and
-- perhaps a tag, but no phone. A NULL phone is outside UNIQUE (tenant_id, phone), and SMS
-- mailings leave such clients out.
ALTER TABLE clients ALTER COLUMN phone DROP NOT NULL;
ALTER TABLE clients ALTER COLUMN operator_code SET DEFAULT '';
-- /start finds the client of a chat.
CREATE INDEX clients_telegram ON clients (tenant_id, telegram_chat_id)
    WHERE telegram_chat_id IS NOT NULL;

-- Work that one process of the cluster does at a time (the bot's long polling: Telegram
-- answers a second concurrent getUpdates with 409). The holder renews before it expires.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
