//! Periodic duties beside delivery: start and finish mailings (the scheduler), recover lost
//! work (the reconciler), and keep the set of cancelled mailings fresh for running batches.

use crate::app::notifications::{self, Dispatched};
use crate::channels::ResendPolicy;
use crate::domain::MailingState;
use crate::now_ms;
use crate::queue::Queue;
use crate::settings::{NotificationSettings, WorkerSettings};
use crate::store::{Result, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Start due mailings and finish those with nothing left to send; start notifications that
/// are due and move on from their tries that ended.
pub async fn schedule_once(store: &Store, notifications: &NotificationSettings) -> Result<()> {
    let now = now_ms();
    for started in store.start_due_mailings(now).await? {
        tracing::info!(
            mailing = started.mailing_id.0,
            recipients = started.recipients,
            "mailing started"
        );
    }
    for mailing in store.finish_mailings(now).await? {
        tracing::info!(mailing, "mailing finished");
    }
    let dispatched = notifications::dispatch(store, now, notifications).await?;
    if dispatched != Dispatched::default() {
        tracing::debug!(
            tries = dispatched.tries_started,
            finished = dispatched.finished,
            "notifications dispatched"
        );
    }
    Ok(())
}

/// Give back rows whose job or worker was lost, and drop old finished jobs from the queue.
/// When the queue itself lost its state (Redis flushed or restarted empty), the rows claimed
/// into its jobs go back at once instead of after `worker.queued_lease_secs`.
pub async fn reconcile_once(
    store: &Store,
    queue: &Queue,
    settings: &WorkerSettings,
    resend: ResendPolicy,
) -> Result<()> {
    if queue.mark_generation().await? {
        // Taken after the marker: every row claimed before it is covered.
        let released = store.release_queued(now_ms()).await?;
        if released > 0 {
            tracing::warn!(
                rows = released,
                "the queue had lost its jobs (Redis flushed or restarted empty): their rows go back at once"
            );
        }
    }
    let recovered = store
        .recover_lost_rows(
            now_ms(),
            secs_to_ms(settings.queued_lease_secs),
            secs_to_ms(settings.sending_lease_secs),
            &resend.unsafe_channels(),
        )
        .await?;
    if recovered > 0 {
        tracing::warn!(
            rows = recovered,
            "recovered rows whose job or worker was lost"
        );
    }
    store.purge_dedup_keys().await?;
    queue
        .purge_finished(Duration::from_secs(settings.job_retention_secs))
        .await?;
    Ok(())
}

/// Mailings whose running batches must stop sending: cancelled (in the last day) or paused.
pub type Halted = Arc<HashMap<i64, MailingState>>;

pub async fn halted_mailings(store: &Store) -> Result<Halted> {
    let since = now_ms() - 24 * 3600 * 1000;
    Ok(Arc::new(
        store.halted_since(since).await?.into_iter().collect(),
    ))
}

/// Read the halted mailings again and hand them to the running batches if they changed.
pub async fn refresh_halted(
    store: &Store,
    batches: &tokio::sync::watch::Sender<Halted>,
) -> Result<()> {
    let set = halted_mailings(store).await?;
    batches.send_if_modified(|current| {
        let changed = *current != set;
        *current = set;
        changed
    });
    Ok(())
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}
