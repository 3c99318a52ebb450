//! Telegram bots a tenant registered beside `telegram.bot_token`: a mailing names one to go
//! out through it, with that bot's own limits.

use super::{Result, Store, StoreError, is_unique_violation};
use crate::domain::invalid;
use crate::domain::{TelegramBot, bot_id_of};
use crate::ids::TenantId;
use crate::now_ms;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// What a bot's token is sealed for (`telegram_bots.token`).
pub(super) const SEALED_AS: &str = "telegram_bots.token";

/// A registered bot as its tenant sees it: never its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisteredBot {
    /// What mailings call it (`telegram.bot`).
    pub name: String,
    /// The bot's public numeric id, the part of its token before the colon.
    pub bot_id: String,
    pub created_at: i64,
}

/// 1-64 of a-z, 0-9, `-` and `_`, so a name reads the same in a URL path and on a command line.
pub fn validate_bot_name(name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if fine {
        Ok(())
    } else {
        Err(invalid(format!(
            "bot name {name:?}: use 1 to 64 of a-z, 0-9, - and _"
        ))
        .into())
    }
}

impl Store {
    /// Register `token` as `tenant_id`'s bot `name`. The store does not ask Telegram about the
    /// token: callers check it first with [`TelegramBot::verify`] (the API and the CLI do).
    pub async fn add_telegram_bot(
        &self,
        tenant_id: TenantId,
        name: &str,
        token: &Secret,
    ) -> Result<RegisteredBot> {
        validate_bot_name(name)?;
        let bot_id = bot_id_of(token.expose())
            .ok_or_else(|| {
                invalid("that is not a bot token: digits, a colon, then the secret from @BotFather")
            })?
            .to_string();
        let created_at = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO telegram_bots (tenant_id, name, bot_id, token, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(&bot_id)
        .bind(self.keys.seal(SEALED_AS, token.expose()))
        .bind(created_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(RegisteredBot {
                name: name.to_string(),
                bot_id,
                created_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a bot named {name:?} is already registered"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// `tenant_id`'s registered bots, by name.
    pub async fn telegram_bots(&self, tenant_id: TenantId) -> Result<Vec<RegisteredBot>> {
        Ok(sqlx::query(
            "SELECT name, bot_id, created_at FROM telegram_bots WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| RegisteredBot {
            name: r.get(0),
            bot_id: r.get(1),
            created_at: r.get(2),
        })
        .collect())
    }

    /// The bot `name` of `tenant_id` to send through, if it is registered.
    pub async fn telegram_bot(
        &self,
        tenant_id: TenantId,
        name: &str,
    ) -> Result<Option<TelegramBot>> {
        sqlx::query("SELECT bot_id, token FROM telegram_bots WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| -> Result<TelegramBot> {
                Ok(TelegramBot {
                    id: r.get(0),
                    token: Secret::new(self.keys.open(SEALED_AS, &r.get::<String, _>(1))?),
                })
            })
            .transpose()
    }

    /// Forget bot `name` of `tenant_id`; refused while a mailing that has not finished names
    /// it (its messages would fail).
    pub async fn remove_telegram_bot(&self, tenant_id: TenantId, name: &str) -> Result<()> {
        let unfinished: Vec<(i64, Option<String>)> = sqlx::query(
            "SELECT id, telegram FROM mailings
             WHERE tenant_id = $1 AND channel = 'telegram' AND state IN ('scheduled', 'running', 'paused')",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let users: Vec<String> = unfinished
            .into_iter()
            .filter(|(_, content)| {
                content
                    .as_deref()
                    .and_then(|json| {
                        serde_json::from_str::<crate::telegram::TelegramContent>(json).ok()
                    })
                    .is_some_and(|content| content.bot.as_deref() == Some(name))
            })
            .map(|(id, _)| id.to_string())
            .collect();
        if !users.is_empty() {
            return Err(StoreError::Conflict(format!(
                "bot {name:?} is used by unfinished mailing(s) {}: cancel them or let them finish first",
                users.join(", ")
            )));
        }
        let done = sqlx::query("DELETE FROM telegram_bots WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("bot {name:?}")));
        }
        Ok(())
    }
}
