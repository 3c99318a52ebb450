//! Channels: the adapters that hand one rendered message to a provider.
//!
//! Every adapter answers with `Ok` or a [`DeliveryError`], which is either `Permanent` (do not
//! try again) or `Transient` (try again later, perhaps after a delay the provider named). That
//! split drives all retry policy in the worker. Two refinements of "transient" say whose
//! problem it is: `Unavailable` (the channel cannot send at all: the message waits without
//! spending an attempt) and `Indeterminate` (it may have been delivered: a channel that cannot
//! resend safely records it as `unknown`). Telegram adds three more that the worker acts on:
//! `RateLimited` (pause that bot's limit and try again), `Moved` (the chat has a new id: update
//! the client and resend) and `Blocked` (the recipient is gone for good: mark the client).

mod email;
mod log;
mod sms;
mod telegram;
mod webpush;

pub use crate::vapid::{VapidError, VapidKey};
pub use email::{EmailChannel, EmailParts};
pub use log::LogChannel;
pub use sms::SmsChannel;
pub use telegram::{
    MediaRef, TelegramBot, TelegramChannel, TelegramParts, bot_id_of, connect_bot, direct_media,
};
pub use webpush::{MAX_PUSH_TEXT_CHARS, PushSubscription, VapidKeys, WebPushChannel};

use crate::domain::ChannelKind;
use crate::jobs::Lane;
use crate::limits::{Limit, Limiter};
use crate::settings::Settings;
use crate::store::Mailing;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Why one send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("permanent: {0}")]
    Permanent(String),
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        /// The provider asked us to wait this long before trying again.
        retry_after: Option<Duration>,
    },
    /// The channel cannot send anything now (our credentials refused, the server
    /// unreachable): not this message's failure, so no attempt is counted.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// Cut off after the provider may have accepted it: retried only where a resend cannot
    /// duplicate, otherwise recorded as `unknown`.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The provider refused for its rate limit (Telegram's 429): nothing was sent.
    #[error("rate limited: retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// The recipient moved to this address (a group that became a supergroup): nothing was
    /// sent; resend there.
    #[error("the chat moved to {to}")]
    Moved { to: String },
    /// The recipient blocked us or no longer exists: permanent, and later mailings skip them.
    #[error("blocked: {0}")]
    Blocked(String),
}

/// How a receiver's non-success HTTP status is read, for every channel and webhook that
/// speaks plain HTTP: 5xx, 408 and 429 are passing trouble (`Transient`, after the
/// receiver's `Retry-After` if it named one); any other status is `Permanent`.
pub fn http_refusal(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    who: &str,
) -> DeliveryError {
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        DeliveryError::Transient {
            reason: format!("{who} answered {status}"),
            retry_after: retry_after(headers),
        }
    } else {
        DeliveryError::permanent(format!("{who} answered {status}"))
    }
}

/// The delay a `Retry-After` header asks for, in seconds (the HTTP-date form is not used by
/// the providers blast talks to), at most a day: a receiver cannot park a message for good.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|secs| Duration::from_secs(secs.min(24 * 3600)))
}

/// What a successful send tells us back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The ids Telegram gave uploaded files, to send them by id from then on: one per medium
    /// of the send, `None` where it was not uploaded.
    pub file_ids: Vec<Option<String>>,
}

impl DeliveryError {
    pub fn transient(reason: impl Into<String>) -> Self {
        DeliveryError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent(reason.into())
    }
}

/// One message, rendered, addressed, ready to go.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The message row id: also the provider-side idempotency key.
    pub message_id: i64,
    pub mailing_id: i64,
    /// Where it goes on its channel: a phone number, an email address.
    pub address: &'a str,
    /// The text (an email's plain-text body).
    pub text: &'a str,
    /// Subject, HTML and unsubscribe link, on the email channel.
    pub email: Option<EmailParts<'a>>,
    /// Kind, media and options, on the Telegram channel.
    pub telegram: Option<TelegramParts<'a>>,
    /// The subscription and the JSON payload, on the web push channel.
    pub push: Option<PushParts<'a>>,
}

/// One web push: the browser subscription it goes to and the payload (JSON) it carries.
#[derive(Debug, Clone, Copy)]
pub struct PushParts<'a> {
    pub subscription: &'a PushSubscription,
    pub payload: &'a [u8],
}

/// A channel adapter behind an in-flight limit.
#[derive(Debug)]
pub enum Channel {
    Sms(SmsChannel),
    Email(EmailChannel),
    Telegram(TelegramChannel),
    Log(LogChannel),
    WebPush(WebPushChannel),
}

impl Channel {
    pub async fn send(&self, msg: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        match self {
            Channel::Sms(c) => c.send(msg).await.map(|()| Receipt::default()),
            Channel::Email(c) => c.send(msg).await.map(|()| Receipt::default()),
            Channel::Telegram(c) => c.send(msg).await,
            Channel::Log(c) => c.send(msg).await.map(|()| Receipt::default()),
            Channel::WebPush(c) => match msg.push {
                Some(push) => c
                    .send(push.subscription, push.payload)
                    .await
                    .map(|()| Receipt::default()),
                None => Err(DeliveryError::permanent("a web push needs a subscription")),
            },
        }
    }
}

/// Which channels may send a message again when its send was cut off after the request may
/// have reached the provider (a worker killed mid-send, a timeout, a reset, a garbled answer).
/// Elsewhere such a message is recorded `unknown` and never sent again: the log channel appends
/// a line per send, and an SMTP server, the Bot API and a push service take the same message
/// twice as two. The SMS provider deduplicates by message id where `sms.resend_unacknowledged`
/// says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendPolicy {
    sms: bool,
}

impl ResendPolicy {
    pub fn from_settings(settings: &Settings) -> ResendPolicy {
        ResendPolicy {
            sms: settings.sms.resend_unacknowledged,
        }
    }

    /// Whether a send on `kind` may be repeated without a duplicate reaching the recipient.
    pub fn is_safe(self, kind: ChannelKind) -> bool {
        kind == ChannelKind::Sms && self.sms
    }

    /// The channels (by name) whose cut-off sends become `unknown`.
    pub fn unsafe_channels(self) -> Vec<&'static str> {
        ChannelKind::ALL
            .into_iter()
            .filter(|kind| !self.is_safe(*kind))
            .map(ChannelKind::as_str)
            .collect()
    }
}

/// In-flight slots of one channel, one pool per priority lane: a high-priority send never
/// queues behind low-priority sends that hold every slot while they wait for the rate limit.
#[derive(Debug)]
struct LaneSlots([Semaphore; 3]);

impl LaneSlots {
    fn new(per_lane: usize) -> LaneSlots {
        LaneSlots(Lane::ALL.map(|_| Semaphore::new(per_lane)))
    }

    fn of(&self, lane: Lane) -> &Semaphore {
        match lane {
            Lane::High => &self.0[0],
            Lane::Medium => &self.0[1],
            Lane::Low => &self.0[2],
        }
    }
}

/// Every channel this process can send on, each with its own in-flight limit per lane.
#[derive(Debug, Clone)]
pub struct Channels {
    sms: Arc<(Channel, LaneSlots)>,
    email: Arc<(Channel, LaneSlots)>,
    telegram: Arc<(Channel, LaneSlots)>,
    log: Arc<(Channel, LaneSlots)>,
    webpush: Arc<(Channel, LaneSlots)>,
    max_in_flight: usize,
    webpush_max_in_flight: usize,
    email_max_in_flight: usize,
    telegram_max_in_flight: usize,
    /// Where rate limits are counted: this process, or Redis for all of them.
    limiter: Limiter,
    /// The SMS provider's rate limit, when one is configured.
    sms_limit: Option<Limit>,
    /// The SMTP server's rate limit, when one is configured.
    email_limit: Option<Limit>,
    /// Telegram's limits, per bot: all chats, one chat, one group chat.
    telegram_limits: TelegramLimits,
    /// Sends per second per tenant, all channels together; 0: none.
    tenant_per_second: u32,
    burst: Duration,
}

impl Channels {
    /// The channels of `settings`, rate-limited through `limiter`. Must run inside a tokio
    /// runtime (the SMTP connection pool starts a task).
    pub fn from_settings(settings: &Settings, limiter: Limiter) -> Result<Channels, DeliveryError> {
        let burst = Duration::from_millis(settings.rate_limits.burst_ms);
        Ok(Channels {
            sms: Arc::new((
                Channel::Sms(SmsChannel::new(&settings.sms)?),
                LaneSlots::new(settings.sms.max_in_flight as usize),
            )),
            email: Arc::new((
                Channel::Email(EmailChannel::new(&settings.email)?),
                LaneSlots::new(settings.email.max_in_flight as usize),
            )),
            telegram: Arc::new((
                Channel::Telegram(TelegramChannel::new(&settings.telegram)?),
                LaneSlots::new(settings.telegram.max_in_flight as usize),
            )),
            log: Arc::new((
                Channel::Log(LogChannel::new(&settings.log_channel.path)),
                LaneSlots::new(settings.sms.max_in_flight as usize),
            )),
            webpush: Arc::new((
                Channel::WebPush(WebPushChannel::new(&settings.webpush)?),
                LaneSlots::new(settings.webpush.max_in_flight as usize),
            )),
            max_in_flight: settings.sms.max_in_flight as usize,
            webpush_max_in_flight: settings.webpush.max_in_flight as usize,
            email_max_in_flight: settings.email.max_in_flight as usize,
            telegram_max_in_flight: settings.telegram.max_in_flight as usize,
            telegram_limits: TelegramLimits {
                bot_per_second: settings.telegram.bot_per_second,
                paid_per_second: settings.telegram.paid_per_second,
                chat_per_second: settings.telegram.chat_per_second,
                group_per_minute: settings.telegram.group_per_minute,
            },
            limiter,
            sms_limit: (settings.sms.rate_limit_per_second > 0)
                .then(|| Limit::per_second("sms", settings.sms.rate_limit_per_second, burst)),
            // Keyed by server: deployments that point several configs at one relay share it.
            email_limit: (settings.email.rate_limit_per_second > 0).then(|| {
                Limit::per_second(
                    format!(
                        "smtp:{}:{}",
                        settings.email.smtp_host, settings.email.smtp_port
                    ),
                    settings.email.rate_limit_per_second,
                    burst,
                )
            }),
            tenant_per_second: settings.rate_limits.tenant_per_second,
            burst,
        })
    }

    /// Wait for an in-flight slot of `lane` on `kind`. The caller checks whether the send is
    /// still wanted (cancelled? window closed?) after the wait, then waits for
    /// [`Channels::rate_wait`].
    pub async fn acquire(
        &self,
        kind: ChannelKind,
        lane: Lane,
    ) -> Result<(SemaphorePermit<'_>, &Channel), DeliveryError> {
        let (channel, slots) = match kind {
            ChannelKind::Sms => &*self.sms,
            ChannelKind::Email => &*self.email,
            ChannelKind::Telegram => &*self.telegram,
            ChannelKind::Log => &*self.log,
            ChannelKind::WebPush => &*self.webpush,
        };
        let permit = slots
            .of(lane)
            .acquire()
            .await
            .map_err(|_| DeliveryError::transient("channel is shutting down"))?;
        Ok((permit, channel))
    }

    /// The rate limits one send of `mailing` to `address` passes through, outermost first.
    /// `bot_id` is the Telegram bot it goes out through (unused on other channels).
    pub fn limits_for(&self, mailing: &Mailing, bot_id: &str, address: &str) -> Vec<Limit> {
        let mut limits = Vec::with_capacity(3);
        let tenant_id = mailing.tenant_id;
        // An album is as many messages as it has items, to every limit it passes.
        let content = mailing.telegram.as_ref();
        let messages = content.map_or(1, |c| c.message_count());
        match mailing.channel {
            ChannelKind::Sms => limits.extend(self.sms_limit.clone()),
            ChannelKind::Email => limits.extend(self.email_limit.clone()),
            ChannelKind::Telegram => {
                let paid = content.is_some_and(|c| c.allow_paid_broadcast);
                limits.extend(self.telegram_limits.for_chat(bot_id, address, paid));
            }
            ChannelKind::Log | ChannelKind::WebPush => {}
        }
        if self.tenant_per_second > 0 {
            limits.push(Limit::per_second(
                format!("tenant:{tenant_id}"),
                self.tenant_per_second,
                self.burst,
            ));
        }
        limits
            .into_iter()
            .map(|limit| limit.with_cost(messages))
            .collect()
    }

    /// Wait for every rate limit a send of `mailing` to `address` (through Telegram bot
    /// `bot_id`) passes through.
    pub async fn rate_wait(&self, mailing: &Mailing, bot_id: &str, address: &str) {
        let kind = mailing.channel;
        let limits = self.limits_for(mailing, bot_id, address);
        let waited = self.limiter.until_ready(&limits, mailing.priority).await;
        if waited > Duration::from_millis(1) {
            metrics::counter!("blast_rate_limit_waits_total", "channel" => kind.as_str())
                .increment(1);
            metrics::histogram!("blast_rate_limit_wait_duration_seconds", "channel" => kind.as_str())
                .record(waited.as_secs_f64());
        }
    }

    /// Telegram answered 429: hold back every send of this bot, free and paid, in every
    /// process, for `retry_after`. Other bots and channels go on.
    pub async fn pause_telegram_bot(&self, bot_id: &str, retry_after: Duration) {
        for key in [
            TelegramLimits::bot_key(bot_id),
            TelegramLimits::paid_key(bot_id),
        ] {
            if let Err(e) = self.limiter.hold(&key, retry_after).await {
                tracing::warn!(error = %e, "cannot pause the bot's rate limit");
            }
        }
    }

    /// How many sends `kind` allows in flight at once in one lane.
    pub fn max_in_flight(&self, kind: ChannelKind) -> usize {
        match kind {
            ChannelKind::Sms | ChannelKind::Log => self.max_in_flight,
            ChannelKind::Email => self.email_max_in_flight,
            ChannelKind::Telegram => self.telegram_max_in_flight,
            ChannelKind::WebPush => self.webpush_max_in_flight,
        }
    }
}

/// Telegram's limits, the same for every bot, each bot counted under its own keys.
#[derive(Debug, Clone)]
struct TelegramLimits {
    bot_per_second: u32,
    paid_per_second: u32,
    chat_per_second: u32,
    group_per_minute: u32,
}

impl TelegramLimits {
    fn bot_key(bot_id: &str) -> String {
        format!("tg:bot:{bot_id}")
    }

    /// The key of the bot's paid-broadcast ceiling.
    fn paid_key(bot_id: &str) -> String {
        format!("tg:bot:{bot_id}:paid")
    }

    /// The bot's limit, the chat's, and a group chat's (negative ids are groups). None runs
    /// more than a send or three ahead of its rate: Telegram answers a burst with 429s. The
    /// bot's limit lets a higher lane run two sends further ahead, so priorities hold when the
    /// bot is the bottleneck.
    /// A paid broadcast counts against its own, higher ceiling.
    fn for_chat(&self, bot_id: &str, chat: &str, paid: bool) -> Vec<Limit> {
        let mut bot = if paid {
            Limit::per_second(Self::paid_key(bot_id), self.paid_per_second, Duration::ZERO)
        } else {
            Limit::per_second(Self::bot_key(bot_id), self.bot_per_second, Duration::ZERO)
        };
        // One send of slack, so a sender that wakes a little late does not lose the turn:
        // without it a sustained mailing runs a few per cent under the rate.
        bot.burst = bot.interval;
        let headroom = bot.interval * 2;
        let mut limits = vec![
            bot.with_headroom(headroom),
            Limit::per_second(
                format!("tg:chat:{bot_id}:{chat}"),
                self.chat_per_second,
                Duration::ZERO,
            )
            .with_headroom(Duration::ZERO),
        ];
        if chat.starts_with('-') {
            limits.push(
                Limit::new(
                    format!("tg:group:{bot_id}:{chat}"),
                    self.group_per_minute,
                    Duration::from_secs(60),
                    Duration::ZERO,
                )
                .with_headroom(Duration::ZERO),
            );
        }
        limits
    }
}
