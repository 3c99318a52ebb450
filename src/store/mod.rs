//! The store: the database that holds the truth (users, clients, mailings, one row per message).
//!
//! One code path for both profiles: queries go through sqlx's `Any` driver with `$N`
//! parameters, which SQLite and PostgreSQL both accept, and the URL scheme picks the dialect
//! (`sqlite://FILE` embedded, `postgres://…` production). The few places where the dialects
//! differ ask [`Dialect`] for their fragment.

mod bots;
mod clients;
mod idempotency;
mod import;
mod inbox;
mod instances;
mod mailings;
mod media;
mod messages;
mod notifications;
mod push;
mod reports;
mod sealing;
mod sessions;
mod subscribers;
mod users;
mod webhooks;

pub use bots::{RegisteredBot, validate_bot_name};
pub use clients::{Client, ClientPatch, ClientQuery, ImportReport, NewClient};
pub use idempotency::IdempotencyClaim;
pub use import::{ClientImport, RowError};
pub use inbox::{InboxCursor, InboxItem, InboxMark, InboxNotice};
pub use instances::InstanceKind;
pub(crate) use instances::hostname;
pub use mailings::{
    Mailing, MailingFilter, MailingPreview, MailingStats, MediaUpload, MessageRow, NewMailing,
    SampleMessage, StateCounts,
};
pub use messages::{ClaimedBatch, DeliveryRow, Outcome};
pub use notifications::{
    NewNotification, NewTry, Notification, NotificationPreferences, NotificationTurn,
};
pub use push::{NewPushSubscription, PushKeys, StoredPushSubscription};
pub use reports::{CronClaim, HourlyOutcome, ReportCounts, ReportError};
pub use sealing::SecretKeys;
pub use sessions::{ConsoleSession, SessionLimits};
pub use subscribers::Subscribed;
pub use users::{
    MAX_TOKEN_LABEL, TokenInfo, TokenOwner, User, UserSummary, is_plausible_user_name,
};
pub use webhooks::{
    DueDelivery, MessageEvent, WEBHOOK_DELIVERIES_LISTED, Webhook, WebhookDelivery,
};

use crate::domain::InvalidInput;
use crate::ids::TenantId;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Any, Executor, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("queue error: {0}")]
    Queue(String),
    /// A sealed tenant secret that no configured key opens.
    #[error("{0}")]
    Secret(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        // PostgreSQL refuses NUL in text (22021, "invalid byte sequence"): the caller's text is
        // at fault, not the store.
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("22021")
        {
            return StoreError::Invalid(crate::domain::invalid(
                "text may not contain the NUL character (\\u0000)",
            ));
        }
        StoreError::Db(e)
    }
}

impl StoreError {
    /// A mistake in what the caller asked for, as opposed to a failure of the store itself.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::Invalid(_)
                | StoreError::NotFound(_)
                | StoreError::Conflict(_)
                | StoreError::UnsupportedUrl(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Dialect> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Appended to a claim's row selection: on PostgreSQL, rows another transaction has
    /// locked are passed over rather than waited for, so concurrent claims (several pumps, and
    /// a claim's own passes) never wait on each other in a cycle. SQLite has one writer.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// A subquery yielding the integers of the JSON array in parameter `param` (e.g. `$3`).
    /// (sqlx's `Any` driver binds no arrays, so lists travel as JSON text.)
    pub(crate) fn json_ints(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
            Dialect::Postgres => format!(
                "SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST({param} AS jsonb))"
            ),
        }
    }

    /// A subquery yielding the strings of the JSON array in parameter `param`.
    pub(crate) fn json_texts(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
            Dialect::Postgres => {
                format!("SELECT value FROM jsonb_array_elements_text(CAST({param} AS jsonb))")
            }
        }
    }

    /// Whether the JSON object in column `column` (text) has the key in parameter `param`.
    pub(crate) fn json_has_key(self, column: &str, param: &str) -> String {
        match self {
            // json_type is NULL only for a missing key (a JSON null gives 'null').
            Dialect::Sqlite => {
                format!("json_type({column}, '$.\"' || {param} || '\"') IS NOT NULL")
            }
            Dialect::Postgres => format!("jsonb_exists(CAST({column} AS jsonb), {param})"),
        }
    }

    /// The length of the JSON array in parameter `param`.
    pub(crate) fn json_len(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_array_length({param})"),
            Dialect::Postgres => format!("jsonb_array_length(CAST({param} AS jsonb))"),
        }
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// The embedded profile's own handle on the same file, for the apalis-sqlite queue.
    sqlite: Option<SqlitePool>,
    /// The production profile's native handle, for what the `Any` driver cannot do (`COPY`).
    /// Lazy: most processes never import, so it opens no connection until one does.
    postgres: Option<PgPool>,
    /// Seals tenant secrets at rest (`[secrets]`).
    keys: std::sync::Arc<SecretKeys>,
    /// The bytes of media files one tenant may keep (`telegram.media_quota_bytes`).
    media_quota_bytes: u64,
    /// Counts the mailings this process paused or cancelled: the worker of the same process
    /// (`blast up`) rereads what is halted the moment it moves ([`Store::halts_changed`]).
    halts: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Inbox items stored through this store: the sockets of the same process listen
    /// ([`Store::inbox_items_stored`]).
    inbox: tokio::sync::broadcast::Sender<InboxNotice>,
}

/// Stored inbox items a listener may fall behind by before it misses some.
const INBOX_NOTICES_BUFFERED: usize = 4096;

/// `telegram.media_quota_bytes` unless configured: 1 GiB.
pub use crate::channels::telegram::DEFAULT_MEDIA_QUOTA_BYTES;

/// How many connections a process keeps (`[pool]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    /// The main pool on PostgreSQL.
    pub postgres: u32,
    /// The main pool on SQLite (one writer at a time whatever the size).
    pub sqlite: u32,
    /// PostgreSQL connections for imports (COPY); an import holds one while it stages.
    pub imports: u32,
    /// How long a request waits for a connection before it fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolSizes {
    fn default() -> PoolSizes {
        PoolSizes {
            postgres: 16,
            sqlite: 8,
            imports: 2,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

impl Store {
    /// This store sealing tenant secrets with `keys` (before it is cloned).
    pub fn with_secret_keys(mut self, keys: SecretKeys) -> Store {
        self.keys = std::sync::Arc::new(keys);
        self
    }

    /// This store holding each tenant's media files to `bytes` in all.
    /// Fires (in this process) each time a mailing is paused or cancelled through this store.
    pub fn halts_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.halts.subscribe()
    }

    /// Tell this process's listeners that a mailing was halted (after the commit).
    fn announce_halt(&self) {
        self.halts.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn with_media_quota(mut self, bytes: u64) -> Store {
        self.media_quota_bytes = bytes;
        self
    }

    /// Open (creating it if needed) the database at `url` and bring its schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_sized(url, PoolSizes::default()).await
    }

    /// [`Store::open`] with pools of the given sizes.
    pub async fn open_sized(url: &str, sizes: PoolSizes) -> Result<Store> {
        let store = Store::connect_sized(url, sizes).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Open without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_sized(url, PoolSizes::default()).await
    }

    async fn connect_sized(url: &str, sizes: PoolSizes) -> Result<Store> {
        sqlx::any::install_default_drivers();
        match Dialect::from_url(url)? {
            Dialect::Sqlite => Store::connect_sqlite(url, sizes).await,
            Dialect::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(sizes.postgres.max(2))
                    .acquire_timeout(sizes.acquire_timeout)
                    .connect(url)
                    .await?;
                let postgres = PgPoolOptions::new()
                    .max_connections(sizes.imports.max(1))
                    .acquire_timeout(sizes.acquire_timeout)
                    .connect_lazy(url)?;
                Ok(Store {
                    pool,
                    dialect: Dialect::Postgres,
                    sqlite: None,
                    postgres: Some(postgres),
                    keys: Default::default(),
                    media_quota_bytes: DEFAULT_MEDIA_QUOTA_BYTES,
                    halts: Default::default(),
                    inbox: tokio::sync::broadcast::channel(INBOX_NOTICES_BUFFERED).0,
                })
            }
        }
    }

    async fn connect_sqlite(url: &str, sizes: PoolSizes) -> Result<Store> {
        // Creating the file and switching it to WAL (which sticks to the file) happens here,
        // through the native driver, which knows those options.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode loses at most the last commits on power loss, never consistency.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The CLI, the pump, the workers and apalis all write to one file: wait, don't fail.
            .busy_timeout(Duration::from_secs(30));
        let sqlite = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let pool = AnyPoolOptions::new()
            .max_connections(sizes.sqlite.max(2))
            .acquire_timeout(sizes.acquire_timeout)
            // A connection to a local file does not go stale: no ping before each use (one
            // round trip to the connection's thread fewer per query).
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA busy_timeout = 30000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Store {
            pool,
            dialect: Dialect::Sqlite,
            sqlite: Some(sqlite),
            postgres: None,
            keys: Default::default(),
            media_quota_bytes: DEFAULT_MEDIA_QUOTA_BYTES,
            halts: Default::default(),
            inbox: tokio::sync::broadcast::channel(INBOX_NOTICES_BUFFERED).0,
        })
    }

    /// Run blast's migrations (and, embedded, those of the apalis queue tables).
    pub async fn migrate(&self) -> Result<()> {
        let mut ours = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        // apalis keeps its own migration history; ours must not collide with it.
        ours.dangerous_set_table_name("_blast_migrations");
        ours.run(&self.pool).await?;
        if let Some(sqlite) = &self.sqlite {
            apalis_sqlite::SqliteStorage::migrations()
                .run(sqlite)
                .await?;
        }
        Ok(())
    }

    /// The database answers a query (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The native SQLite pool of the embedded profile (for its apalis queue); None on PostgreSQL.
    pub(crate) fn sqlite_pool(&self) -> Option<&SqlitePool> {
        self.sqlite.as_ref()
    }

    /// A writing transaction. On SQLite it takes the write lock up front, so it can never fail
    /// half-way with SQLITE_BUSY when it upgrades from reading to writing; PostgreSQL locks
    /// rows as it goes.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// The secret called `name`, made (random, 32 bytes hex) by whichever process asks first.
    pub async fn site_secret(&self, name: &str) -> Result<String> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query(
            "INSERT INTO site_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query("SELECT value FROM site_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(sqlite) = &self.sqlite {
            sqlite.close().await;
        }
        if let Some(postgres) = &self.postgres {
            postgres.close().await;
        }
    }
}

/// True when a database error is a UNIQUE constraint violation.
impl Store {
    /// Delete row `id` of `table` if `tenant_id` owns it; otherwise "`what` {id} not found".
    pub(crate) async fn delete_owned(
        &self,
        table: &'static str,
        tenant_id: TenantId,
        id: i64,
        what: &str,
    ) -> Result<()> {
        let sql = format!("DELETE FROM {table} WHERE tenant_id = $1 AND id = $2");
        let removed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(StoreError::NotFound(format!("{what} {id}")));
        }
        Ok(())
    }
}

/// A priority as stored ("high", "medium", "low").
pub(crate) fn parse_priority(stored: String) -> Result<crate::domain::Priority> {
    stored
        .parse()
        .map_err(|e: String| StoreError::Invalid(crate::domain::invalid(e)))
}

/// Make concurrent transactions of one tenant that check a per-tenant cap before they write
/// (webhooks, stored media) take turns: an update of the tenant's row locks it on PostgreSQL
/// until the transaction ends; on SQLite the write transaction already holds the one lock.
pub(crate) async fn lock_tenant(tx: &mut Transaction<'_, Any>, tenant_id: TenantId) -> Result<()> {
    sqlx::query("UPDATE users SET id = id WHERE id = $1")
        .bind(tenant_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
