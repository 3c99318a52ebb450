//! One apalis worker per priority lane, restarted when apalis ends it, fetching on our own
//! tick stream and handing each job to the [`Deliverer`].

use super::{Deliverer, Roles, WorkerError};
use crate::jobs::Lane;
use crate::settings::WorkerSettings;
use crate::store::StoreError;
use apalis::prelude::{BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use futures::FutureExt;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// Start the worker of `lane`. apalis ends a worker on a backend error (a pool timeout, a
/// locked database): it is started again rather than let one lane stop, and only stops at
/// shutdown.
pub(super) fn start(
    roles: &mut Roles,
    w: &WorkerSettings,
    instance: &str,
    lane: Lane,
    deliverer: Arc<Deliverer>,
) {
    let (queue, token) = (roles.queue.clone(), roles.token.clone());
    let (name, concurrency, poll) = (
        format!("{instance}-{}", lane.as_str()),
        w.jobs_in_flight as usize,
        Duration::from_millis(w.pump_interval_ms.max(1)),
    );
    roles.tasks.spawn(async move {
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
