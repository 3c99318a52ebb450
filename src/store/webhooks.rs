//! Status webhooks: the URLs a tenant registered, and the events owed to them.
//!
//! An event is a row of `webhook_deliveries`, written in the same transaction as the state
//! change it reports (a flush of message outcomes, a mailing starting or ending, a
//! notification ending), one row per webhook of the tenant. The sender claims due rows under
//! a lease, posts them and records the answer; nothing is kept only in memory.

use super::{Result, Store, StoreError, lock_tenant};
use crate::ids::{MailingId, TenantId};
use crate::now_ms;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

/// What a webhook's secret is sealed for (`webhooks.secret`).
pub(super) const SEALED_AS: &str = "webhooks.secret";

/// How many of a webhook's latest events its tenant is shown (API and CLI alike).
pub const WEBHOOK_DELIVERIES_LISTED: u32 = 100;

/// A registered webhook as its tenant sees it (the secret only once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub created_at: i64,
    /// The signing key (HMAC-SHA256): returned when the webhook is made, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One event owed to a webhook, and how its posting went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    /// pending, delivered or failed
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    /// The HTTP status the receiver answered the last posting with; none when it could not be
    /// reached (or not yet posted).
    pub response_status: Option<i64>,
    pub payload: serde_json::Value,
}

/// A delivery a sender has claimed, with where it goes.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub payload: String,
    /// Attempts made, this one included.
    pub attempts: i64,
}

/// A message's final state, as a webhook reports it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageEvent<'a> {
    pub message_id: crate::ids::MessageId,
    pub state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

const ENQUEUE: &str = "INSERT INTO webhook_deliveries (webhook_id, payload, state, attempts, next_attempt_at, created_at)
     SELECT w.id, $1, 'pending', 0, $2, $2 FROM webhooks w";

/// Whose webhooks an event is owed to: a tenant's, or those of the tenant owning a mailing
/// (found in the same statement, so a flush spends no query on a tenant without webhooks).
enum Owner {
    Tenant(TenantId),
    Mailing { id: MailingId, tries_too: bool },
}

/// Owe `payload` to every webhook of `owner`, inside `tx`.
async fn enqueue(
    tx: &mut Transaction<'static, Any>,
    owner: Owner,
    payload: &serde_json::Value,
    now: i64,
) -> Result<()> {
    let (sql, key) = match owner {
        Owner::Tenant(tenant_id) => (format!("{ENQUEUE} WHERE w.tenant_id = $3"), tenant_id.0),
        // A notification's try reports its messages; its own start and end are not
        // reported (the notification's end is).
        Owner::Mailing { id, tries_too } => (
            format!(
                "{ENQUEUE} JOIN mailings m ON m.tenant_id = w.tenant_id WHERE m.id = $3{}",
                if tries_too {
                    ""
                } else {
                    " AND m.notification_id IS NULL"
                }
            ),
            id.0,
        ),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(payload.to_string())
        .bind(now)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Report messages of `mailing_id` that reached a final state.
pub(crate) async fn enqueue_message_events(
    tx: &mut Transaction<'static, Any>,
    mailing_id: MailingId,
    events: &[MessageEvent<'_>],
    now: i64,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let payload = serde_json::json!({
        "type": "messages",
        "at": now,
        "mailing_id": mailing_id,
        "messages": events,
    });
    let owner = Owner::Mailing {
        id: mailing_id,
        tries_too: true,
    };
    enqueue(tx, owner, &payload, now).await
}

/// Report that a mailing started (`running`), finished (`done`) or was cancelled.
pub(crate) async fn enqueue_mailing_event(
    tx: &mut Transaction<'static, Any>,
    mailing_id: MailingId,
    state: &str,
    now: i64,
) -> Result<()> {
    let payload = serde_json::json!({
        "type": "mailing",
        "at": now,
        "mailing_id": mailing_id,
        "state": state,
    });
    let owner = Owner::Mailing {
        id: mailing_id,
        tries_too: false,
    };
    enqueue(tx, owner, &payload, now).await
}

/// Report that `client_id`'s inbox items (id and message) of `mailing_id` moved to `state`
/// (delivered: an app acknowledged them; read).
pub(crate) async fn enqueue_inbox_event(
    tx: &mut Transaction<'static, Any>,
    mailing_id: MailingId,
    client_id: crate::ids::ClientId,
    state: &str,
    items: &[(i64, crate::ids::MessageId)],
    now: i64,
) -> Result<()> {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(id, message_id)| serde_json::json!({"item_id": id, "message_id": message_id}))
        .collect();
    let payload = serde_json::json!({
        "type": "inbox",
        "at": now,
        "mailing_id": mailing_id,
        "client_id": client_id,
        "state": state,
        "items": items,
    });
    let owner = Owner::Mailing {
        id: mailing_id,
        tries_too: true,
    };
    enqueue(tx, owner, &payload, now).await
}

/// Report that a notification ended (delivered, failed, expired, cancelled, unknown).
pub(crate) async fn enqueue_notification_event(
    tx: &mut Transaction<'static, Any>,
    tenant_id: TenantId,
    notification_id: i64,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    let payload = serde_json::json!({
        "type": "notification",
        "at": now,
        "notification_id": notification_id,
        "state": state,
        "error": error,
    });
    enqueue(tx, Owner::Tenant(tenant_id), &payload, now).await
}

impl Store {
    /// Register `url` for `tenant_id`'s events; the answer carries the signing secret. The
    /// URL was checked before (by the use-case layer, `app::webhooks`); the tenant may have at most
    /// `max_per_tenant` webhooks (`webhooks.max_per_tenant`).
    pub async fn add_webhook(
        &self,
        tenant_id: TenantId,
        url: &str,
        max_per_tenant: usize,
    ) -> Result<Webhook> {
        let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()));
        let created_at = now_ms();
        let mut tx = self.write_tx().await?;
        // Two registrations at once must not both pass the count: the tenant's row lock
        // makes them take turns.
        lock_tenant(&mut tx, tenant_id).await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_tenant {
            return Err(StoreError::Conflict(format!(
                "a tenant may register at most {max_per_tenant} webhooks (webhooks.max_per_tenant); remove one first"
            )));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO webhooks (tenant_id, url, secret, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(tenant_id)
        .bind(url)
        .bind(self.keys.seal(SEALED_AS, &secret))
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        Ok(Webhook {
            id,
            url: url.to_string(),
            created_at,
            secret: Some(secret),
        })
    }

    pub async fn webhooks(&self, tenant_id: TenantId) -> Result<Vec<Webhook>> {
        Ok(
            sqlx::query(
                "SELECT id, url, created_at FROM webhooks WHERE tenant_id = $1 ORDER BY id",
            )
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Webhook {
                id: r.get(0),
                url: r.get(1),
                created_at: r.get(2),
                secret: None,
            })
            .collect(),
        )
    }

    /// Forget a webhook and every event still owed to it.
    pub async fn remove_webhook(&self, tenant_id: TenantId, id: i64) -> Result<()> {
        self.delete_owned("webhooks", tenant_id, id, "webhook")
            .await
    }

    /// The latest `limit` events of one of `tenant_id`'s webhooks, newest first.
    pub async fn webhook_deliveries(
        &self,
        tenant_id: TenantId,
        webhook_id: i64,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        if !self
            .webhooks(tenant_id)
            .await?
            .iter()
            .any(|w| w.id == webhook_id)
        {
            return Err(StoreError::NotFound(format!("webhook {webhook_id}")));
        }
        Ok(sqlx::query(
            "SELECT id, state, attempts, last_error, created_at, delivered_at, payload,
                    response_status
             FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| WebhookDelivery {
            id: r.get(0),
            state: r.get(1),
            attempts: r.get(2),
            last_error: r.get(3),
            created_at: r.get(4),
            delivered_at: r.get(5),
            response_status: r.get(7),
            payload: serde_json::from_str(&r.get::<String, _>(6)).unwrap_or_default(),
        })
        .collect())
    }

    /// Claim up to `limit` events that are due, for `lease_ms`: a sender that dies lets them
    /// go when the lease ends. Several senders skip each other's rows.
    pub async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>> {
        let due = "state = 'pending' AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)";
        let sql = format!(
            "UPDATE webhook_deliveries SET claimed_until = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE {due} ORDER BY id LIMIT $3 {skip})
               AND {due}
             RETURNING id, webhook_id, payload, attempts",
            skip = self.dialect.skip_locked(),
        );
        let mut tx = self.write_tx().await?;
        let claimed: Vec<(i64, i64, String, i64)> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now + lease_ms)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let mut out = Vec::with_capacity(claimed.len());
        for (id, webhook_id, payload, attempts) in claimed {
            let Some(hook) = sqlx::query("SELECT url, secret FROM webhooks WHERE id = $1")
                .bind(webhook_id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                continue;
            };
            // A secret no key opens holds up its own delivery only (it waits out its lease
            // and is tried again), never the others in the batch.
            let secret = match self.keys.open(SEALED_AS, &hook.get::<String, _>(1)) {
                Ok(secret) => secret,
                Err(e) => {
                    tracing::error!(webhook = webhook_id, error = %e, "cannot sign a webhook delivery");
                    continue;
                }
            };
            out.push(DueDelivery {
                id,
                url: hook.get(0),
                secret,
                payload,
                attempts,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Record how a posting went: the receiver's HTTP status (if it answered), and delivered,
    /// or failed with the time of the next attempt (`None`: no attempt left, the event is
    /// marked failed).
    pub async fn finish_webhook_delivery(
        &self,
        id: i64,
        status: Option<u16>,
        result: std::result::Result<(), (String, Option<i64>)>,
    ) -> Result<()> {
        let now = now_ms();
        let status = status.map(i64::from);
        let query = match &result {
            Ok(()) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $1, claimed_until = NULL,
                        last_error = NULL, response_status = $3 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .bind(status),
            Err((error, Some(at))) => sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $1, claimed_until = NULL, last_error = $2,
                        response_status = $4
                 WHERE id = $3",
            )
            .bind(*at)
            .bind(error.clone())
            .bind(id)
            .bind(status),
            Err((error, None)) => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', claimed_until = NULL, last_error = $1,
                        response_status = $3
                 WHERE id = $2",
            )
            .bind(error.clone())
            .bind(id)
            .bind(status),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }
}

impl Store {
    /// Seal every tenant secret again under the current key (`blast secrets rotate`): those
    /// stored in plain text before a key was set, and those sealed under a previous key.
    /// Returns how many were sealed again.
    pub async fn reseal_secrets(&self) -> Result<u64> {
        let mut resealed = 0;
        for (table, column, context) in [
            ("telegram_bots", "token", super::bots::SEALED_AS),
            ("webhooks", "secret", SEALED_AS),
        ] {
            let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, {column} FROM {table}"
            )))
            .fetch_all(&self.pool)
            .await?;
            for (id, stored) in rows {
                if !self.keys.needs_reseal(&stored) {
                    continue;
                }
                let plain = self.keys.open(context, &stored)?;
                // Only if unchanged meanwhile: a concurrent write wins.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3"
                )))
                .bind(self.keys.seal(context, &plain))
                .bind(id)
                .bind(&stored)
                .execute(&self.pool)
                .await?;
                resealed += 1;
            }
        }
        Ok(resealed)
    }

    /// Whether tenant secrets are sealed (a key is configured).
    pub fn seals_secrets(&self) -> bool {
        self.keys.is_sealing()
    }
}
