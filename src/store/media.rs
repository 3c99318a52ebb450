//! Media files stored with Telegram mailings, the file_ids Telegram gave for them, and what
//! Telegram taught us about a client's chat (blocked the bot, moved to a supergroup).

use super::{Result, Store, StoreError};
use crate::ids::TenantId;
use crate::now_ms;
use sqlx::Row;

impl Store {
    /// The name of media file `id` of `tenant_id`, or NotFound.
    pub async fn media_file_name(&self, tenant_id: TenantId, id: i64) -> Result<String> {
        sqlx::query("SELECT file_name FROM media_files WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::NotFound(format!("media file {id}")))
    }

    /// The name and bytes of media file `id` (any tenant: the worker's view).
    pub async fn media_file(&self, id: i64) -> Result<(String, Vec<u8>)> {
        sqlx::query("SELECT file_name, content FROM media_files WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| (r.get(0), r.get(1)))
            .ok_or_else(|| StoreError::NotFound(format!("media file {id}")))
    }

    /// The file_id `bot_id` got for media file `media_id`, once it was uploaded.
    pub async fn telegram_file_id(&self, media_id: i64, bot_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query(
                "SELECT file_id FROM telegram_file_ids WHERE media_id = $1 AND bot_id = $2",
            )
            .bind(media_id)
            .bind(bot_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0)),
        )
    }

    /// Remember the file_id of an upload. When two workers uploaded at once, the first kept
    /// wins: both ids are valid, and every later send uses the same one.
    pub async fn save_telegram_file_id(
        &self,
        media_id: i64,
        bot_id: &str,
        file_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO telegram_file_ids (media_id, bot_id, file_id) VALUES ($1, $2, $3)
             ON CONFLICT (media_id, bot_id) DO NOTHING",
        )
        .bind(media_id)
        .bind(bot_id)
        .bind(file_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The client blocked the bot or deleted their account: Telegram mailings leave them out
    /// until they write to the bot again.
    pub async fn block_telegram(&self, client_id: crate::ids::ClientId) -> Result<()> {
        sqlx::query(
            "UPDATE clients SET telegram_blocked_at = COALESCE(telegram_blocked_at, $1), updated_at = $1
             WHERE id = $2",
        )
        .bind(now_ms())
        .bind(client_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The client's group chat became a supergroup with a new id.
    pub async fn move_telegram_chat(
        &self,
        client_id: crate::ids::ClientId,
        from: i64,
        to: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE clients SET telegram_chat_id = $1, updated_at = $2
             WHERE id = $3 AND telegram_chat_id = $4",
        )
        .bind(to)
        .bind(now_ms())
        .bind(client_id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
