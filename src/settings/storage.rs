//! `[pool]`, `[secrets]` and `[redis]`: the database connections, the key tenant secrets are
//! sealed with, and the Redis of the production profile.

use super::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Database connections each process keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// The main pool on PostgreSQL.
    pub postgres_connections: u32,
    /// The main pool on SQLite.
    pub sqlite_connections: u32,
    /// PostgreSQL connections for client imports (COPY), apart from the main pool.
    pub import_connections: u32,
    /// Seconds a request waits for a connection before it fails.
    pub acquire_timeout_secs: u64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        let sizes = crate::store::PoolSizes::default();
        PoolSettings {
            postgres_connections: sizes.postgres,
            sqlite_connections: sizes.sqlite,
            import_connections: sizes.imports,
            acquire_timeout_secs: sizes.acquire_timeout.as_secs(),
        }
    }
}

impl PoolSettings {
    pub fn sizes(&self) -> crate::store::PoolSizes {
        crate::store::PoolSizes {
            postgres: self.postgres_connections,
            sqlite: self.sqlite_connections,
            imports: self.import_connections,
            acquire_timeout: Duration::from_secs(self.acquire_timeout_secs.max(1)),
        }
    }
}

/// The key tenants' secrets (registered bots' tokens, webhook secrets) are sealed with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// 32 bytes in base64 (`blast config secret-key`); empty: stored unsealed.
    pub key: Secret,
    /// Keys that sealed values before `key`: they still open them until `blast secrets
    /// rotate` has sealed everything under `key`.
    pub previous_keys: Vec<Secret>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB` for the production profile: queues, deduplication keys and rate
    /// limits shared by every process. Empty: embedded (queues in the SQLite file, limits per
    /// process).
    pub url: Secret,
    /// Every key blast writes starts with this, so deployments can share a server.
    pub key_prefix: String,
    /// Give up on one Redis reply after this many milliseconds (the client's 500 ms default
    /// fails pushes under load).
    pub response_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: Secret::default(),
            key_prefix: "blast".into(),
            response_timeout_ms: 5000,
        }
    }
}
