//! Web console sessions: made at sign-in, looked up by the cookie's token (stored hashed),
//! ended at sign-out or when idle or too old.

use super::{Result, Store, User};
use crate::ids::TenantId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// A signed-in console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub user: User,
    /// The token every state-changing form of the session carries.
    pub csrf: String,
}

/// How long a session lives, in ms: since its last request, and since sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Start a session for `user`: the cookie's token (shown this once) and its CSRF token.
    pub async fn start_console_session(
        &self,
        user: TenantId,
        now: i64,
    ) -> Result<(String, String)> {
        let (token, csrf) = (random_hex(), random_hex());
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_id, csrf, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(hash(&token))
        .bind(user)
        .bind(&csrf)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok((token, csrf))
    }

    /// The live session of `token`, its last request moved to `now`; None for an unknown,
    /// expired or disabled user's session (an expired one is deleted).
    pub async fn console_session(
        &self,
        token: &str,
        now: i64,
        limits: SessionLimits,
    ) -> Result<Option<ConsoleSession>> {
        let hashed = hash(token);
        let row = sqlx::query(
            "SELECT u.id, u.name, u.disabled, s.csrf, s.created_at, s.last_seen_at
             FROM console_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1",
        )
        .bind(&hashed)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let disabled = row.get::<i64, _>(2) != 0;
        let (created_at, last_seen_at): (i64, i64) = (row.get(4), row.get(5));
        if disabled
            || now.saturating_sub(last_seen_at) > limits.idle_ms
            || now.saturating_sub(created_at) > limits.absolute_ms
        {
            self.end_console_session(token).await?;
            return Ok(None);
        }
        sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(&hashed)
            .execute(&self.pool)
            .await?;
        Ok(Some(ConsoleSession {
            user: User {
                id: row.get(0),
                name: row.get(1),
                disabled,
            },
            csrf: row.get(3),
        }))
    }

    /// End the session of `token` (nothing happens for an unknown one).
    pub async fn end_console_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(hash(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
