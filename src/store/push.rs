//! Web push subscriptions: the browsers a client allowed to show our notifications.

use super::{Result, Store};
use crate::domain::PushSubscription;
use crate::ids::{ClientId, TenantId};
use crate::now_ms;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// A browser's `PushSubscription.toJSON()`, as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPushSubscription {
    pub endpoint: String,
    pub keys: PushKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushKeys {
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    pub auth: String,
}

/// A stored subscription as its tenant sees it (the keys are not secret, but are no use to
/// show either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredPushSubscription {
    pub id: i64,
    pub client_id: ClientId,
    pub endpoint: String,
    pub created_at: i64,
}

/// A push goes to at most this many of a client's browsers, the newest.
const MAX_PUSH_TARGETS: i64 = 10;

impl Store {
    /// Store a subscription of `tenant_id`'s client `client_id` (again: a browser that
    /// subscribes anew gets new keys for the same endpoint, which replace the old). Its keys
    /// and endpoint were checked before (by the use-case layer, `app::push`).
    pub async fn add_push_subscription(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
        new: &NewPushSubscription,
    ) -> Result<StoredPushSubscription> {
        self.client(tenant_id, client_id).await?;
        let created_at = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO push_subscriptions (tenant_id, client_id, endpoint, p256dh, auth, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (client_id, endpoint) DO UPDATE
             SET p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at
             RETURNING id",
        )
        .bind(tenant_id)
        .bind(client_id)
        .bind(&new.endpoint)
        .bind(&new.keys.p256dh)
        .bind(&new.keys.auth)
        .bind(created_at)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(StoredPushSubscription {
            id,
            client_id,
            endpoint: new.endpoint.clone(),
            created_at,
        })
    }

    /// The subscriptions of `tenant_id`'s client `client_id`, oldest first.
    pub async fn list_push_subscriptions(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
    ) -> Result<Vec<StoredPushSubscription>> {
        self.client(tenant_id, client_id).await?;
        Ok(sqlx::query(
            "SELECT id, client_id, endpoint, created_at FROM push_subscriptions
             WHERE tenant_id = $1 AND client_id = $2 ORDER BY id",
        )
        .bind(tenant_id)
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| StoredPushSubscription {
            id: r.get(0),
            client_id: r.get(1),
            endpoint: r.get(2),
            created_at: r.get(3),
        })
        .collect())
    }

    /// Remove one of `tenant_id`'s subscriptions.
    pub async fn remove_push_subscription(&self, tenant_id: TenantId, id: i64) -> Result<()> {
        self.delete_owned("push_subscriptions", tenant_id, id, "push subscription")
            .await
    }

    /// Where a client's web push messages go: for the worker.
    pub async fn push_subscriptions_of(
        &self,
        client_id: ClientId,
    ) -> Result<Vec<PushSubscription>> {
        Ok(sqlx::query(
            "SELECT id, endpoint, p256dh, auth FROM push_subscriptions WHERE client_id = $1
             ORDER BY id DESC LIMIT $2",
        )
        .bind(client_id)
        .bind(MAX_PUSH_TARGETS)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| PushSubscription {
            id: r.get(0),
            endpoint: r.get(1),
            p256dh: r.get(2),
            auth: r.get(3),
        })
        .collect())
    }

    /// A push service said the subscription is gone (404/410): nothing more goes there.
    pub async fn drop_push_subscription(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
