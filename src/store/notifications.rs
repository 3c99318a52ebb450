//! Notifications: their rows, their events, and the steps the dispatcher
//! (`app::notifications`) takes on them, each in the transaction that took the notification.
//!
//! Each try is a mailing of one row (`mailings.notification_id`), made when the notification
//! is due or its previous try ended, so every try has the pump, the limits, the retries and the
//! states of any message.

use super::mailings::reachable_on;
use super::{Result, Store, StoreError, is_unique_violation, parse_priority};
use crate::domain::{ChannelKind, LocalHours, MessageState, Priority, invalid};
use crate::ids::{ClientId, TenantId};
use crate::notify::Event;
use crate::now_ms;
use crate::telegram::TelegramContent;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// What a caller asks to notify.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub client_id: ClientId,
    pub event: Event,
    pub priority: Priority,
    /// Deliver even in the client's quiet hours.
    pub urgent: bool,
    /// Hold the notification this many minutes, gathering later events with the same
    /// `coalesce_key` for the same client into one digest; 0: send now.
    pub coalesce_minutes: u32,
    pub coalesce_key: Option<String>,
    /// A repeated key returns the notification the first event went into.
    pub idempotency_key: Option<String>,
}

/// A client's own channel order and quiet hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationPreferences {
    /// Channels in the order to try them (webpush, telegram, email, sms).
    #[schema(min_items = 1)]
    pub channels: Vec<ChannelKind>,
    /// "22:00-07:00" in the client's time zone: a notification waits until the end of them,
    /// unless it is urgent.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub quiet_hours: Option<LocalHours>,
}

/// A notification as its tenant sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    pub id: i64,
    pub client_id: ClientId,
    /// waiting, sending, delivered, failed, expired, cancelled or unknown
    pub state: String,
    #[schema(value_type = String)]
    pub priority: Priority,
    pub urgent: bool,
    /// The channel of the current or last try.
    pub channel: Option<String>,
    /// Every channel tried so far, in order.
    pub tried: Vec<String>,
    pub deliver_after: i64,
    pub expires_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The events it carries (several when coalesced).
    pub events: Vec<Event>,
}

const NOTIFICATION_COLUMNS: &str = "id, client_id, state, priority, urgent, channel, tried, deliver_after, expires_at, last_error, created_at, updated_at";

const EVENTS_SQL: &str = "SELECT title, body, data, link FROM notification_events WHERE notification_id = $1 ORDER BY id";

/// The events of a notification, in the order they came, on a connection of the caller's.
async fn events_in(conn: &mut sqlx::AnyConnection, notification_id: i64) -> Result<Vec<Event>> {
    let rows = sqlx::query(EVENTS_SQL)
        .bind(notification_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Event {
            title: r.get(0),
            body: r.get(1),
            data: serde_json::from_str(&r.get::<String, _>(2)).unwrap_or_default(),
            link: r.get(3),
        })
        .collect())
}

/// A client's own preferences, None when it has none. On a connection of the caller's (inside
/// the dispatcher's transaction: a second connection from the pool while holding SQLite's
/// write lock could wait on writers waiting for that lock).
async fn preferences_in(
    conn: &mut sqlx::AnyConnection,
    client_id: ClientId,
) -> Result<Option<NotificationPreferences>> {
    let row = sqlx::query(
        "SELECT channels, quiet_hours FROM notification_preferences WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(NotificationPreferences {
        channels: serde_json::from_str(&row.get::<String, _>(0))
            .map_err(|e| StoreError::Invalid(invalid(format!("stored channels: {e}"))))?,
        quiet_hours: row
            .get::<Option<String>, _>(1)
            .map(|h| h.parse())
            .transpose()?,
    }))
}

impl Store {
    /// Set a client's channel order and quiet hours (checked by `app::notifications`).
    pub(crate) async fn set_notification_preferences(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
        preferences: &NotificationPreferences,
    ) -> Result<NotificationPreferences> {
        self.client(tenant_id, client_id).await?;
        sqlx::query(
            "INSERT INTO notification_preferences (client_id, channels, quiet_hours, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (client_id) DO UPDATE
             SET channels = excluded.channels, quiet_hours = excluded.quiet_hours,
                 updated_at = excluded.updated_at",
        )
        .bind(client_id)
        .bind(serde_json::to_string(&preferences.channels).unwrap_or_else(|_| "[]".into()))
        .bind(preferences.quiet_hours.map(|h| h.to_string()))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(preferences.clone())
    }

    /// A client's own preferences, None when it has none.
    pub async fn notification_preferences(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
    ) -> Result<Option<NotificationPreferences>> {
        self.client(tenant_id, client_id).await?;
        let mut conn = self.pool.acquire().await?;
        preferences_in(&mut conn, client_id).await
    }

    /// Take one event for a client, checked by `app::notifications`: a new notification that
    /// expires `expire_after_ms` after it is due, or (coalescing) one more event of the
    /// client's waiting notification with the same key. Returns the notification and whether
    /// this call made it (false: an earlier call with the same idempotency key did).
    pub(crate) async fn notify(
        &self,
        tenant_id: TenantId,
        new: NewNotification,
        expire_after_ms: i64,
    ) -> Result<(Notification, bool)> {
        self.client(tenant_id, new.client_id).await?;
        if let Some(existing) = self.notification_of_key(tenant_id, &new).await? {
            return Ok((self.notification(tenant_id, existing).await?, false));
        }
        let mut tries = 0;
        loop {
            match self.add_event(tenant_id, &new, expire_after_ms).await {
                Ok(id) => return Ok((self.notification(tenant_id, id).await?, true)),
                // Another call made a notification at the same instant: the same idempotency
                // key (its notification is the answer), or the same client's waiting
                // notification for this coalescing key (join it: one more pass finds it).
                Err(StoreError::Db(e)) if is_unique_violation(&e) && tries < 3 => {
                    tries += 1;
                    if let Some(id) = self.notification_of_key(tenant_id, &new).await? {
                        return Ok((self.notification(tenant_id, id).await?, false));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn notification_of_key(
        &self,
        tenant_id: TenantId,
        new: &NewNotification,
    ) -> Result<Option<i64>> {
        let Some(key) = &new.idempotency_key else {
            return Ok(None);
        };
        Ok(sqlx::query(
            "SELECT notification_id FROM notification_events WHERE tenant_id = $1 AND idempotency_key = $2",
        )
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.get(0)))
    }

    async fn add_event(
        &self,
        tenant_id: TenantId,
        new: &NewNotification,
        expire_after_ms: i64,
    ) -> Result<i64> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let coalesce_key =
            (new.coalesce_minutes > 0).then(|| new.coalesce_key.clone().unwrap_or_default());
        let mut joined = None;
        if let Some(key) = &coalesce_key {
            // The UPDATE takes the row: a dispatcher that starts it meanwhile either went
            // first (then this finds it no longer waiting and makes a new one) or waits for
            // this transaction and then sees this event too.
            joined = sqlx::query(
                "UPDATE notifications SET updated_at = $1
                 WHERE id = (SELECT id FROM notifications
                             WHERE client_id = $2 AND coalesce_key = $3 AND state = 'waiting'
                               AND tenant_id = $4
                             ORDER BY id LIMIT 1)
                   AND state = 'waiting'
                 RETURNING id",
            )
            .bind(now)
            .bind(new.client_id)
            .bind(key)
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get::<i64, _>(0));
        }
        let id = match joined {
            Some(id) => id,
            None => {
                let deliver_after = now + i64::from(new.coalesce_minutes) * 60_000;
                sqlx::query(
                    "INSERT INTO notifications (tenant_id, client_id, priority, urgent, coalesce_key, state,
                                                deliver_after, expires_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 'waiting', $6, $7, $8, $8) RETURNING id",
                )
                .bind(tenant_id)
                .bind(new.client_id)
                .bind(new.priority.as_str())
                .bind(i64::from(new.urgent))
                .bind(&coalesce_key)
                .bind(deliver_after)
                .bind(deliver_after.saturating_add(expire_after_ms))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .get(0)
            }
        };
        sqlx::query(
            "INSERT INTO notification_events (tenant_id, notification_id, idempotency_key, title, body, data, link, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(&new.idempotency_key)
        .bind(new.event.title.trim())
        .bind(&new.event.body)
        .bind(serde_json::to_string(&new.event.data).unwrap_or_else(|_| "null".into()))
        .bind(&new.event.link)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn notification(&self, tenant_id: TenantId, id: i64) -> Result<Notification> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = $1 AND id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("notification {id}")))?;
        Ok(Notification {
            id: row.get(0),
            client_id: row.get(1),
            state: row.get(2),
            priority: parse_priority(row.get(3))?,
            urgent: row.get::<i64, _>(4) != 0,
            channel: row.get(5),
            tried: serde_json::from_str(&row.get::<String, _>(6)).unwrap_or_default(),
            deliver_after: row.get(7),
            expires_at: row.get(8),
            last_error: row.get(9),
            created_at: row.get(10),
            updated_at: row.get(11),
            events: self.notification_events(id).await?,
        })
    }

    /// The events of a notification, in the order they came: for the worker too.
    pub async fn notification_events(&self, notification_id: i64) -> Result<Vec<Event>> {
        events_in(&mut *self.pool.acquire().await?, notification_id).await
    }

    /// The notifications the dispatcher has a step for, oldest first: those due (waiting, with
    /// None) and those whose try has ended (sending, with the try's mailing). A try has ended
    /// when its mailing is done, or cancelled with no row still held by a worker (a send in
    /// flight may yet land), or gone (deleted).
    pub async fn notification_steps(&self, now: i64) -> Result<Vec<(i64, Option<i64>)>> {
        let due = sqlx::query(
            "SELECT id FROM notifications WHERE state = 'waiting' AND deliver_after <= $1 ORDER BY id LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let ended = sqlx::query(
            "SELECT n.id, n.mailing_id FROM notifications n LEFT JOIN mailings m ON m.id = n.mailing_id
             WHERE n.state = 'sending'
               AND (m.id IS NULL
                    OR (m.state IN ('done', 'cancelled')
                        AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.mailing_id = n.mailing_id
                                        AND x.state IN ('pending', 'queued', 'sending', 'failed_temporary'))))
             ORDER BY n.id LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(due
            .iter()
            .map(|r| (r.get(0), None))
            .chain(ended.iter().map(|r| (r.get(0), Some(r.get(1)))))
            .collect())
    }

    /// Take notification `id` for one step, if it is still where [`Store::notification_steps`]
    /// saw it (waiting, or sending `ended_try`); None when another process got there first.
    /// What the step does is written in the turn's transaction, and dropping the turn
    /// writes nothing.
    pub async fn take_notification(
        &self,
        id: i64,
        ended_try: Option<i64>,
        now: i64,
    ) -> Result<Option<NotificationTurn>> {
        let mut tx = self.write_tx().await?;
        let taken = sqlx::query(
            "UPDATE notifications SET updated_at = $1
             WHERE id = $2 AND state = $3 AND COALESCE(mailing_id, 0) = $4
             RETURNING tenant_id, client_id, priority, urgent, tried, expires_at, last_error",
        )
        .bind(now)
        .bind(id)
        .bind(if ended_try.is_some() {
            "sending"
        } else {
            "waiting"
        })
        .bind(ended_try.unwrap_or(0))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = taken else {
            return Ok(None);
        };
        Ok(Some(NotificationTurn {
            id,
            tenant_id: row.get(0),
            client_id: row.get(1),
            priority: parse_priority(row.get(2))?,
            urgent: row.get::<i64, _>(3) != 0,
            tried: serde_json::from_str(&row.get::<String, _>(4)).unwrap_or_default(),
            expires_at: row.get(5),
            last_error: row.get(6),
            now,
            tx,
        }))
    }
}

/// A notification taken by the dispatcher for one step, with what its row says.
pub struct NotificationTurn {
    pub id: i64,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub priority: Priority,
    /// Deliver even in the client's quiet hours.
    pub urgent: bool,
    /// The channels tried so far, in order.
    pub tried: Vec<ChannelKind>,
    pub expires_at: i64,
    /// The last try's error, with its channel.
    pub last_error: Option<String>,
    now: i64,
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

/// A try the dispatcher starts: one message on `channel`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTry {
    pub channel: ChannelKind,
    pub text: String,
    pub subject: Option<String>,
    /// The hours it may go out in, in the client's time zone.
    pub local_hours: Option<LocalHours>,
    pub telegram: Option<TelegramContent>,
}

impl NotificationTurn {
    /// How the try of mailing `mailing_id` ended: the state of its one message and its last
    /// error; cancelled when the try is gone.
    pub async fn try_outcome(&mut self, mailing_id: i64) -> Result<(MessageState, Option<String>)> {
        let row = sqlx::query("SELECT state, last_error FROM messages WHERE mailing_id = $1")
            .bind(mailing_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        match row {
            Some(r) => Ok((r.get::<String, _>(0).parse()?, r.get(1))),
            None => Ok((MessageState::Cancelled, None)),
        }
    }

    /// The client's own preferences, None when it has none.
    pub async fn preferences(&mut self) -> Result<Option<NotificationPreferences>> {
        preferences_in(&mut self.tx, self.client_id).await
    }

    /// Whether the client can be reached on `channel` now, by the condition a mailing's
    /// audience uses.
    pub async fn reachable(&mut self, channel: ChannelKind) -> Result<bool> {
        let sql = format!(
            "SELECT 1 FROM clients c WHERE c.id = $1 AND {}",
            reachable_on(channel)
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.client_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .is_some())
    }

    /// The notification's events, in the order they came.
    pub async fn events(&mut self) -> Result<Vec<Event>> {
        events_in(&mut self.tx, self.id).await
    }

    /// End the notification in `state` (delivered, failed, expired, cancelled or unknown),
    /// and owe the event to the tenant's webhooks.
    pub async fn end(mut self, state: &str, last_error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE notifications SET state = $1, last_error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(state)
        .bind(last_error)
        .bind(self.now)
        .bind(self.id)
        .execute(&mut *self.tx)
        .await?;
        super::webhooks::enqueue_notification_event(
            &mut self.tx,
            self.tenant_id,
            self.id,
            state,
            last_error,
            self.now,
        )
        .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Start `next` as the notification's next try: a running mailing of one pending row,
    /// delivered like any other, until the notification expires. `tried` already names its
    /// channel.
    pub async fn start_try(
        mut self,
        next: NewTry,
        tried: &[ChannelKind],
        last_error: Option<&str>,
    ) -> Result<()> {
        let now = self.now;
        let telegram = next
            .telegram
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Invalid(invalid(e.to_string())))?;
        let mailing_id: i64 = sqlx::query(
            "INSERT INTO mailings (tenant_id, channel, text, filter, priority, start_at, end_at, local_hours,
                                   state, recipients, created_at, started_at, subject, notification_id, telegram)
             VALUES ($1, $2, $3, '{}', $4, $5, $6, $7, 'running', 1, $5, $5, $8, $9, $10) RETURNING id",
        )
        .bind(self.tenant_id)
        .bind(next.channel.as_str())
        .bind(&next.text)
        .bind(self.priority.as_str())
        .bind(now)
        .bind(self.expires_at)
        .bind(next.local_hours.map(|h| h.to_string()))
        .bind(&next.subject)
        .bind(self.id)
        .bind(telegram)
        .fetch_one(&mut *self.tx)
        .await?
        .get(0);
        sqlx::query(
            "INSERT INTO messages (mailing_id, client_id, state, next_attempt_at, updated_at)
             VALUES ($1, $2, 'pending', $3, $3)",
        )
        .bind(mailing_id)
        .bind(self.client_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "UPDATE notifications SET state = 'sending', mailing_id = $1, channel = $2, tried = $3,
                                      last_error = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(mailing_id)
        .bind(next.channel.as_str())
        .bind(serde_json::to_string(tried).unwrap_or_else(|_| "[]".into()))
        .bind(last_error)
        .bind(now)
        .bind(self.id)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
