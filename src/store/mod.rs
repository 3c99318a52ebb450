//! The store: the database that holds the truth (users, clients, mailings, one row per message).
//!
//! The embedded profile speaks SQLite; the URL scheme picks the backend. Queue jobs live in the
//! same file (apalis-sqlite), so claiming rows and enqueuing their job is one transaction.

mod clients;
mod idempotency;
mod instances;
mod mailings;
mod messages;
mod users;

pub use clients::{Client, ClientPatch, ClientQuery, ImportReport, NewClient};
pub use idempotency::IdempotencyClaim;
pub use instances::InstanceKind;
pub use mailings::{Mailing, MailingStats, MessageRow, NewMailing, StateCounts};
pub use messages::{ClaimedBatch, DeliveryRow, Outcome};
pub use users::{User, UserSummary, is_plausible_user_name};

use crate::domain::InvalidInput;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
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
    #[error("unsupported database URL {0:?}: this build speaks sqlite://FILE")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("queue error: {0}")]
    Queue(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Open (creating it if needed) the database at `url` and bring its schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Open without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode loses at most the last commits on power loss, never consistency.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The CLI, the pump, the workers and apalis all write to one file: wait, don't fail.
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    /// Run blast's migrations and those of the apalis queue tables.
    pub async fn migrate(&self) -> Result<()> {
        let mut ours = sqlx::migrate!("./migrations/sqlite");
        // apalis keeps its own migration history; ours must not collide with it.
        ours.dangerous_set_table_name("_blast_migrations");
        ours.run(&self.pool).await?;
        apalis_sqlite::SqliteStorage::migrations()
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that takes the write lock up front, so it can never fail half-way with
    /// SQLITE_BUSY when it upgrades from reading to writing.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// True when a database error is a UNIQUE constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
