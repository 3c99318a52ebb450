//! The worker role: the scheduler, the pump, the reconciler, one apalis worker per priority
//! lane and the daily statistics email, all stopped by one injected shutdown future.

mod backoff;
pub mod daily;
mod deliver;
mod maintenance;
mod marking;
mod pump;
mod render;
mod uploads;
pub mod webhooks;

pub use backoff::RetrySchedule;
pub use deliver::Deliverer;
pub use maintenance::{reconcile_once, schedule_once};
pub use pump::{ClaimCursors, pump_once};
pub use uploads::MediaUploads;

use crate::channels::{DeliveryError, EmailChannel};
use crate::dedup::DedupKeys;
use crate::domain::ChannelKind;
use crate::jobs::Lane;
use crate::limits::Limiter;
use crate::queue::Queue;
use crate::settings::Settings;
use crate::store::{InstanceKind, Store, StoreError};
use crate::unsubscribe::UnsubscribeKeys;
use apalis::prelude::{BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use futures::FutureExt;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("channel setup failed: {0}")]
    Channel(#[from] DeliveryError),
    #[error("queue worker failed: {0}")]
    Queue(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bot(#[from] crate::bot::BotError),
}

/// How the worker shares the database with other workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenancy {
    /// This is the only worker process (the embedded profile): at start-up every claimed row is
    /// a leftover of a previous run and is recovered at once, not after its lease.
    Exclusive,
    /// Other worker processes may hold rows: leave them their leases.
    Shared,
}

/// Run the worker until `shutdown` completes. Sends not yet started when it fires go back to
/// `pending`; sends in flight finish and are recorded.
pub async fn run(
    store: Store,
    settings: Settings,
    tenancy: Tenancy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let token = CancellationToken::new();
    tokio::spawn({
        let token = token.clone();
        async move {
            shutdown.await;
            token.cancel();
        }
    });

    let w = settings.worker.clone();
    let instance = format!("blast-{}-{:08x}", std::process::id(), rand::random::<u32>());
    let kind = match tenancy {
        Tenancy::Exclusive => InstanceKind::Exclusive,
        Tenancy::Shared => InstanceKind::Shared,
    };
    let timeout_ms =
        i64::try_from(w.instance_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    store.register_instance(&instance, kind, timeout_ms).await?;
    let result = run_registered(store.clone(), settings, tenancy, &instance, token).await;
    if let Err(e) = store.unregister_instance(&instance).await {
        tracing::warn!(error = %e, "cannot unregister this process");
    }
    result
}

async fn run_registered(
    store: Store,
    settings: Settings,
    tenancy: Tenancy,
    instance: &str,
    token: CancellationToken,
) -> Result<(), WorkerError> {
    let w = settings.worker.clone();
    let every = |ms: u64| Duration::from_millis(ms.max(1));
    let queue = Queue::open(&store, &settings.redis).await?;
    let headroom = Duration::from_millis(settings.rate_limits.priority_headroom_ms);
    let (limiter, dedup) = match &queue {
        Queue::Redis(redis) => (
            Limiter::redis(redis.conn.clone(), &redis.prefix, headroom),
            DedupKeys::redis(redis.conn.clone(), &redis.prefix),
        ),
        Queue::Sqlite(_) => (Limiter::local(headroom), DedupKeys::Database),
    };
    let mut tasks: JoinSet<Result<(), WorkerError>> = JoinSet::new();
    // The heartbeat starts first: a long start-up recovery must not look like a dead process.
    tasks.spawn(periodic("heartbeat", every(w.heartbeat_interval_ms), token.clone(), {
        let (store, instance, token) = (store.clone(), instance.to_owned(), token.clone());
        move || {
            let (store, instance, token) = (store.clone(), instance.clone(), token.clone());
            async move {
                if !store.heartbeat_instance(&instance).await? {
                    tracing::error!(%instance, "this process's registration is gone: another process took it for dead; stopping");
                    token.cancel();
                }
                Ok(())
            }
        }
    }));

    let resend = settings.resend_policy();
    if tenancy == Tenancy::Exclusive {
        // Alone on the database (checked at registration): every claimed row and every
        // unfinished job is a leftover of a previous run.
        let recovered = store
            .recover_lost_rows(crate::now_ms(), 0, 0, &resend.unsafe_channels())
            .await?;
        let voided = queue.void_unfinished().await?;
        if recovered > 0 || voided > 0 {
            tracing::warn!(
                rows = recovered,
                jobs = voided,
                "recovered work left by a previous run"
            );
        }
    }

    let (cancelled_tx, cancelled_rx) =
        tokio::sync::watch::channel(maintenance::halted_mailings(&store).await?);
    let deliverer = Arc::new(Deliverer {
        store: store.clone(),
        channels: settings.channels(limiter)?,
        retry: RetrySchedule::new(&settings.retry),
        resend,
        flush_every: Duration::from_millis(w.flush_interval_ms.max(1)),
        halted: cancelled_rx,
        shutdown: token.clone(),
        dedup_window_ms: i64::try_from(settings.mailing.dedup_window_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        dedup,
        batches: tokio_util::task::TaskTracker::new(),
        renew_lease_every: Duration::from_secs(w.queued_lease_secs.min(w.sending_lease_secs)) / 4,
        unsubscribe: UnsubscribeKeys::new(&store.site_secret(UnsubscribeKeys::SECRET_NAME).await?),
        public_url: settings.api.public_url.clone(),
        uploads: MediaUploads::default(),
        default_bot: crate::channels::TelegramBot::configured(&settings.telegram),
        retries_after_429: settings.telegram.retries_after_429,
        text_limits: ChannelKind::ALL
            .into_iter()
            .map(|channel| (channel, settings.text_limits(channel)))
            .collect(),
    });

    if !settings.stats.recipients.is_empty() {
        let daily = Arc::new(daily::DailyStats {
            store: store.clone(),
            email: Arc::new(EmailChannel::new(&settings.email)?),
            recipients: settings.stats.recipients.clone(),
            timezone: settings.stats.timezone.clone(),
            instance: instance.to_owned(),
        });
        let (schedule, token) = (settings.stats.schedule.clone(), token.clone());
        tasks.spawn(async move {
            daily::run(daily, &schedule, token)
                .await
                .map_err(WorkerError::Config)
        });
    }

    if settings.bot.in_worker
        && let Some(bot) =
            crate::bot::SubscriberBot::from_settings(store.clone(), &settings).await?
    {
        let token = token.clone();
        tasks.spawn(async move { bot.run(token).await.map_err(WorkerError::from) });
    }

    let sender = Arc::new(
        webhooks::WebhookSender::new(store.clone(), &settings.webhooks)
            .map_err(|e| WorkerError::Config(format!("webhook HTTP client: {e}")))?,
    );
    tasks.spawn(periodic(
        "webhooks",
        every(settings.webhooks.interval_ms),
        token.clone(),
        move || {
            let sender = sender.clone();
            async move { sender.send_due().await }
        },
    ));
    tasks.spawn(periodic(
        "scheduler",
        every(w.schedule_interval_ms),
        token.clone(),
        {
            let store = store.clone();
            let notifications = Arc::new(settings.notifications.clone());
            move || {
                let (store, notifications) = (store.clone(), notifications.clone());
                async move { schedule_once(&store, &notifications).await }
            }
        },
    ));
    tasks.spawn(periodic(
        "pump",
        every(w.pump_interval_ms),
        token.clone(),
        {
            let (store, queue) = (store.clone(), queue.clone());
            let (batch, watermark) = (w.batch_size, w.queue_watermark);
            let cursors = ClaimCursors::default();
            move || {
                let (store, queue, cursors) = (store.clone(), queue.clone(), cursors.clone());
                async move {
                    pump_once(&store, &queue, &cursors, batch, watermark)
                        .await
                        .map(drop)
                }
            }
        },
    ));
    tasks.spawn(periodic(
        "reconciler",
        every(w.reconcile_interval_ms),
        token.clone(),
        {
            let (store, queue) = (store.clone(), queue.clone());
            let w = w.clone();
            move || {
                let (store, queue, w) = (store.clone(), queue.clone(), w.clone());
                async move { reconcile_once(&store, &queue, &w, resend).await }
            }
        },
    ));
    // One reread at a time: a periodic one that started before a cancel and ended after the
    // notice's must not put the older set back.
    let rereading = Arc::new(tokio::sync::Mutex::new(()));
    let look_again = {
        let store = store.clone();
        move || {
            let (store, tx, rereading) = (store.clone(), cancelled_tx.clone(), rereading.clone());
            async move {
                let _one = rereading.lock().await;
                maintenance::refresh_halted(&store, &tx).await
            }
        }
    };
    // Told at once when a mailing is halted (in this process, or over Redis)...
    tasks.spawn({
        let (store, queue, token, look_again) = (
            store.clone(),
            queue.clone(),
            token.clone(),
            look_again.clone(),
        );
        async move {
            crate::halts::listen(store, queue, token, look_again).await;
            Ok(())
        }
    });
    // ...and looking anyway, for a notice that was lost.
    tasks.spawn(periodic(
        "cancel-watch",
        every(w.cancel_check_interval_ms),
        token.clone(),
        look_again,
    ));

    for lane in Lane::ALL {
        let (queue, deliverer, token) = (queue.clone(), deliverer.clone(), token.clone());
        let (name, concurrency, poll) = (
            format!("{instance}-{}", lane.as_str()),
            w.jobs_in_flight as usize,
            every(w.pump_interval_ms),
        );
        // apalis ends a worker on a backend error (a pool timeout, a locked database): start
        // it again rather than let one lane stop, and only stop at shutdown.
        tasks.spawn(async move {
            let mut restarts = 0u32;
            for generation in 0u64.. {
                // A new name each time: apalis refuses a name whose last heartbeat is recent,
                // and apalis-redis re-runs the jobs of a name it takes for dead.
                let name = format!("{name}-{generation}");
                let stop = token.clone().cancelled_owned().map(Ok::<(), std::io::Error>);
                let started = std::time::Instant::now();
                // The same worker over either backend. Both poll on our own tick stream: the
                // apalis-redis default fetches only at its heartbeat, and apalis's interval
                // strategy loses wake-ups (see `poll_ticks`).
                macro_rules! run_lane {
                    ($backend:expr) => {
                        WorkerBuilder::new(name)
                            .backend($backend.poll_with_stream(poll_ticks(poll)))
                            .concurrency(concurrency)
                            .data(deliverer.clone())
                            .build(deliver_job)
                            .run_until(stop)
                            .await
                    };
                }
                let result = match (queue.sqlite_storage(lane), queue.redis_storage(lane)) {
                    (Some(sqlite), _) => run_lane!(sqlite),
                    (None, Some(redis)) => run_lane!(redis),
                    (None, None) => return Err(WorkerError::Queue("no queue backend".into())),
                };
                if token.is_cancelled() {
                    return Ok(());
                }
                // Back off while failures come fast; a lane that ran well for a while starts over.
                restarts = if started.elapsed() > Duration::from_secs(60) { 1 } else { restarts + 1 };
                let pause = Duration::from_millis(200 * u64::from(restarts.min(25)));
                match result {
                    Ok(()) => tracing::warn!(lane = lane.as_str(), "queue worker ended; restarting"),
                    Err(e) => tracing::error!(lane = lane.as_str(), error = %e, "queue worker failed; restarting"),
                }
                tokio::select! {
                    _ = token.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Ok(())
        });
    }
    tracing::info!(%instance, "worker started");

    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result =
            joined.unwrap_or_else(|e| Err(WorkerError::Queue(format!("task panicked: {e}"))));
        if let Err(e) = result {
            tracing::error!(error = %e, "worker task stopped");
            token.cancel();
            first_error.get_or_insert(e);
        }
    }
    // Batches finish their sends in flight and give back the rest (they watch the token).
    deliverer.batches.close();
    if tokio::time::timeout(Duration::from_secs(60), deliverer.batches.wait())
        .await
        .is_err()
    {
        tracing::warn!("batches still running at exit; their rows are recovered after their lease");
    }
    tracing::info!(%instance, "worker stopped");
    first_error.map_or(Ok(()), Err)
}

/// The stream that tells an apalis worker when to fetch. apalis's `PollWith` polls the strategy
/// and ignores a ready tick, so a stream that is ready leaves no waker behind for the next tick;
/// if the fetch then comes back empty the worker sleeps until its 30 s heartbeat (seen as
/// 30 s stalls). Waking the task on every tick makes the next poll register the waker again.
fn poll_ticks(period: Duration) -> impl futures::Stream<Item = ()> + Unpin + Send + 'static {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::poll_fn(move |cx| match interval.poll_tick(cx) {
        Poll::Ready(_) => {
            cx.waker().wake_by_ref();
            Poll::Ready(Some(()))
        }
        Poll::Pending => Poll::Pending,
    })
}

async fn deliver_job(
    job: serde_json::Value,
    deliverer: Data<Arc<Deliverer>>,
) -> Result<(), BoxDynError> {
    let deliverer = Arc::clone(&deliverer);
    let batch = deliverer
        .batches
        .clone()
        .spawn(async move { deliverer.handle(&job).await });
    let result = batch
        .await
        .unwrap_or_else(|e| Err(StoreError::Queue(format!("batch task failed: {e}"))));
    result.map_err(|e| {
        tracing::error!(error = %e, "delivery batch failed; its rows are recovered after their lease");
        e.into()
    })
}

/// Run `step` every `interval` until `token` fires. A failing step is logged and retried at the
/// next tick: a database that is briefly locked or down must not stop the worker.
async fn periodic<F, Fut>(
    name: &'static str,
    interval: Duration,
    token: CancellationToken,
    step: F,
) -> Result<(), WorkerError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = step().await {
                    tracing::warn!(task = name, error = %e, "periodic task failed; retrying");
                }
            }
        }
    }
}
