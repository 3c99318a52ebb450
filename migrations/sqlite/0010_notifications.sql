-- Web push subscriptions, notification preferences, and notifications: one event (or a
-- digest of several, coalesced) to one client, tried over its channels in order. Each try is
-- a one-row mailing (mailings.notification_id), so it goes through the same pump, limits,
-- retries and states as any message.

-- A browser's PushSubscription (endpoint and keys, base64url) for one client.
CREATE TABLE push_subscriptions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (client_id, endpoint)
);

-- A client's own channel order (JSON array) and quiet hours ("22:00-07:00", its time zone).
CREATE TABLE notification_preferences (
    client_id   INTEGER PRIMARY KEY REFERENCES clients(id) ON DELETE CASCADE,
    channels    TEXT NOT NULL,
    quiet_hours TEXT,
    updated_at  INTEGER NOT NULL
);

-- waiting (until deliver_after: collecting events) -> sending (mailing_id is the try under
-- way) -> delivered | failed | expired | cancelled | unknown
CREATE TABLE notifications (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id     INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    priority      TEXT NOT NULL,
    urgent        INTEGER NOT NULL DEFAULT 0,
    -- NULL: not coalescing; otherwise later events with the same key join while waiting.
    coalesce_key  TEXT,
    state         TEXT NOT NULL,
    deliver_after INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    -- The channels tried so far, in order (JSON array); the last is the current one.
    tried         TEXT NOT NULL DEFAULT '[]',
    mailing_id    INTEGER,
    channel       TEXT,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX notifications_due ON notifications (state, deliver_after);
-- At most one notification per client and key gathers events: two events arriving together
-- cannot both start one.
CREATE UNIQUE INDEX notifications_coalescing ON notifications (client_id, coalesce_key)
    WHERE state = 'waiting' AND coalesce_key IS NOT NULL;
CREATE INDEX notifications_tenant ON notifications (tenant_id, id);

CREATE TABLE notification_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    -- The caller's Idempotency-Key: a repeated key returns the first event's notification.
    idempotency_key TEXT,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    data            TEXT NOT NULL DEFAULT 'null',
    link            TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX notification_events_of ON notification_events (notification_id, id);

ALTER TABLE mailings ADD COLUMN notification_id INTEGER;
