//! The worker role: the scheduler, the pump, the reconciler, one apalis worker per priority
//! lane and the daily statistics email, all stopped by one injected shutdown future.

mod backoff;
pub mod daily;
mod deliver;
mod lanes;
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

use crate::channels::{DeliveryError, EmailChannel, ResendPolicy};
use crate::dedup::DedupKeys;
use crate::domain::ChannelKind;
use crate::jobs::Lane;
use crate::limits::Limiter;
use crate::queue::Queue;
use crate::settings::Settings;
use crate::store::{InstanceKind, Store, StoreError};
use crate::unsubscribe::UnsubscribeKeys;
use std::future::Future;
use std::sync::Arc;
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

/// What every role of one worker process shares.
struct Roles {
    store: Store,
    queue: Queue,
    token: CancellationToken,
    tasks: JoinSet<Result<(), WorkerError>>,
}

impl Roles {
    /// Run `step` every `ms` milliseconds (at least 1) until shutdown.
    fn every<F, Fut>(&mut self, name: &'static str, ms: u64, step: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let interval = Duration::from_millis(ms.max(1));
        self.tasks
            .spawn(periodic(name, interval, self.token.clone(), step));
    }
}

async fn run_registered(
    store: Store,
    settings: Settings,
    tenancy: Tenancy,
    instance: &str,
    token: CancellationToken,
) -> Result<(), WorkerError> {
    let queue = Queue::open(&store, &settings.redis).await?;
    let mut roles = Roles {
        store,
        queue,
        token,
        tasks: JoinSet::new(),
    };
    // The heartbeat starts first: a long start-up recovery must not look like a dead process.
    start_heartbeat(&mut roles, instance, settings.worker.heartbeat_interval_ms);
    let resend = settings.resend_policy();
    if tenancy == Tenancy::Exclusive {
        recover_previous_run(&roles, resend).await?;
    }
    let (halted_tx, halted_rx) =
        tokio::sync::watch::channel(maintenance::halted_mailings(&roles.store).await?);
    let deliverer = Arc::new(deliverer(&roles, &settings, resend, halted_rx).await?);
    start_daily_stats(&mut roles, &settings, instance)?;
    start_bot(&mut roles, &settings).await?;
    start_webhooks(&mut roles, &settings)?;
    start_maintenance(&mut roles, &settings, resend);
    start_halt_watch(&mut roles, &settings, halted_tx);
    for lane in Lane::ALL {
        lanes::start(
            &mut roles,
            &settings.worker,
            instance,
            lane,
            deliverer.clone(),
        );
    }
    tracing::info!(%instance, "worker started");
    let result = wait_for_roles(&mut roles).await;
    // Batches finish their sends in flight and give back the rest (they watch the token).
    deliverer.batches.close();
    if tokio::time::timeout(Duration::from_secs(60), deliverer.batches.wait())
        .await
        .is_err()
    {
        tracing::warn!("batches still running at exit; their rows are recovered after their lease");
    }
    tracing::info!(%instance, "worker stopped");
    result
}

/// Keep this process's registration alive; stop when another process took it for dead.
fn start_heartbeat(roles: &mut Roles, instance: &str, interval_ms: u64) {
    let (store, instance, token) = (
        roles.store.clone(),
        instance.to_owned(),
        roles.token.clone(),
    );
    roles.every("heartbeat", interval_ms, move || {
        let (store, instance, token) = (store.clone(), instance.clone(), token.clone());
        async move {
            if !store.heartbeat_instance(&instance).await? {
                tracing::error!(%instance, "this process's registration is gone: another process took it for dead; stopping");
                token.cancel();
            }
            Ok(())
        }
    });
}

/// Alone on the database (checked at registration): every claimed row and every unfinished
/// job is a leftover of a previous run, recovered now rather than after its lease.
async fn recover_previous_run(roles: &Roles, resend: ResendPolicy) -> Result<(), WorkerError> {
    let recovered = roles
        .store
        .recover_lost_rows(crate::now_ms(), 0, 0, &resend.unsafe_channels())
        .await?;
    let voided = roles.queue.void_unfinished().await?;
    if recovered > 0 || voided > 0 {
        tracing::warn!(
            rows = recovered,
            jobs = voided,
            "recovered work left by a previous run"
        );
    }
    Ok(())
}

/// The job handler, with the channels built and rate limits and deduplication kept where the
/// queue is (this process, or Redis).
async fn deliverer(
    roles: &Roles,
    settings: &Settings,
    resend: ResendPolicy,
    halted: tokio::sync::watch::Receiver<maintenance::Halted>,
) -> Result<Deliverer, WorkerError> {
    let (store, w) = (&roles.store, &settings.worker);
    let headroom = Duration::from_millis(settings.rate_limits.priority_headroom_ms);
    let (limiter, dedup) = match &roles.queue {
        Queue::Redis(redis) => (
            Limiter::redis(redis.conn.clone(), &redis.prefix, headroom),
            DedupKeys::redis(redis.conn.clone(), &redis.prefix),
        ),
        Queue::Sqlite(_) => (Limiter::local(headroom), DedupKeys::Database),
    };
    Ok(Deliverer {
        store: store.clone(),
        channels: settings.channels(
            limiter,
            Arc::new(crate::inbox::Poster::new(
                store.clone(),
                roles.queue.clone(),
            )),
        )?,
        retry: RetrySchedule::new(&settings.retry),
        resend,
        flush_every: Duration::from_millis(w.flush_interval_ms.max(1)),
        halted,
        shutdown: roles.token.clone(),
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
    })
}

/// The daily statistics email, when it has recipients: once per cluster per day.
fn start_daily_stats(
    roles: &mut Roles,
    settings: &Settings,
    instance: &str,
) -> Result<(), WorkerError> {
    if settings.stats.recipients.is_empty() {
        return Ok(());
    }
    let daily = Arc::new(daily::DailyStats {
        store: roles.store.clone(),
        email: Arc::new(EmailChannel::new(&settings.email)?),
        recipients: settings.stats.recipients.clone(),
        timezone: settings.stats.timezone.clone(),
        instance: instance.to_owned(),
    });
    let (schedule, token) = (settings.stats.schedule.clone(), roles.token.clone());
    roles.tasks.spawn(async move {
        daily::run(daily, &schedule, token)
            .await
            .map_err(|e| WorkerError::Config(e.to_string()))
    });
    Ok(())
}

/// The subscriber bot, with `bot.in_worker`.
async fn start_bot(roles: &mut Roles, settings: &Settings) -> Result<(), WorkerError> {
    if !settings.bot.in_worker {
        return Ok(());
    }
    if let Some(bot) =
        crate::bot::SubscriberBot::from_settings(roles.store.clone(), settings).await?
    {
        let token = roles.token.clone();
        roles
            .tasks
            .spawn(async move { bot.run(token).await.map_err(WorkerError::from) });
    }
    Ok(())
}

/// The sender of status webhooks.
fn start_webhooks(roles: &mut Roles, settings: &Settings) -> Result<(), WorkerError> {
    let sender = Arc::new(
        webhooks::WebhookSender::new(roles.store.clone(), &settings.webhooks)
            .map_err(|e| WorkerError::Config(format!("webhook HTTP client: {e}")))?,
    );
    roles.every("webhooks", settings.webhooks.interval_ms, move || {
        let sender = sender.clone();
        async move { sender.send_due().await }
    });
    Ok(())
}

/// The scheduler (starts and ends mailings, dispatches notifications), the pump (claims due
/// rows into jobs) and the reconciler (recovers rows whose job or worker was lost).
fn start_maintenance(roles: &mut Roles, settings: &Settings, resend: ResendPolicy) {
    let w = settings.worker.clone();
    let store = roles.store.clone();
    let notifications = Arc::new(settings.notifications.clone());
    roles.every("scheduler", w.schedule_interval_ms, move || {
        let (store, notifications) = (store.clone(), notifications.clone());
        async move { schedule_once(&store, &notifications).await }
    });
    let (store, queue) = (roles.store.clone(), roles.queue.clone());
    let (batch, watermark) = (w.batch_size, w.queue_watermark);
    let cursors = ClaimCursors::default();
    roles.every("pump", w.pump_interval_ms, move || {
        let (store, queue, cursors) = (store.clone(), queue.clone(), cursors.clone());
        async move {
            pump_once(&store, &queue, &cursors, batch, watermark)
                .await
                .map(drop)
        }
    });
    let (store, queue) = (roles.store.clone(), roles.queue.clone());
    let reconcile_every = w.reconcile_interval_ms;
    roles.every("reconciler", reconcile_every, move || {
        let (store, queue, w) = (store.clone(), queue.clone(), w.clone());
        async move { reconcile_once(&store, &queue, &w, resend).await }
    });
}

/// Which mailings are paused or cancelled: reread at once on a notice (from this process or
/// over Redis), and every `worker.cancel_check_interval_ms` for a notice that was lost.
fn start_halt_watch(
    roles: &mut Roles,
    settings: &Settings,
    halted: tokio::sync::watch::Sender<maintenance::Halted>,
) {
    // One reread at a time: a periodic one that started before a cancel and ended after the
    // notice's must not put the older set back.
    let rereading = Arc::new(tokio::sync::Mutex::new(()));
    let halted = Arc::new(halted);
    let look_again = {
        let store = roles.store.clone();
        move || {
            let (store, tx, rereading) = (store.clone(), halted.clone(), rereading.clone());
            async move {
                let _one = rereading.lock().await;
                maintenance::refresh_halted(&store, &tx).await
            }
        }
    };
    let (store, queue, token, listener) = (
        roles.store.clone(),
        roles.queue.clone(),
        roles.token.clone(),
        look_again.clone(),
    );
    roles.tasks.spawn(async move {
        crate::halts::listen(store, queue, token, listener).await;
        Ok(())
    });
    roles.every(
        "cancel-watch",
        settings.worker.cancel_check_interval_ms,
        look_again,
    );
}

/// Wait for every role to end (at shutdown, or the first that fails, which stops the rest).
async fn wait_for_roles(roles: &mut Roles) -> Result<(), WorkerError> {
    let mut first_error = None;
    while let Some(joined) = roles.tasks.join_next().await {
        let result =
            joined.unwrap_or_else(|e| Err(WorkerError::Queue(format!("task panicked: {e}"))));
        if let Err(e) = result {
            tracing::error!(error = %e, "worker task stopped");
            roles.token.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
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
