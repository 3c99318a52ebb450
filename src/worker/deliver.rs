//! The job handler: deliver one claimed batch of a mailing and write what became of each row.
//!
//! Sends run concurrently (bounded by the channel's in-flight limit). Outcomes are flushed in
//! batches every `worker.flush_interval_ms` (or every hundred outcomes); a batch that runs long also renews the lease of the
//! rows it still holds (every quarter of the shorter lease), so the reconciler never takes back
//! a row that is merely waiting for a slow provider. A flush that fails is retried (the
//! outcomes stay in memory) rather than abandoning the batch.
//!
//! On channels that can resend safely (SMS with `sms.resend_unacknowledged`) the whole batch is
//! marked `sending` at once; on the others each row is marked once it holds its slot and rate
//! token, in small groups ([`super::marking`]), so that after a crash only the rows really in
//! flight become `unknown`.

use super::backoff::RetrySchedule;
use super::maintenance::Halted;
use super::marking::{Mark, Marker};
use super::render::{Rendered, Templates, push_payload_of};
use super::uploads::{MediaUploads, ResolvedMedia, media_refs};
use crate::channels::{
    self, ChannelEvent, Channels, DeliveryError, EmailParts, InboxParts, NotReachable, Outgoing,
    Parts, Profile, PushParts, PushSubscription, Recipient, ResendPolicy, Route, TelegramBot,
    TelegramParts,
};
use crate::dedup::DedupKeys;
use crate::domain::{ChannelKind, Client, MailingState};
use crate::ids::{MailingId, MessageId};
use crate::jobs::{DeliverBatch, Job};
use crate::now_ms;
use crate::store::{DeliveryRow, Mailing, Outcome, Store, StoreError};
use crate::template::TextLimits;
use crate::unsubscribe::UnsubscribeKeys;
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Flush outcomes as soon as this many are waiting (and every `flush_every` in any case).
const FLUSH_AT: usize = 100;
/// A mark that took longer than this made the row's rate token old: it takes a fresh one.
const MARK_STALL: Duration = Duration::from_millis(50);
/// Flush attempts before a batch gives up (its rows are then recovered after their lease).
const FLUSH_RETRIES: usize = 12;

/// What the handler needs, shared by every job of the process.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pub store: Store,
    pub channels: Channels,
    pub retry: RetrySchedule,
    /// Which channels may send a cut-off message again.
    pub resend: ResendPolicy,
    /// `worker.flush_interval_ms`: write outcomes at least this often while a batch runs.
    pub flush_every: Duration,
    /// Cancelled and paused mailings, refreshed every `cancel_check_interval_ms`.
    pub halted: watch::Receiver<Halted>,
    /// Fires when the process is shutting down: sends not yet started are given back.
    pub shutdown: CancellationToken,
    /// `mailing.dedup_window_secs` in milliseconds; 0: no deduplication.
    pub dedup_window_ms: i64,
    /// Where deduplication keys are kept.
    pub dedup: DedupKeys,
    /// Running batches. They run apart from the apalis worker that fetched them: when a
    /// backend error ends that worker (seen after a Redis flush), its batches still finish and
    /// record what they sent, instead of being dropped mid-send and sent again later.
    pub batches: tokio_util::task::TaskTracker,
    /// Renew the lease of a batch's unsettled rows when this long has passed since the last
    /// renewal (a fraction of the shorter lease). Renewing on every flush rewrote every held
    /// row a few times per batch, the largest share of the database's work at full speed.
    pub renew_lease_every: Duration,
    /// Signs each email recipient's unsubscribe link.
    pub unsubscribe: UnsubscribeKeys,
    /// `api.public_url`: where unsubscribe links point.
    pub public_url: String,
    /// Media files being uploaded to Telegram, so each is uploaded once per bot.
    pub uploads: MediaUploads,
    /// The bot of `telegram.bot_token`, for Telegram mailings that name no other.
    pub default_bot: TelegramBot,
    /// `telegram.retries_after_429`.
    pub retries_after_429: u32,
    /// How far a message template may go on each channel (length, fuel, time).
    pub text_limits: std::collections::HashMap<ChannelKind, TextLimits>,
}

/// A Telegram mailing names a bot its tenant has not registered, or removed since.
#[derive(Debug, thiserror::Error)]
#[error("the mailing's bot {0:?} is not registered any more")]
struct BotGone(String);

/// The deduplication key of one text to one recipient: tenant, channel, address and text.
fn dedup_key(mailing: &Mailing, address: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    // A Telegram message is also its media, its bot and the rest of its content: two albums
    // with the same (often empty) caption are not duplicates.
    let telegram = mailing
        .telegram
        .as_ref()
        .and_then(|content| serde_json::to_string(content).ok())
        .unwrap_or_default();
    for part in [
        mailing.tenant_id.to_string().as_str(),
        mailing.channel.as_str(),
        address,
        text,
        telegram.as_str(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What one message carries beyond its text: a Telegram mailing's content and media, a web
/// push's browsers and payload, an inbox item's owner and title, an email's subject, HTML and
/// unsubscribe link, or nothing.
fn parts_of<'a>(
    mailing: &'a Mailing,
    client: &'a Client,
    bot: &'a TelegramBot,
    rendered: &'a Rendered,
    unsubscribe_url: &'a Option<String>,
    media: &'a ResolvedMedia,
    push: &'a Option<(Vec<PushSubscription>, Vec<u8>)>,
) -> Parts<'a> {
    if let Some(content) = mailing.telegram.as_ref() {
        return Parts::Telegram(TelegramParts {
            bot,
            content,
            media: media_refs(media, Some(content)),
        });
    }
    if let Some((subscriptions, payload)) = push {
        return Parts::Push(PushParts {
            subscriptions,
            payload,
        });
    }
    if mailing.channel == ChannelKind::InApp {
        return Parts::Inbox(InboxParts {
            tenant_id: mailing.tenant_id,
            client_id: client.id,
            title: rendered.subject.as_deref(),
        });
    }
    match rendered.subject.as_deref() {
        Some(subject) => Parts::Email(EmailParts {
            subject,
            html: rendered.html.as_deref(),
            unsubscribe_url: unsubscribe_url.as_deref(),
        }),
        None => Parts::Text,
    }
}

/// When a running batch last renewed the lease of its rows (`begin_sending` set it).
struct LeaseClock {
    renewed_at: Instant,
    every: Duration,
}

impl LeaseClock {
    fn new(every: Duration) -> LeaseClock {
        LeaseClock {
            renewed_at: Instant::now(),
            every,
        }
    }

    fn due(&self) -> bool {
        self.renewed_at.elapsed() >= self.every
    }

    fn renewed(&mut self) {
        self.renewed_at = Instant::now();
    }
}

impl Deliverer {
    /// Handle one raw job payload. Errors are infrastructure failures (the store is down); the
    /// rows then stay claimed and the reconciler re-queues them after their lease.
    pub async fn handle(self: Arc<Self>, raw: &serde_json::Value) -> Result<(), StoreError> {
        let batch = match Job::decode(raw) {
            Ok(Job::DeliverBatchV1(batch)) => batch,
            Err(e) => {
                tracing::error!(error = %e, payload = %raw, "dropping a job this build cannot read");
                return Ok(());
            }
        };
        self.deliver(batch).await
    }

    async fn deliver(self: Arc<Self>, batch: DeliverBatch) -> Result<(), StoreError> {
        let mailing = self
            .store
            .mailing_any_tenant(MailingId(batch.mailing_id))
            .await?;
        let resend_is_safe = self.resend.is_safe(mailing.channel);
        let message_ids: Vec<MessageId> =
            batch.message_ids.iter().copied().map(MessageId).collect();
        let rows = self
            .store
            .begin_sending(batch.claim, &message_ids, resend_is_safe)
            .await?;
        if rows.is_empty() {
            return Ok(()); // a stale token: its rows were re-queued or settled meanwhile
        }
        let bot = match self.bot_of(&mailing).await? {
            Ok(bot) => Arc::new(bot),
            Err(reason) => {
                // Nothing can go out through a bot that is not registered: every row fails.
                let mut pending: Vec<(MessageId, Outcome)> = rows
                    .iter()
                    .map(|row| {
                        (
                            row.message_id,
                            Outcome::Failed {
                                error: reason.to_string(),
                            },
                        )
                    })
                    .collect();
                let mut lease = LeaseClock::new(self.renew_lease_every);
                return self
                    .flush(mailing.id, batch.claim, &mut pending, &mut lease)
                    .await;
            }
        };
        let limits = self
            .text_limits
            .get(&mailing.channel)
            .copied()
            .unwrap_or_else(|| TextLimits::with_default_budget(1000));
        let mut templates = Templates::compile(&mailing, limits);
        if let (Some(id), true) = (
            mailing.notification_id,
            channels::profile(mailing.channel).push_subscriptions,
        ) {
            templates.events = Some(self.store.notification_events(id).await?);
        }
        let template = Arc::new(templates);
        let in_flight = self.channels.max_in_flight(mailing.channel);
        let mailing = Arc::new(mailing);
        let claim = batch.claim;
        let tenant = mailing.tenant_id.to_string();
        // Each send is a task of its own: it must progress (and give back any database
        // connection it holds) while this loop waits on a flush. Polled from here instead, a
        // send holding a pooled connection would wait for the flush, and the flush for a
        // connection: a deadlock once the pool is exhausted. The tasks live in a JoinSet, so
        // if this batch is dropped (its worker failed, a flush gave up) they are aborted with
        // it rather than sending on with nobody to record what they did.
        let marker = (!resend_is_safe).then(|| Marker::start(self.store.clone(), claim));
        let spawn = |running: &mut JoinSet<(MessageId, Option<Outcome>)>, row: DeliveryRow| {
            let (me, mailing, template, bot, marker) = (
                self.clone(),
                mailing.clone(),
                template.clone(),
                bot.clone(),
                marker.clone(),
            );
            running.spawn(async move {
                let outcome = me
                    .send_one(
                        &mailing,
                        &bot,
                        &template,
                        &row,
                        marker.as_ref(),
                        resend_is_safe,
                    )
                    .await;
                (row.message_id, outcome)
            });
        };
        let mut waiting = rows.into_iter();
        let mut running = JoinSet::new();
        for row in waiting.by_ref().take(in_flight) {
            spawn(&mut running, row);
        }

        let mut pending: Vec<(MessageId, Outcome)> = Vec::with_capacity(FLUSH_AT);
        let mut lease = LeaseClock::new(self.renew_lease_every);
        let mut flush_timer = tokio::time::interval(self.flush_every);
        flush_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        flush_timer.tick().await;
        loop {
            tokio::select! {
                next = running.join_next() => {
                    match next {
                        None => break,
                        // A panicked send leaves its row to the reconciler, after the lease.
                        Some(Err(e)) => tracing::error!(error = %e, "a send task failed"),
                        Some(Ok((_, None))) => {}
                        Some(Ok((id, Some(outcome)))) => {
                            metrics::counter!(
                                "blast_messages_total",
                                "channel" => mailing.channel.as_str(),
                                "state" => outcome.label(),
                                "tenant" => tenant.clone()
                            )
                            .increment(1);
                            pending.push((id, outcome));
                        }
                    }
                    if let Some(row) = waiting.next() {
                        spawn(&mut running, row);
                    }
                    if pending.len() >= FLUSH_AT {
                        self.flush(mailing.id, batch.claim, &mut pending, &mut lease).await?;
                    }
                },
                _ = flush_timer.tick() => self.flush(mailing.id, batch.claim, &mut pending, &mut lease).await?,
            }
        }
        self.flush(mailing.id, batch.claim, &mut pending, &mut lease)
            .await
    }

    /// Write the outcomes so far (and renew the batch's lease), retrying while the store is
    /// busy or briefly down: dropping them would lose sends that really happened.
    async fn flush(
        &self,
        mailing_id: MailingId,
        claim: i64,
        pending: &mut Vec<(MessageId, Outcome)>,
        lease: &mut LeaseClock,
    ) -> Result<(), StoreError> {
        let renew = lease.due();
        if pending.is_empty() && !renew {
            return Ok(());
        }
        let write = || self.store.flush_batch(mailing_id, claim, pending, renew);
        write
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(FLUSH_RETRIES),
            )
            .sleep(tokio::time::sleep)
            .notify(|e: &StoreError, after: Duration| {
                tracing::warn!(error = %e, retry_in = ?after, "cannot write delivery outcomes; retrying");
            })
            .await?;
        pending.clear();
        if renew {
            lease.renewed();
        }
        Ok(())
    }

    /// Decide about and perform one send. The checks (cancelled, paused, shutting down, window
    /// closed) run after the waits for an in-flight slot and for the rate limit, right before
    /// the request goes out.
    /// `None` means the row is no longer this batch's (the reconciler took it back): nothing
    /// is sent and nothing written.
    async fn send_one(
        &self,
        mailing: &Mailing,
        bot: &TelegramBot,
        templates: &Arc<Templates>,
        row: &DeliveryRow,
        marker: Option<&Marker>,
        resend_is_safe: bool,
    ) -> Option<Outcome> {
        let profile = channels::profile(mailing.channel);
        let mut address = match self.address_of(mailing.channel, row) {
            Ok(address) => address,
            Err(NotReachable(reason)) => return Some(Outcome::Skipped { reason }),
        };
        let unsubscribe_url = profile
            .unsubscribe_link
            .then(|| self.unsubscribe.url(&self.public_url, row.client.id.0));
        let extra: Vec<(&'static str, &str)> = unsubscribe_url
            .as_deref()
            .map(|url| ("unsubscribe_url", url))
            .into_iter()
            .collect();
        let rendered = match templates.render_off_runtime(&row.client, &extra).await {
            Ok(rendered) => rendered,
            Err(e) => return Some(Outcome::Failed { error: e.0 }),
        };
        let text = &rendered.text;
        let subscriptions = match self.push_subscriptions(profile, row).await {
            Ok(subscriptions) => subscriptions,
            Err(outcome) => return Some(outcome),
        };
        let push = profile.push_subscriptions.then(|| {
            (
                subscriptions,
                push_payload_of(mailing, templates, &rendered),
            )
        });
        // Every check runs before each wait and again after it: a row that will not be sent
        // takes neither a slot nor a rate token, and one that waited long is judged afresh.
        if let Some(outcome) = self.unwanted(mailing, row) {
            return Some(outcome);
        }
        // A notification is its own event (its idempotency key guards against repeats): two
        // with the same text are not duplicates.
        if self.dedup_window_ms > 0 && mailing.notification_id.is_none() {
            let key = dedup_key(mailing, &address, text);
            match self
                .dedup
                .reserve(&self.store, &key, row.message_id, self.dedup_window_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    metrics::counter!("blast_dedup_skipped_total", "channel" => mailing.channel.as_str())
                        .increment(1);
                    return Some(Outcome::Skipped {
                        reason: "duplicate: the same text went to this recipient within the dedup window".into(),
                    });
                }
                // Cannot tell whether it is a duplicate: not now; the row goes back to pending.
                Err(_) => return Some(Outcome::Release),
            }
        }
        let mut media = match self
            .uploads
            .resolve(&self.store, mailing.telegram.as_ref(), &bot.id)
            .await
        {
            Ok(media) => media,
            Err(outcome) => return Some(outcome),
        };
        let Ok((_slot, channel)) = self
            .channels
            .acquire(mailing.channel, mailing.priority)
            .await
        else {
            return Some(Outcome::Release);
        };
        let mut rate_limited = 0;
        let mut moved = false;
        let mut marked = false;
        let channel_name = mailing.channel.as_str();
        let result = loop {
            if let Some(outcome) = self.unwanted(mailing, row) {
                return Some(outcome);
            }
            let route = Route {
                tenant_id: mailing.tenant_id,
                bot_id: &bot.id,
                address: &address,
                telegram: mailing.telegram.as_ref(),
            };
            tokio::select! {
                _ = self.channels.rate_wait(mailing.channel, mailing.priority, &route) => {}
                _ = self.shutdown.cancelled() => return Some(Outcome::Release),
            }
            if let Some(outcome) = self.unwanted(mailing, row) {
                return Some(outcome);
            }
            // A channel that must not send twice marks the row `sending` only now, with its
            // slot and its rate token in hand: a crash from here on leaves it `unknown`.
            if let Some(marker) = marker.filter(|_| !marked) {
                let asked = Instant::now();
                match marker.mark(row.message_id).await {
                    Mark::Marked => marked = true,
                    Mark::NotOurs => return None,
                    // Not marked, so not sent: the row goes back to pending.
                    Mark::Failed => return Some(Outcome::Release),
                }
                // A commit that stalled (a checkpoint) made the token old: sending on it now
                // would bunch requests up at the provider, which counts them as they arrive.
                if asked.elapsed() > MARK_STALL {
                    tokio::select! {
                        _ = self.channels.rate_wait(mailing.channel, mailing.priority, &route) => {}
                        _ = self.shutdown.cancelled() => return Some(Outcome::Release),
                    }
                }
                // Release takes `sending` rows back too: a row marked but not sent is not lost.
                if self.shutdown.is_cancelled() {
                    return Some(Outcome::Release);
                }
                if let Some(outcome) = self.unwanted(mailing, row) {
                    return Some(outcome);
                }
            }
            let msg = Outgoing {
                message_id: row.message_id,
                mailing_id: mailing.id,
                address: &address,
                text,
                parts: parts_of(
                    mailing,
                    &row.client,
                    bot,
                    &rendered,
                    &unsubscribe_url,
                    &media,
                    &push,
                ),
            };
            let started = Instant::now();
            let attempt = channel.send(&msg).await;
            metrics::histogram!("blast_send_duration_seconds", "channel" => channel_name)
                .record(started.elapsed().as_secs_f64());
            for event in &attempt.events {
                self.record(event, row).await;
            }
            match attempt.result {
                // Nothing was sent: pause this sender for every process, keep this slot, and
                // try again once the pause is over.
                Err(DeliveryError::RateLimited { retry_after })
                    if rate_limited < self.retries_after_429 =>
                {
                    rate_limited += 1;
                    metrics::counter!("blast_provider_rate_limited_total", "channel" => channel_name)
                        .increment(1);
                    self.channels
                        .pause(mailing.channel, &bot.id, retry_after)
                        .await;
                }
                // A group became a supergroup: the client follows it, and the message goes there.
                // A group became a supergroup: the message goes to its new id (the client
                // followed it with the event).
                Err(DeliveryError::Moved { to }) if !moved => {
                    moved = true;
                    address = to;
                }
                Ok(receipt) => {
                    MediaUploads::remember(&self.store, &mut media, &receipt, &bot.id).await;
                    break Ok(receipt);
                }
                other => break other,
            }
        };
        let outcome = self.outcome_of(result.map(|_| ()), row, mailing.end_at, resend_is_safe);
        metrics::counter!("blast_send_attempts_total", "channel" => channel_name, "outcome" => outcome.label())
            .increment(1);
        if matches!(outcome, Outcome::Retry { .. }) {
            metrics::counter!("blast_retries_total", "channel" => channel_name).increment(1);
        }
        Some(outcome)
    }

    /// Record what a channel learned that outlives the message.
    async fn record(&self, event: &ChannelEvent, row: &DeliveryRow) {
        let client = row.client.id;
        let stored = match event {
            ChannelEvent::SubscriptionGone { id } => self.store.drop_push_subscription(*id).await,
            ChannelEvent::BlockedTheBot => self.store.block_telegram(client).await,
            ChannelEvent::ChatMoved { from, to } => {
                self.store.move_telegram_chat(client, *from, *to).await
            }
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, client = client.0, ?event, "cannot record what the channel learned");
        }
    }

    /// Where the row's message goes on `channel`, or why it is skipped: the recipient left the
    /// channel (unsubscribed, blocked the bot, lost the address) after the mailing was made.
    fn address_of(&self, channel: ChannelKind, row: &DeliveryRow) -> Result<String, NotReachable> {
        if row.client_deleted {
            return Err(NotReachable::new("the client was deleted"));
        }
        let channel = self
            .channels
            .get(channel)
            .map_err(|e| NotReachable(e.to_string()))?;
        channel.address(&Recipient {
            client: &row.client,
            email_opted_out: row.email_opted_out,
            telegram_blocked: row.telegram_blocked,
        })
    }

    /// The browsers the message goes to, on a channel that pushes to them (none elsewhere); a
    /// client with none left is skipped.
    async fn push_subscriptions(
        &self,
        profile: Profile,
        row: &DeliveryRow,
    ) -> Result<Vec<PushSubscription>, Outcome> {
        if !profile.push_subscriptions {
            return Ok(Vec::new());
        }
        match self.store.push_subscriptions_of(row.client.id).await {
            Ok(found) if found.is_empty() => Err(Outcome::Skipped {
                reason: "the client has no push subscription any more".into(),
            }),
            Ok(found) => Ok(found),
            Err(_) => Err(Outcome::Release),
        }
    }

    /// The bot a mailing's Telegram sends go out through: `Err` (inside) when it names a bot
    /// its tenant has not registered (or removed since).
    async fn bot_of(&self, mailing: &Mailing) -> Result<Result<TelegramBot, BotGone>, StoreError> {
        let name = match mailing.telegram.as_ref().and_then(|c| c.bot.as_deref()) {
            Some(name) if mailing.channel == ChannelKind::Telegram => name,
            _ => return Ok(Ok(self.default_bot.clone())),
        };
        Ok(self
            .store
            .telegram_bot(mailing.tenant_id, name)
            .await?
            .ok_or_else(|| BotGone(name.to_owned())))
    }

    /// Why a send must not happen now, if it must not: its mailing was cancelled or paused,
    /// the process is shutting down, the window closed, or it is outside the recipient's local
    /// hours (then it waits for the next opening, or expires if that is past the end).
    fn unwanted(&self, mailing: &Mailing, row: &DeliveryRow) -> Option<Outcome> {
        let halted = self.halted.borrow().get(&mailing.id.0).copied();
        match halted.unwrap_or(mailing.state) {
            MailingState::Cancelled => return Some(Outcome::Cancelled),
            // Not attempted: back to pending, to be sent when the mailing resumes.
            MailingState::Paused => return Some(Outcome::Release),
            _ => {}
        }
        if self.shutdown.is_cancelled() {
            return Some(Outcome::Release);
        }
        let now = now_ms();
        if now >= mailing.end_at {
            return Some(Outcome::Expired { last_error: None });
        }
        let opening = mailing
            .local_hours
            .and_then(|hours| hours.next_opening(&row.client.timezone, now))?;
        Some(if opening >= mailing.end_at {
            Outcome::Expired { last_error: None }
        } else {
            Outcome::Defer { at: opening }
        })
    }

    fn outcome_of(
        &self,
        result: Result<(), DeliveryError>,
        row: &DeliveryRow,
        end_at: i64,
        resend_is_safe: bool,
    ) -> Outcome {
        match result {
            Ok(()) => Outcome::Sent,
            Err(DeliveryError::Permanent(error)) => Outcome::Failed { error },
            Err(DeliveryError::Indeterminate(error)) if !resend_is_safe => {
                Outcome::Unknown { error }
            }
            Err(DeliveryError::Indeterminate(reason)) => self.outcome_of(
                Err(DeliveryError::transient(reason)),
                row,
                end_at,
                resend_is_safe,
            ),
            Err(DeliveryError::Blocked(error)) => Outcome::Failed { error },
            // Still rate limited after waiting in place: wait again, no attempt spent.
            Err(DeliveryError::RateLimited { retry_after }) => {
                let at = now_ms() + retry_after.as_millis() as i64;
                let error = format!(
                    "rate limited by the provider: retry after {} s",
                    retry_after.as_secs()
                );
                if at >= end_at {
                    Outcome::Expired {
                        last_error: Some(error),
                    }
                } else {
                    Outcome::Wait { at, error }
                }
            }
            Err(DeliveryError::Moved { to }) => self.outcome_of(
                Err(DeliveryError::transient(format!(
                    "the chat moved again, to {to}"
                ))),
                row,
                end_at,
                resend_is_safe,
            ),
            Err(DeliveryError::Unavailable(error)) => {
                let at = now_ms() + self.retry.unavailable_delay(None).as_millis() as i64;
                if at >= end_at {
                    Outcome::Expired {
                        last_error: Some(error),
                    }
                } else {
                    Outcome::Wait { at, error }
                }
            }
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
