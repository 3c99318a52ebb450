//! The job queues (apalis): one per priority lane, carrying [`blast_jobs::Job`] work tokens.
//!
//! In the embedded profile the queue tables live in the same SQLite file as the store, so the
//! pump claims rows and enqueues their job in one transaction.

use crate::jobs::{Job, Lane};
use crate::store::{Result, StoreError};
use apalis::prelude::TaskBuilder;
use apalis_sqlite::{Config, SqliteStorage};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::time::Duration;

/// Push `job` onto `lane` inside an open store transaction.
pub async fn push_in_tx(
    tx: &mut Transaction<'static, Sqlite>,
    lane: Lane,
    job: &Job,
) -> Result<()> {
    // One attempt: apalis must not retry a token on its own (its retries ignore our backoff);
    // a failed job's rows are recovered by the reconciler instead.
    let task = TaskBuilder::new(job.encode()).max_attempts(1).build();
    apalis_sqlite::queries::push_tasks(&mut **tx, lane.queue_name(), &[task])
        .await
        .map_err(|e| match e {
            apalis_sqlite::Error::Database(db) => db.into(),
            other => StoreError::Queue(other.to_string()),
        })
}

/// Jobs of `lane` not finished yet (waiting or running).
pub async fn depth(pool: &SqlitePool, lane: Lane) -> Result<u32> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) FROM Jobs WHERE job_type = ? AND status IN ('Pending', 'Queued', 'Running')",
    )
    .bind(lane.queue_name())
    .fetch_one(pool)
    .await?
    .get(0);
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Delete finished jobs older than `retention`: the rows keep the history, the queue need not.
pub async fn purge_finished(pool: &SqlitePool, retention: Duration) -> Result<u64> {
    let cutoff = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
    Ok(sqlx::query(
        "DELETE FROM Jobs WHERE status IN ('Done', 'Failed', 'Killed') AND COALESCE(done_at, run_at) < ?",
    )
    .bind(cutoff)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Mark every unfinished job as killed. Only for a process that owns the database alone and
/// has just put all claimed rows back to pending: those jobs' claims are void, and left alone
/// they would fill the lanes' watermarks until apalis noticed their workers were gone.
pub async fn void_unfinished(pool: &SqlitePool) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE Jobs SET status = 'Killed', done_at = strftime('%s', 'now'), lock_by = NULL
         WHERE status IN ('Pending', 'Queued', 'Running')",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// The apalis storage a worker of `lane` consumes. Payloads arrive as raw JSON and are decoded
/// by the handler, so an unknown payload is dropped instead of stopping the worker.
pub fn storage(pool: &SqlitePool, lane: Lane) -> SqliteStorage<serde_json::Value> {
    SqliteStorage::new(pool).with_config(Config::default().queue(lane.queue_name()))
}
