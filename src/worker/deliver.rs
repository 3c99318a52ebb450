//! The job handler: deliver one claimed batch of a mailing and write what became of each row.
//!
//! Sends run concurrently (bounded by the channel's in-flight limit). Outcomes are flushed in
//! batches every few hundred milliseconds; each flush also renews the lease of the rows still
//! in flight, so the reconciler never takes back a row that is merely slow.

use super::backoff::RetrySchedule;
use crate::channels::{Channels, DeliveryError, Outgoing};
use crate::domain::MailingState;
use crate::jobs::{DeliverBatch, Job};
use crate::now_ms;
use crate::store::{DeliveryRow, Mailing, Outcome, Store, StoreError};
use crate::template::MessageTemplate;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Flush outcomes at least this often while a batch is running.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// ... or as soon as this many are waiting.
const FLUSH_AT: usize = 100;

/// What the handler needs, shared by every job of the process.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pub store: Store,
    pub channels: Channels,
    pub retry: RetrySchedule,
    /// Ids of cancelled mailings, refreshed every `cancel_check_interval_ms`.
    pub cancelled: watch::Receiver<Arc<HashSet<i64>>>,
    /// Fires when the process is shutting down: sends not yet started are given back.
    pub shutdown: CancellationToken,
}

impl Deliverer {
    /// Handle one raw job payload. Errors are infrastructure failures (the store is down); the
    /// rows then stay claimed and the reconciler re-queues them after their lease.
    pub async fn handle(&self, raw: &serde_json::Value) -> Result<(), StoreError> {
        let batch = match Job::decode(raw) {
            Ok(Job::DeliverBatchV1(batch)) => batch,
            Err(e) => {
                tracing::error!(error = %e, payload = %raw, "dropping a job this build cannot read");
                return Ok(());
            }
        };
        self.deliver(batch).await
    }

    async fn deliver(&self, batch: DeliverBatch) -> Result<(), StoreError> {
        let mailing = self.store.mailing_any_tenant(batch.mailing_id).await?;
        let rows = self
            .store
            .begin_sending(batch.claim, &batch.message_ids)
            .await?;
        if rows.is_empty() {
            return Ok(()); // a stale token: its rows were re-queued or settled meanwhile
        }
        let template = MessageTemplate::compile(&mailing.text);
        let in_flight = self.channels.max_in_flight(mailing.channel);
        let mut sends = futures::stream::iter(rows)
            .map(|row| {
                let template = &template;
                let mailing = &mailing;
                async move {
                    let outcome = self.send_one(mailing, template, &row).await;
                    (row.message_id, outcome)
                }
            })
            .buffer_unordered(in_flight);

        let mut pending: Vec<(i64, Outcome)> = Vec::with_capacity(FLUSH_AT);
        let mut flush_timer = tokio::time::interval(FLUSH_EVERY);
        flush_timer.tick().await;
        loop {
            tokio::select! {
                next = sends.next() => match next {
                    Some(done) => {
                        pending.push(done);
                        if pending.len() >= FLUSH_AT {
                            self.flush(batch.claim, &mut pending).await?;
                        }
                    }
                    None => break,
                },
                _ = flush_timer.tick() => self.flush(batch.claim, &mut pending).await?,
            }
        }
        self.flush(batch.claim, &mut pending).await
    }

    async fn flush(&self, claim: i64, pending: &mut Vec<(i64, Outcome)>) -> Result<(), StoreError> {
        self.store.write_outcomes(claim, pending).await?;
        pending.clear();
        Ok(())
    }

    /// Decide about and perform one send. The checks (cancelled, shutting down, window
    /// closed) run after the wait for an in-flight slot, right before the request goes out.
    async fn send_one(
        &self,
        mailing: &Mailing,
        template: &Result<MessageTemplate, crate::domain::InvalidInput>,
        row: &DeliveryRow,
    ) -> Outcome {
        let text = match template.as_ref().map(|t| t.render(&row.client)) {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => return Outcome::Failed { error: e.0 },
            Err(e) => return Outcome::Failed { error: e.0.clone() },
        };
        let (_slot, channel) = match self.channels.acquire(mailing.channel).await {
            Ok(acquired) => acquired,
            Err(_) => return Outcome::Release,
        };
        if mailing.state == MailingState::Cancelled || self.cancelled.borrow().contains(&mailing.id)
        {
            return Outcome::Cancelled;
        }
        if self.shutdown.is_cancelled() {
            return Outcome::Release;
        }
        if now_ms() >= mailing.end_at {
            return Outcome::Expired { last_error: None };
        }
        let msg = Outgoing {
            message_id: row.message_id,
            mailing_id: mailing.id,
            phone: &row.client.phone,
            text: &text,
        };
        let started = Instant::now();
        let result = channel.send(&msg).await;
        let channel_name = mailing.channel.as_str();
        metrics::histogram!("blast_send_duration_seconds", "channel" => channel_name)
            .record(started.elapsed().as_secs_f64());
        let outcome = self.outcome_of(result, row, mailing.end_at);
        metrics::counter!("blast_send_attempts_total", "channel" => channel_name, "outcome" => outcome.label())
            .increment(1);
        outcome
    }

    fn outcome_of(
        &self,
        result: Result<(), DeliveryError>,
        row: &DeliveryRow,
        end_at: i64,
    ) -> Outcome {
        match result {
            Ok(()) => Outcome::Sent,
            Err(DeliveryError::Permanent(error)) => Outcome::Failed { error },
            Err(DeliveryError::Transient {
                reason,
                retry_after,
            }) => {
                let attempts_made = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
                match self.retry.delay(attempts_made, retry_after) {
                    None => Outcome::Failed {
                        error: format!("gave up after {attempts_made} attempts: {reason}"),
                    },
                    Some(delay) => {
                        let at = now_ms() + delay.as_millis() as i64;
                        if at >= end_at {
                            Outcome::Expired {
                                last_error: Some(reason),
                            }
                        } else {
                            Outcome::Retry { at, error: reason }
                        }
                    }
                }
            }
        }
    }
}
