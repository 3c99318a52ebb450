//! What the subscriber bot writes: clients made or re-activated by Telegram's /start, opted
//! out by /stop, and the leases that let one process of the cluster do a job at a time.

use super::clients::{TagIds, link_tags};
use super::{Client, Result, Store};
use crate::ids::{ClientId, TenantId};
use crate::now_ms;
use sqlx::{Any, Row};

/// What /start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// A new client, made for this chat.
    New(ClientId),
    /// An existing client of this chat, active again (it may have sent /stop or blocked the bot).
    Again(ClientId),
}

impl Subscribed {
    pub fn client_id(&self) -> ClientId {
        match self {
            Subscribed::New(id) | Subscribed::Again(id) => *id,
        }
    }
}

/// The id of the tenant's client with this chat (the oldest, should there be several).
async fn chat_client_id<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    tenant_id: TenantId,
    chat_id: i64,
) -> Result<Option<ClientId>> {
    Ok(sqlx::query(
        "SELECT id FROM clients WHERE tenant_id = $1 AND telegram_chat_id = $2 ORDER BY id LIMIT 1",
    )
    .bind(tenant_id)
    .bind(chat_id)
    .fetch_optional(executor)
    .await?
    .map(|r| r.get(0)))
}

impl Store {
    /// The client of `tenant_id` with this Telegram chat, if any (the oldest, should there be
    /// several).
    pub async fn client_by_telegram_chat(
        &self,
        tenant_id: TenantId,
        chat_id: i64,
    ) -> Result<Option<Client>> {
        match chat_client_id(&self.pool, tenant_id, chat_id).await? {
            Some(id) => Ok(Some(self.client(tenant_id, id).await?)),
            None => Ok(None),
        }
    }

    /// /start from `chat_id`: the chat's client is made (named `name`, no phone) or made
    /// reachable again, and tagged `tag` when the deep link carried one.
    pub async fn subscribe_telegram(
        &self,
        tenant_id: TenantId,
        chat_id: i64,
        name: &str,
        tag: Option<&str>,
    ) -> Result<Subscribed> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let subscribed = match chat_client_id(&mut *tx, tenant_id, chat_id).await? {
            Some(id) => {
                sqlx::query(
                    "UPDATE clients SET telegram_blocked_at = NULL, updated_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Subscribed::Again(id)
            }
            None => {
                // The unique subscriber index settles a race with another /start of the chat.
                let inserted: Option<ClientId> = sqlx::query(
                    "INSERT INTO clients (tenant_id, phone, operator_code, name, telegram_chat_id,
                                          created_at, updated_at)
                     VALUES ($1, NULL, '', $2, $3, $4, $4)
                     ON CONFLICT (tenant_id, telegram_chat_id)
                         WHERE phone IS NULL AND telegram_chat_id IS NOT NULL DO NOTHING
                     RETURNING id",
                )
                .bind(tenant_id)
                .bind(name)
                .bind(chat_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
                match inserted {
                    Some(id) => Subscribed::New(id),
                    None => {
                        let id: ClientId = sqlx::query(
                            "SELECT id FROM clients
                             WHERE tenant_id = $1 AND telegram_chat_id = $2 AND phone IS NULL",
                        )
                        .bind(tenant_id)
                        .bind(chat_id)
                        .fetch_one(&mut *tx)
                        .await?
                        .get(0);
                        Subscribed::Again(id)
                    }
                }
            }
        };
        if let Some(tag) = tag {
            let tags = [tag.to_owned()];
            link_tags(
                &mut tx,
                &mut TagIds::default(),
                tenant_id,
                subscribed.client_id(),
                &tags,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(subscribed)
    }

    /// /stop from `chat_id` (or the user blocked the bot): the chat's client gets no more
    /// Telegram mailings until it sends /start. False when the chat has no client.
    pub async fn unsubscribe_telegram(&self, tenant_id: TenantId, chat_id: i64) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE clients SET telegram_blocked_at = COALESCE(telegram_blocked_at, $1), updated_at = $1
             WHERE tenant_id = $2 AND telegram_chat_id = $3",
        )
        .bind(now)
        .bind(tenant_id)
        .bind(chat_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Take or renew the lease `name` for `holder` until `ttl_ms` from now. False while another
    /// holder's lease runs.
    pub async fn hold_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Give the lease up, if `holder` has it, so another process need not wait for it to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Who holds the lease `name` now, if anyone.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query("SELECT holder FROM leases WHERE name = $1 AND expires_at >= $2")
                .bind(name)
                .bind(now_ms())
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }
}
