//! Notifications: taking an event for a client, a client's channel preferences, and the
//! dispatcher that tries a notification over the client's channels in its order of preference
//! until one delivers it.
//!
//! Each try is a mailing of one row, so every try has the pump, the limits, the retries and
//! the states of any message. A try that failed for good (or found the client gone from that
//! channel) moves on to the next channel; one that was sent, expired, was cancelled or may have
//! been delivered (`unknown`) ends the notification.

use crate::channels::profile;
use crate::domain::{ChannelKind, InvalidInput, LocalHours, MessageState, invalid};
use crate::ids::{ClientId, TenantId};
use crate::notify::{NotificationSettings, compose};
use crate::store::{
    NewNotification, NewTry, Notification, NotificationPreferences, NotificationTurn, Store,
    StoreError,
};
use crate::telegram::TelegramContent;

type Result<T> = std::result::Result<T, StoreError>;

/// Check one event for a client and take it: a new notification, or (coalescing) one more
/// event of the client's waiting notification with the same key. Returns the notification and
/// whether this call made it (false: an earlier call with the same idempotency key did).
pub async fn notify(
    store: &Store,
    tenant_id: TenantId,
    new: NewNotification,
    settings: &NotificationSettings,
) -> Result<(Notification, bool)> {
    new.event.validate()?;
    if new.coalesce_minutes > settings.max_coalesce_minutes {
        return Err(invalid(format!(
            "coalesce_minutes is at most {} (notifications.max_coalesce_minutes)",
            settings.max_coalesce_minutes
        ))
        .into());
    }
    if let Some(key) = &new.idempotency_key
        && (key.is_empty() || key.len() > 255)
    {
        return Err(invalid("an idempotency key has 1 to 255 characters").into());
    }
    let expire_after_ms =
        i64::try_from(settings.expire_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
    store.notify(tenant_id, new, expire_after_ms).await
}

/// A client's channel order and quiet hours: its own, or the configured channels
/// (`notifications.default_channels`) with no quiet hours.
pub async fn preferences(
    store: &Store,
    tenant_id: TenantId,
    client_id: ClientId,
    settings: &NotificationSettings,
) -> Result<NotificationPreferences> {
    let own = store.notification_preferences(tenant_id, client_id).await?;
    Ok(own.unwrap_or_else(|| defaults(settings)))
}

fn defaults(settings: &NotificationSettings) -> NotificationPreferences {
    NotificationPreferences {
        channels: settings.default_channels.clone(),
        quiet_hours: None,
    }
}

/// Check and set a client's channel order and quiet hours.
pub async fn set_preferences(
    store: &Store,
    tenant_id: TenantId,
    client_id: ClientId,
    preferences: &NotificationPreferences,
) -> Result<NotificationPreferences> {
    check_preferences(preferences)?;
    store
        .set_notification_preferences(tenant_id, client_id, preferences)
        .await
}

/// At least one channel, each one notifications may use, none twice.
fn check_preferences(
    preferences: &NotificationPreferences,
) -> std::result::Result<(), InvalidInput> {
    if preferences.channels.is_empty() {
        return Err(invalid("name at least one channel"));
    }
    if let Some(channel) = preferences.channels.iter().find(|c| !profile(**c).notifies) {
        return Err(invalid(format!(
            "the {channel} channel is not for notifications"
        )));
    }
    let mut seen = preferences.channels.clone();
    seen.sort_by_key(|c| c.as_str());
    seen.dedup();
    if seen.len() != preferences.channels.len() {
        return Err(invalid("a channel is named twice"));
    }
    Ok(())
}

/// What the dispatcher did in one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dispatched {
    pub tries_started: usize,
    pub finished: usize,
}

/// What one step did to a notification.
enum Step {
    TryStarted,
    Ended,
    /// Another process got there first, or the try is still held by a worker.
    Nothing,
}

/// One pass of the dispatcher: start the first try of every notification that is due, and
/// move on from every try that has ended. Safe to run in every worker at once: each step takes
/// its notification with a conditional update.
pub async fn dispatch(
    store: &Store,
    now: i64,
    settings: &NotificationSettings,
) -> Result<Dispatched> {
    let mut done = Dispatched::default();
    // One notification the store keeps refusing must not hold up the others.
    for (id, ended_try) in store.notification_steps(now).await? {
        match step(store, id, ended_try, now, settings).await {
            Ok(Step::TryStarted) => done.tries_started += 1,
            Ok(Step::Ended) => done.finished += 1,
            Ok(Step::Nothing) => {}
            Err(e) => {
                tracing::warn!(error = %e, notification = id, "cannot move a notification on; trying again next pass");
            }
        }
    }
    Ok(done)
}

/// How a notification ends after its try's message reached `state`; None: the try is over but
/// the notification goes on to the next channel; Err: the try is still held by a worker.
fn ends_as(state: MessageState) -> std::result::Result<Option<&'static str>, StillHeld> {
    Ok(match state {
        MessageState::Pending
        | MessageState::Queued
        | MessageState::Sending
        | MessageState::FailedTemporary => return Err(StillHeld),
        MessageState::Sent => Some("delivered"),
        // It may have arrived: another channel could make it twice.
        MessageState::Unknown => Some("unknown"),
        MessageState::Expired => Some("expired"),
        MessageState::Cancelled => Some("cancelled"),
        // failed_permanent, skipped: this channel cannot take it; the next may.
        MessageState::FailedPermanent | MessageState::Skipped => None,
    })
}

/// A try's message is still pending, queued, being sent or waiting for a retry.
struct StillHeld;

/// Move notification `id` on from `ended_try` (None: from waiting).
async fn step(
    store: &Store,
    id: i64,
    ended_try: Option<i64>,
    now: i64,
    settings: &NotificationSettings,
) -> Result<Step> {
    let Some(mut turn) = store.take_notification(id, ended_try, now).await? else {
        return Ok(Step::Nothing);
    };
    let mut last_error = turn.last_error.clone();
    if let Some(mailing_id) = ended_try {
        let (state, error) = turn.try_outcome(mailing_id).await?;
        let Ok(ended_as) = ends_as(state) else {
            return Ok(Step::Nothing);
        };
        let channel = turn.tried.last().map(|c| c.as_str()).unwrap_or("?");
        if let Some(error) = error {
            last_error = Some(format!("{channel}: {error}"));
        }
        if let Some(final_state) = ended_as {
            turn.end(final_state, last_error.as_deref()).await?;
            return Ok(Step::Ended);
        }
    }
    if now >= turn.expires_at {
        turn.end("expired", last_error.as_deref()).await?;
        return Ok(Step::Ended);
    }
    let preferences = match turn.preferences().await? {
        Some(own) => own,
        None => defaults(settings),
    };
    let Some(channel) = next_channel(&mut turn, &preferences).await? else {
        let names: Vec<&str> = preferences.channels.iter().map(|c| c.as_str()).collect();
        let why = match &last_error {
            Some(error) => format!("no channel left to try; last: {error}"),
            None => format!(
                "the client cannot be reached on any of its channels ({})",
                names.join(", ")
            ),
        };
        turn.end("failed", Some(&why)).await?;
        return Ok(Step::Ended);
    };
    let next = new_try(&mut turn, channel, preferences.quiet_hours).await?;
    let mut tried = turn.tried.clone();
    tried.push(channel);
    turn.start_try(next, &tried, last_error.as_deref()).await?;
    Ok(Step::TryStarted)
}

/// The first channel of the client's preferences that notifications may use, that was not
/// tried yet and that reaches the client now.
async fn next_channel(
    turn: &mut NotificationTurn,
    preferences: &NotificationPreferences,
) -> Result<Option<ChannelKind>> {
    for channel in preferences.channels.iter().copied() {
        if profile(channel).notifies
            && !turn.tried.contains(&channel)
            && turn.reachable(channel).await?
        {
            return Ok(Some(channel));
        }
    }
    Ok(None)
}

/// The notification's events composed for `channel`, within the client's waking hours unless
/// it is urgent.
async fn new_try(
    turn: &mut NotificationTurn,
    channel: ChannelKind,
    quiet_hours: Option<LocalHours>,
) -> Result<NewTry> {
    let composed = compose(&turn.events().await?);
    let shape = profile(channel);
    // Quiet hours are the complement of the hours a message may go out in.
    let local_hours = quiet_hours
        .filter(|_| !turn.urgent)
        .map(|quiet| LocalHours {
            from: quiet.to,
            to: quiet.from,
        });
    Ok(NewTry {
        channel,
        text: composed.text_for(channel),
        subject: shape.subject.exists().then(|| composed.title.clone()),
        local_hours,
        // A plain text message through the configured bot.
        telegram: shape.telegram_content.then(TelegramContent::text_message),
    })
}
