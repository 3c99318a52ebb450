//! Idempotency keys: the first response to each (tenant, key) is kept, so a retried create
//! returns it and creates nothing twice.

use super::{Result, Store, is_unique_violation};
use crate::ids::TenantId;
use crate::now_ms;
use sqlx::Row;

/// What the store knows of a key when a request arrives with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: handle the request, then [`Store::finish_idempotent`].
    Fresh,
    /// A response is stored: return it.
    Done { status: u16, body: Vec<u8> },
    /// The first request with this key is still being handled.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

impl Store {
    /// Claim `key` for a request. A key left unanswered for longer than `lease_ms` (its
    /// process died mid-request) is taken over as fresh.
    pub async fn claim_idempotency_key(
        &self,
        tenant_id: TenantId,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyClaim> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => return Ok(IdempotencyClaim::Fresh),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let taken_over = sqlx::query(
            "UPDATE idempotency_keys SET request_hash = $1, created_at = $2
             WHERE tenant_id = $3 AND key = $4 AND status IS NULL AND created_at < $2 - $5",
        )
        .bind(request_hash)
        .bind(now)
        .bind(tenant_id)
        .bind(key)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?;
        if taken_over.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Fresh);
        }
        let row = sqlx::query(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        )
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Released between our insert and this read: the caller may simply try again.
            return Ok(IdempotencyClaim::InProgress);
        };
        if row.get::<String, _>(0) != request_hash {
            return Ok(IdempotencyClaim::Mismatch);
        }
        Ok(match row.get::<Option<i64>, _>(1) {
            Some(status) => IdempotencyClaim::Done {
                status: u16::try_from(status).unwrap_or(500),
                body: row.get::<Option<Vec<u8>>, _>(2).unwrap_or_default(),
            },
            None => IdempotencyClaim::InProgress,
        })
    }

    /// Store the response to a fresh key.
    pub async fn finish_idempotent(
        &self,
        tenant_id: TenantId,
        key: &str,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE tenant_id = $3 AND key = $4",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(tenant_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forget a key whose request failed on our side, so that a retry is handled afresh.
    pub async fn release_idempotency_key(&self, tenant_id: TenantId, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
            .bind(tenant_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Drop keys older than `max_age_ms`.
    pub async fn purge_idempotency_keys(&self, max_age_ms: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(now_ms() - max_age_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
