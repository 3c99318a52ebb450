//! Users (operators, the tenants) and their API tokens.

use super::{Result, Store, StoreError, is_unique_violation};
use crate::domain::invalid;
use crate::ids::TenantId;
use crate::now_ms;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: TenantId,
    pub name: String,
    pub disabled: bool,
}

/// Who a token acts for, and until when (Unix ms; never when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user: User,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub user: User,
    pub created_at: i64,
    pub tokens: i64,
    pub clients: i64,
    pub mailings: i64,
}

/// One API token as its owner may see it: never the token itself, which is shown once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// When it stops working (Unix ms); `None`: it works until revoked.
    pub expires_at: Option<i64>,
}

/// Tokens are shown once and stored only as their SHA-256: they are long random secrets, so a
/// fast hash is enough (a password needs argon2 because people choose weak ones).
const TOKEN_PREFIX: &str = "blast_";

/// The longest note a token may carry.
pub const MAX_TOKEN_LABEL: usize = 100;

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn validate_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid user name {name:?}: use 1-64 ASCII letters, digits, '_', '-' or '.'"
        ))
        .into())
    }
}

/// Argon2 takes tens of milliseconds of CPU on purpose: run it off the async runtime.
async fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < 8 {
        return Err(invalid("password too short: use at least 8 characters").into());
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password_now(&password))
        .await
        .map_err(|e| StoreError::Invalid(invalid(format!("cannot hash password: {e}"))))?
}

fn hash_password_now(password: &str) -> Result<String> {
    if password.chars().count() < 8 {
        return Err(invalid("password too short: use at least 8 characters").into());
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| StoreError::Invalid(invalid(format!("password salt: {e}"))))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(invalid(format!("cannot hash password: {e}"))))
}

/// A real argon2 hash of a random password, to verify against for unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 16];
        rand::rng().fill_bytes(&mut secret);
        hash_password_now(&hex::encode(secret)).unwrap_or_default()
    })
}

/// Whether `name` could be a user name at all (checked before any work is spent on it).
pub fn is_plausible_user_name(name: &str) -> bool {
    validate_user_name(name).is_ok()
}

impl Store {
    pub async fn add_user(&self, name: &str, password: &str) -> Result<User> {
        validate_user_name(name)?;
        let hash = hash_password(password).await?;
        let res = sqlx::query(
            "INSERT INTO users (name, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await;
        match res {
            Ok(row) => Ok(User {
                id: row.get(0),
                name: name.to_owned(),
                disabled: false,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "user {name:?} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_name(&self, name: &str) -> Result<User> {
        sqlx::query("SELECT id, name, disabled FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| User {
                id: r.get(0),
                name: r.get(1),
                disabled: r.get::<i64, _>(2) != 0,
            })
            .ok_or_else(|| StoreError::NotFound(format!("user {name:?}")))
    }

    pub async fn list_users(&self) -> Result<Vec<UserSummary>> {
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.disabled, u.created_at,
                    (SELECT COUNT(*) FROM api_tokens t WHERE t.user_id = u.id),
                    (SELECT COUNT(*) FROM clients c WHERE c.tenant_id = u.id),
                    (SELECT COUNT(*) FROM mailings m WHERE m.tenant_id = u.id)
             FROM users u ORDER BY u.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| UserSummary {
                user: User {
                    id: r.get(0),
                    name: r.get(1),
                    disabled: r.get::<i64, _>(2) != 0,
                },
                created_at: r.get(3),
                tokens: r.get(4),
                clients: r.get(5),
                mailings: r.get(6),
            })
            .collect())
    }

    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
            .bind(i64::from(disabled))
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        Ok(())
    }

    /// Create an API token for `user` and return it; only its hash is kept. With `ttl_ms` it
    /// is a session token that stops working after that long.
    pub async fn create_token(&self, user: &User, label: &str) -> Result<String> {
        self.create_token_with_ttl(user, label, None).await
    }

    pub async fn create_token_with_ttl(
        &self,
        user: &User,
        label: &str,
        ttl_ms: Option<i64>,
    ) -> Result<String> {
        if label.chars().count() > MAX_TOKEN_LABEL {
            return Err(StoreError::Invalid(invalid(format!(
                "a token's label is at most {MAX_TOKEN_LABEL} characters"
            ))));
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_tokens (user_id, token_hash, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id)
        .bind(hash_token(&token))
        .bind(label)
        .bind(now)
        .bind(ttl_ms.map(|ttl| now + ttl))
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The tokens of `user` that still work (revoked and expired ones are gone), oldest first.
    pub async fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>> {
        Ok(sqlx::query(
            "SELECT id, label, created_at, last_used_at, expires_at FROM api_tokens
             WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id",
        )
        .bind(user.id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            label: r.get(1),
            created_at: r.get(2),
            last_used_at: r.get(3),
            expires_at: r.get(4),
        })
        .collect())
    }

    /// Revoke token `id` of `user`: API processes stop taking it once their cache of checked
    /// tokens asks again (`api.token_cache_secs`).
    pub async fn revoke_token(&self, user: &User, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE user_id = $1 AND id = $2")
            .bind(user.id)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound(format!(
                "token {id} of user {:?}",
                user.name
            )));
        }
        Ok(())
    }

    /// The enabled user a token belongs to, if any. `last_used_at` is refreshed at most once a
    /// minute, so that authenticating a request is a read, not a write.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>> {
        Ok(self.token_owner(token).await?.map(|owner| owner.user))
    }

    /// The enabled user `token` belongs to, with the time the token stops working.
    pub async fn token_owner(&self, token: &str) -> Result<Option<TokenOwner>> {
        let now = now_ms();
        let hash = hash_token(token);
        let row = sqlx::query(
            "SELECT u.id, u.name, t.last_used_at, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND u.disabled = 0 AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(&hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let last_used: Option<i64> = row.get(2);
        if last_used.is_none_or(|t| t < now - 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(TokenOwner {
            user: User {
                id: row.get(0),
                name: row.get(1),
                disabled: false,
            },
            expires_at: row.get(3),
        }))
    }

    /// The enabled user with this name and password, if any.
    /// An unknown user costs the same argon2 work as a wrong password, so that the time of
    /// the answer does not tell which user names exist.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT id, password_hash FROM users WHERE name = $1 AND disabled = 0")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let (id, stored) = match &row {
            Some(r) => (Some(r.get::<TenantId, _>(0)), r.get::<String, _>(1)),
            None => (None, dummy_hash().to_owned()),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        Ok(id.filter(|_| ok).map(|id| User {
            id,
            name: name.to_owned(),
            disabled: false,
        }))
    }
}
