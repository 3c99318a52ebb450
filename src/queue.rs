//! The job queues (apalis): one per priority lane, carrying [`blast_jobs::Job`] work tokens.
//!
//! Embedded, the lanes are apalis-sqlite tables in the store's own file; in production they
//! are apalis-redis lists. Either way a job only names rows the pump has already claimed in the
//! database, so a lost job loses nothing: the reconciler takes its rows back after their lease.

use crate::jobs::{Job, Lane};
use crate::settings::RedisSettings;
use crate::store::{Result, Store, StoreError};
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use apalis_sqlite::{Config, SqliteStorage};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::{Row, SqlitePool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where the lanes live.
#[derive(Clone)]
pub enum Queue {
    Sqlite(SqlitePool),
    Redis(RedisQueue),
}

/// The Redis lanes: one connection (multiplexed, reconnecting) and the key prefix that keeps
/// several deployments, or tests, apart on one server.
#[derive(Clone)]
pub struct RedisQueue {
    pub conn: ConnectionManager,
    pub prefix: String,
    /// For what needs a connection of its own (pub/sub).
    pub client: redis::Client,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Queue::Sqlite(_) => f.write_str("Queue::Sqlite"),
            Queue::Redis(r) => write!(f, "Queue::Redis({})", r.prefix),
        }
    }
}

fn queue_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Queue(e.to_string())
}

/// Open a Redis connection as blast needs it everywhere: a response timeout well above the
/// client's 500 ms default, which fails pushes under load.
pub async fn connect_redis(redis: &RedisSettings) -> Result<ConnectionManager> {
    connect(redis).await.map(|(conn, _)| conn)
}

async fn connect(redis: &RedisSettings) -> Result<(ConnectionManager, redis::Client)> {
    // Which server, without its password: the operator needs to know where, never the secret.
    let at = crate::settings::redacted_url(redis.url.expose());
    let failed = |e: redis::RedisError| StoreError::Queue(format!("Redis at {at}: {e}"));
    let client = redis::Client::open(redis.url.expose()).map_err(failed)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_millis(
            redis.response_timeout_ms.max(1),
        )))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let conn = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(failed)?;
    Ok((conn, client))
}

impl Queue {
    /// The lanes for this configuration: Redis when `redis.url` is set, else the embedded
    /// SQLite tables (which need the SQLite store).
    pub async fn open(store: &Store, redis: &RedisSettings) -> Result<Queue> {
        if !redis.url.is_empty() {
            let (conn, client) = connect(redis).await?;
            return Ok(Queue::Redis(RedisQueue {
                conn,
                prefix: redis.key_prefix.clone(),
                client,
            }));
        }
        match store.sqlite_pool() {
            Some(pool) => Ok(Queue::Sqlite(pool.clone())),
            None => Err(StoreError::Queue(
                "a PostgreSQL store needs Redis for its queues: set redis.url (BLAST_REDIS__URL)"
                    .into(),
            )),
        }
    }

    /// The name of `lane`'s queue; Redis keys of the lane all start with it.
    pub fn lane_name(&self, lane: Lane) -> String {
        match self {
            Queue::Sqlite(_) => lane.queue_name().to_owned(),
            Queue::Redis(r) => format!("{}:{}", r.prefix, lane.queue_name()),
        }
    }

    /// Push `job` onto `lane`.
    pub async fn push(&self, lane: Lane, job: &Job) -> Result<()> {
        let value: serde_json::Value =
            serde_json::from_slice(&job.encode()).map_err(queue_error)?;
        // One attempt: apalis must not retry a token on its own (its retries ignore our
        // backoff, and apalis-redis ignores max_attempts altogether); a failed job's rows are
        // recovered by the reconciler instead.
        let task = TaskBuilder::new(value).max_attempts(1).build();
        match self {
            Queue::Sqlite(pool) => {
                let mut storage = SqliteStorage::<serde_json::Value>::new(pool)
                    .with_config(Config::default().queue(lane.queue_name()));
                storage.push_task(task).await.map_err(queue_error)
            }
            Queue::Redis(_) => {
                let mut storage = self
                    .redis_storage(lane)
                    .ok_or_else(|| queue_error("no redis"))?;
                storage.push_task(task).await.map_err(queue_error)
            }
        }
    }

    /// Jobs of `lane` waiting to be picked up (embedded: not finished yet).
    pub async fn depth(&self, lane: Lane) -> Result<u32> {
        let n: i64 = match self {
            Queue::Sqlite(pool) => sqlx::query(
                "SELECT COUNT(*) FROM Jobs WHERE job_type = ? AND status IN ('Pending', 'Queued', 'Running')",
            )
            .bind(lane.queue_name())
            .fetch_one(pool)
            .await?
            .get(0),
            Queue::Redis(r) => {
                let key = apalis_redis::Config::default()
                    .queue(self.lane_name(lane))
                    .active_jobs_list();
                redis::cmd("LLEN")
                    .arg(key)
                    .query_async(&mut r.conn.clone())
                    .await
                    .map_err(queue_error)?
            }
        };
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Check the queue answers (for readiness).
    pub async fn ping(&self) -> Result<()> {
        self.depth(Lane::High).await.map(drop)
    }

    /// Make sure the queue's generation marker exists in Redis; true when this call had to
    /// make it. A missing marker means the queue's state was lost (a flush, a restart without
    /// persistence) or this is its first use: every job pushed before now may be gone. The
    /// embedded queue lives in the database and never loses its jobs alone.
    pub async fn mark_generation(&self) -> Result<bool> {
        let Queue::Redis(redis) = self else {
            return Ok(false);
        };
        let mut conn = redis.conn.clone();
        let made: Option<String> = redis::cmd("SET")
            .arg(format!("{}:queue-generation", redis.prefix))
            .arg(crate::now_ms())
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(queue_error)?;
        Ok(made.is_some())
    }

    /// Delete finished jobs older than `retention`: the rows keep the history, the queue need
    /// not. (Redis lanes keep no finished jobs: results are not persisted.)
    pub async fn purge_finished(&self, retention: Duration) -> Result<u64> {
        let Queue::Sqlite(pool) = self else {
            return Ok(0);
        };
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
    /// has just put all claimed rows back to pending: those jobs' claims are void, and left
    /// alone they would fill the lanes' watermarks until apalis noticed their workers were gone.
    pub async fn void_unfinished(&self) -> Result<u64> {
        let Queue::Sqlite(pool) = self else {
            return Ok(0);
        };
        Ok(sqlx::query(
            "UPDATE Jobs SET status = 'Killed', done_at = strftime('%s', 'now'), lock_by = NULL
             WHERE status IN ('Pending', 'Queued', 'Running')",
        )
        .execute(pool)
        .await?
        .rows_affected())
    }

    /// The apalis-sqlite storage a worker of `lane` consumes (embedded only). Payloads arrive as
    /// raw JSON and are decoded by the handler, so an unknown payload is dropped instead of
    /// stopping the worker.
    pub fn sqlite_storage(&self, lane: Lane) -> Option<SqliteStorage<serde_json::Value>> {
        match self {
            Queue::Sqlite(pool) => Some(
                SqliteStorage::new(pool).with_config(Config::default().queue(lane.queue_name())),
            ),
            Queue::Redis(_) => None,
        }
    }

    /// The apalis-redis storage of `lane` (production only), set up around the defects measured
    /// in apalis-redis 1.0 (see ARCHITECTURE.md): no per-job LREM locking, no results kept,
    /// no events, and a short heartbeat so that a dead worker's jobs come back soon (the rows
    /// are protected by their claim either way).
    pub fn redis_storage(&self, lane: Lane) -> Option<RedisStorage<serde_json::Value>> {
        match self {
            Queue::Redis(r) => Some(
                RedisStorage::new(r.conn.clone()).with_config(
                    apalis_redis::Config::default()
                        .queue(self.lane_name(lane))
                        .lock_tasks(false)
                        .persist_results(false)
                        .emit_events(false)
                        .batch_size(4)
                        .heartbeat_interval(Duration::from_secs(5))
                        .missed_heartbeats(6),
                ),
            ),
            Queue::Sqlite(_) => None,
        }
    }
}

/// How long one pub/sub subscription is kept before it is made again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(60);
/// When a renewal could not subscribe, how soon it tries again.
const RENEW_RETRY: Duration = Duration::from_secs(5);
/// A renewed subscription's old connection is read until it has been quiet this long.
const DRAIN_QUIET: Duration = Duration::from_millis(50);

/// What a pub/sub subscription heard.
#[derive(Debug)]
pub enum Heard {
    /// A message's payload.
    Message(Vec<u8>),
    /// Subscribed after a time without a subscription (the first time too): what was published
    /// meanwhile was missed.
    Resumed,
    /// The subscription was renewed without a gap: nothing published was missed.
    Renewed,
}

/// Keep a subscription to the pub/sub `channel`, connecting again (with backoff) whenever it
/// is lost, and tell `on` what it hears. Runs until `stop`.
pub async fn follow(
    client: redis::Client,
    channel: String,
    stop: CancellationToken,
    mut on: impl FnMut(Heard) + Send,
) {
    let subscribe = || async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await
    };
    let mut failures = 0u32;
    // A subscription made while the one before still listened (a renewal).
    let mut next = None;
    while !stop.is_cancelled() {
        let (connected, renewed) = match next.take() {
            Some(pubsub) => (Ok(Ok(pubsub)), true),
            None => (subscribe().await, false),
        };
        match connected {
            Ok(Ok(mut pubsub)) => {
                let since = tokio::time::Instant::now();
                on(if renewed {
                    Heard::Renewed
                } else {
                    Heard::Resumed
                });
                let mut messages = pubsub.on_message();
                // Subscribed afresh now and then: a connection that died without a word (a
                // dropped NAT entry) costs at most that long, not every message until restart.
                let renew = tokio::time::sleep(RESUBSCRIBE_EVERY);
                tokio::pin!(renew);
                let ended = loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = &mut renew => match subscribe().await {
                            Ok(Ok(fresh)) => {
                                // Both listen now; what reached the old one is read before it
                                // goes (a message in both comes twice, none is lost).
                                while let Ok(Some(message)) =
                                    tokio::time::timeout(DRAIN_QUIET, messages.next()).await
                                {
                                    on(Heard::Message(message.get_payload_bytes().to_vec()));
                                }
                                next = Some(fresh);
                                break false;
                            }
                            // Redis cannot take a new one now: keep this one, try again soon.
                            _ => renew.as_mut().reset(tokio::time::Instant::now() + RENEW_RETRY),
                        },
                        message = messages.next() => match message {
                            Some(message) => on(Heard::Message(message.get_payload_bytes().to_vec())),
                            None => break true,
                        },
                    }
                };
                // A subscription that lived a while was a good one; one that ended at once
                // keeps backing off.
                if since.elapsed() > Duration::from_secs(5) {
                    failures = 0;
                } else {
                    failures += 1;
                }
                if ended {
                    tracing::warn!(%channel, "the subscription ended; subscribing again");
                } else {
                    continue;
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                tracing::warn!(error = %e, %channel, "cannot subscribe; retrying");
            }
            Err(_) => {
                failures += 1;
                tracing::warn!(%channel, "subscribing timed out; retrying");
            }
        }
        let pause = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
