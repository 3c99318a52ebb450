//! Channels: each a unit in a folder of its own (`sms/`, `email/`, `telegram/`, `webpush/`,
//! `inapp/`, `log/`) that hands one rendered message to a provider, and this registry that holds them.
//!
//! A unit is two small interfaces: [`ChannelSettings`], its section of the configuration
//! (defaults, its own rules, secrets masked, how fast its provider goes, and how to build the
//! channel), and [`Channel`], the built channel (where a recipient is reached, its in-flight
//! slots and rate limits, and `send`). [`audience`] says, for the store, which clients a
//! channel can reach. ARCHITECTURE.md ("Adding a channel") lists what a new one touches.
//!
//! Every send answers with `Ok` or a [`DeliveryError`], which is either `Permanent` (do not
//! try again) or `Transient` (try again later, perhaps after a delay the provider named). That
//! split drives all retry policy in the worker. Two refinements of "transient" say whose
//! problem it is: `Unavailable` (the channel cannot send at all: the message waits without
//! spending an attempt) and `Indeterminate` (it may have been delivered: a channel that cannot
//! resend safely records it as `unknown`). Telegram adds three more that the worker acts on:
//! `RateLimited` (pause that bot's limit and try again), `Moved` (the chat has a new id: update
//! the client and resend) and `Blocked` (the recipient is gone for good: mark the client).

pub mod email;
pub mod inapp;
pub mod log;
pub mod sms;
pub mod telegram;
pub mod webpush;

pub use crate::vapid::{VapidError, VapidKey};
pub use email::{EmailChannel, EmailParts};
pub use inapp::{InAppChannel, InboxParts};
pub use log::LogChannel;
pub use sms::SmsChannel;
pub use telegram::{
    MediaRef, TelegramBot, TelegramChannel, TelegramParts, bot_id_of, connect_bot, direct_media,
};
pub use webpush::{MAX_PUSH_TEXT_CHARS, PushSubscription, VapidKeys, WebPushChannel};

use crate::domain::{ChannelKind, Client};
use crate::ids::TenantId;
use crate::jobs::Lane;
use crate::limits::{Limit, Limiter};
use crate::telegram::TelegramContent;
use futures::future::BoxFuture;
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
    pub message_id: crate::ids::MessageId,
    pub mailing_id: crate::ids::MailingId,
    /// Where it goes on its channel: a phone number, an email address, a chat.
    pub address: &'a str,
    /// The text (an email's plain-text body, a caption).
    pub text: &'a str,
    /// What it carries beyond the text.
    pub parts: Parts<'a>,
}

/// What a message carries beyond its text, by the kind of message it is.
#[derive(Debug, Clone)]
pub enum Parts<'a> {
    /// The text alone: an SMS, a line of the log file.
    Text,
    /// Subject, HTML and unsubscribe link.
    Email(EmailParts<'a>),
    /// Kind, media, options, and the bot it goes out through.
    Telegram(TelegramParts<'a>),
    /// The client's browsers and the JSON payload they are pushed.
    Push(PushParts<'a>),
    /// Whose inbox the item goes to, and its title.
    Inbox(InboxParts<'a>),
}

/// A web push: every browser subscription of the client, and the payload (JSON) each is
/// pushed.
#[derive(Debug, Clone, Copy)]
pub struct PushParts<'a> {
    pub subscriptions: &'a [PushSubscription],
    pub payload: &'a [u8],
}

/// What a channel learned from its provider that outlives the message: the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A push service called one of the client's browser subscriptions gone: delete it.
    SubscriptionGone { id: i64 },
    /// The recipient blocked the configured bot (whose /start gave us their chat): later
    /// mailings skip them on Telegram.
    BlockedTheBot,
    /// The recipient's chat has a new id (a group that became a supergroup): the client
    /// follows it, and the message is sent there.
    ChatMoved { from: i64, to: i64 },
}

/// One send: its result, and the events it raised on the way (on success or failure).
#[derive(Debug)]
pub struct Attempt {
    pub result: Result<Receipt, DeliveryError>,
    pub events: Vec<ChannelEvent>,
}

impl From<Result<Receipt, DeliveryError>> for Attempt {
    fn from(result: Result<Receipt, DeliveryError>) -> Attempt {
        Attempt {
            result,
            events: Vec::new(),
        }
    }
}

/// Why a recipient is not reached on a channel (left it, or never had an address there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReachable(pub String);

impl NotReachable {
    pub fn new(reason: impl Into<String>) -> NotReachable {
        NotReachable(reason.into())
    }
}

/// One recipient as a send sees them: the client, and whether they left a channel since the
/// mailing was made.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub client: &'a Client,
    /// The client used their unsubscribe link.
    pub email_opted_out: bool,
    /// Telegram told us the client blocked the bot.
    pub telegram_blocked: bool,
}

/// What the rate limits of one send depend on.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub tenant_id: TenantId,
    /// The Telegram bot it goes out through (unused on other channels).
    pub bot_id: &'a str,
    /// Where it goes on its channel.
    pub address: &'a str,
    /// A Telegram mailing's content (an album is as many messages as it has items).
    pub telegram: Option<&'a TelegramContent>,
}

impl Route<'_> {
    /// How many messages the send is, to every limit it passes.
    fn messages(&self) -> u32 {
        self.telegram.map_or(1, |c| c.message_count())
    }
}

/// A channel's section of the configuration broke one of its rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSetting(pub String);

impl BadSetting {
    pub fn new(rule: impl Into<String>) -> BadSetting {
        BadSetting(rule.into())
    }
}

/// What every channel is built with: what the sections share, and what the process that
/// builds them holds.
#[derive(Debug, Clone)]
pub struct Shared {
    /// `rate_limits.burst_ms`: how far a provider's limit may run ahead of its rate.
    pub burst: Duration,
    /// Where the `inapp` channel puts items (the worker's store and sockets).
    pub inbox: Arc<dyn inapp::Inbox>,
}

/// A channel's section of the configuration (`[sms]`, `[email]`, …): deserialized with its
/// defaults by `settings`, which calls these for every channel it has.
pub trait ChannelSettings: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> ChannelKind;
    /// Its own rules, checked when the configuration loads.
    fn check(&self) -> Result<(), BadSetting> {
        Ok(())
    }
    /// Replace its secrets, and the passwords in its URLs, by `***` for printing.
    fn redact(&mut self) {}
    /// The longest text (after templating) a message on it may have, in characters.
    fn max_text_chars(&self) -> u32;
    /// The messages per second its provider is held to (0: no configured limit), for the time
    /// a mailing is expected to take.
    fn send_rate_per_second(&self) -> u32 {
        0
    }
    /// Whether a send cut off after the request may have reached the provider can go out
    /// again without the recipient getting it twice. Elsewhere such a message is recorded
    /// `unknown` and never sent again.
    fn resend_is_safe(&self) -> bool {
        false
    }
    /// The channel, ready to send. Runs inside a tokio runtime (the SMTP pool starts a task).
    fn build(&self, shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError>;
}

/// A channel, built from its settings.
pub trait Channel: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> ChannelKind;
    /// Sends in flight at once, per process and priority lane.
    fn max_in_flight(&self) -> usize;
    /// Where `to` is reached on this channel, or why they are not (any more).
    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable>;
    /// The provider's rate limits one send passes through, outermost first (the registry adds
    /// the tenant's).
    fn limits(&self, _route: &Route<'_>) -> Vec<Limit> {
        Vec::new()
    }
    /// The limiter keys to hold when the provider itself said "too many" for `sender` (a 429
    /// from Telegram for one bot): every process then waits out the provider's delay.
    fn pause_keys(&self, _sender: &str) -> Vec<String> {
        Vec::new()
    }
    /// Hand `msg` to the provider.
    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt>;
}

/// What the store, the use cases and the worker know of a channel without building it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Which clients of a tenant it can reach, as an SQL condition over `clients c`.
    pub audience: &'static str,
    /// Whether a notification may go out on it.
    pub notifies: bool,
    /// The subject line its messages have: an email's subject, a web push's title.
    pub subject: Subject,
    /// Whether a mailing may carry an HTML body beside its text (an email's HTML part).
    pub html_body: bool,
    /// Whether its messages are Telegram content (a kind, media, buttons) beside the text; such
    /// content checks its own text, which a medium may leave empty as its caption.
    pub telegram_content: bool,
    /// Whether the worker gives each message the recipient's own unsubscribe link: a template
    /// variable (`unsubscribe_url`) and the `List-Unsubscribe` header.
    pub unsubscribe_link: bool,
    /// Whether the worker reads the client's browser subscriptions at send time (a client with
    /// none left is skipped) and makes a JSON payload for them.
    pub push_subscriptions: bool,
}

/// Whether a channel's messages have a subject line, and how long it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// No subject: a mailing with one is refused.
    None,
    /// One line of at most `max_chars` that a mailing may leave out; `name` is what the
    /// channel calls it in an error.
    Optional {
        name: &'static str,
        max_chars: usize,
    },
    /// One line of at most `max_chars` that every mailing must have.
    Required {
        name: &'static str,
        max_chars: usize,
    },
}

impl Subject {
    /// The longest subject, 0 for a channel without one.
    pub fn max_chars(self) -> usize {
        match self {
            Subject::None => 0,
            Subject::Optional { max_chars, .. } | Subject::Required { max_chars, .. } => max_chars,
        }
    }

    pub fn exists(self) -> bool {
        self != Subject::None
    }
}

/// The profile of `channel`: each channel's folder gives its own.
pub fn profile(channel: ChannelKind) -> Profile {
    match channel {
        ChannelKind::Sms => sms::PROFILE,
        ChannelKind::Email => email::PROFILE,
        ChannelKind::Telegram => telegram::PROFILE,
        ChannelKind::Log => log::PROFILE,
        ChannelKind::WebPush => webpush::PROFILE,
        ChannelKind::InApp => inapp::PROFILE,
    }
}

/// Which clients of a tenant `channel` can reach, as an SQL condition over `clients c`: the
/// one definition behind a mailing's audience and a notification's choice of channel.
pub fn audience(channel: ChannelKind) -> &'static str {
    profile(channel).audience
}

/// Which channels may send a message again when its send was cut off after the request may
/// have reached the provider (a worker killed mid-send, a timeout, a reset, a garbled answer):
/// those whose settings say [`ChannelSettings::resend_is_safe`]. Elsewhere such a message is
/// recorded `unknown` and never sent again: the log channel appends a line per send, and an
/// SMTP server, the Bot API and a push service take the same message twice as two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendPolicy {
    /// One flag per channel, in [`ChannelKind::ALL`] order.
    safe: [bool; ChannelKind::ALL.len()],
}

impl ResendPolicy {
    pub fn new<'a>(sections: impl IntoIterator<Item = &'a dyn ChannelSettings>) -> ResendPolicy {
        let mut safe = [false; ChannelKind::ALL.len()];
        for section in sections {
            if let Some(at) = ChannelKind::ALL.iter().position(|k| *k == section.kind()) {
                safe[at] = section.resend_is_safe();
            }
        }
        ResendPolicy { safe }
    }

    /// Whether a send on `kind` may be repeated without a duplicate reaching the recipient.
    pub fn is_safe(self, kind: ChannelKind) -> bool {
        ChannelKind::ALL
            .iter()
            .position(|k| *k == kind)
            .is_some_and(|at| self.safe[at])
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

/// A built channel and its in-flight slots.
#[derive(Debug)]
struct Registered {
    channel: Arc<dyn Channel>,
    slots: LaneSlots,
}

/// The registry: every channel this process can send on, each with its own in-flight limit
/// per lane, and the rate limits every send passes through.
#[derive(Debug, Clone)]
pub struct Channels {
    registered: Arc<[Registered]>,
    /// Where rate limits are counted: this process, or Redis for all of them.
    limiter: Limiter,
    /// Sends per second per tenant, all channels together; 0: none.
    tenant_per_second: u32,
    burst: Duration,
}

impl Channels {
    /// The registry of `channels`, rate-limited through `limiter`, with at most
    /// `tenant_per_second` sends per tenant (0: no such limit).
    pub fn new(
        channels: Vec<Arc<dyn Channel>>,
        limiter: Limiter,
        tenant_per_second: u32,
        shared: &Shared,
    ) -> Channels {
        Channels {
            registered: channels
                .into_iter()
                .map(|channel| Registered {
                    slots: LaneSlots::new(channel.max_in_flight()),
                    channel,
                })
                .collect(),
            limiter,
            tenant_per_second,
            burst: shared.burst,
        }
    }

    fn registered(&self, kind: ChannelKind) -> Result<&Registered, DeliveryError> {
        self.registered
            .iter()
            .find(|r| r.channel.kind() == kind)
            .ok_or_else(|| DeliveryError::Unavailable(format!("no {kind} channel is built")))
    }

    /// The channel of `kind`.
    pub fn get(&self, kind: ChannelKind) -> Result<&dyn Channel, DeliveryError> {
        Ok(&*self.registered(kind)?.channel)
    }

    /// Wait for an in-flight slot of `lane` on `kind`. The caller checks whether the send is
    /// still wanted (cancelled? window closed?) after the wait, then waits for
    /// [`Channels::rate_wait`].
    pub async fn acquire(
        &self,
        kind: ChannelKind,
        lane: Lane,
    ) -> Result<(SemaphorePermit<'_>, &dyn Channel), DeliveryError> {
        let registered = self.registered(kind)?;
        let permit = registered
            .slots
            .of(lane)
            .acquire()
            .await
            .map_err(|_| DeliveryError::transient("channel is shutting down"))?;
        Ok((permit, &*registered.channel))
    }

    /// The rate limits one send on `kind` passes through, outermost first.
    pub fn limits_for(&self, kind: ChannelKind, route: &Route<'_>) -> Vec<Limit> {
        let mut limits = self
            .registered(kind)
            .map(|r| r.channel.limits(route))
            .unwrap_or_default();
        if self.tenant_per_second > 0 {
            limits.push(Limit::per_second(
                format!("tenant:{}", route.tenant_id),
                self.tenant_per_second,
                self.burst,
            ));
        }
        let messages = route.messages();
        limits
            .into_iter()
            .map(|limit| limit.with_cost(messages))
            .collect()
    }

    /// Wait for every rate limit a send on `kind` along `route` passes through, as a send of
    /// `priority`.
    pub async fn rate_wait(&self, kind: ChannelKind, priority: Lane, route: &Route<'_>) {
        let limits = self.limits_for(kind, route);
        let waited = self.limiter.until_ready(&limits, priority).await;
        if waited > Duration::from_millis(1) {
            metrics::counter!("blast_rate_limit_waits_total", "channel" => kind.as_str())
                .increment(1);
            metrics::histogram!("blast_rate_limit_wait_duration_seconds", "channel" => kind.as_str())
                .record(waited.as_secs_f64());
        }
    }

    /// The provider answered "too many" for `sender` on `kind` (Telegram's 429 for one bot):
    /// hold back every send through it, in every process, for `retry_after`. Other senders
    /// and channels go on.
    pub async fn pause(&self, kind: ChannelKind, sender: &str, retry_after: Duration) {
        let Ok(registered) = self.registered(kind) else {
            return;
        };
        for key in registered.channel.pause_keys(sender) {
            if let Err(e) = self.limiter.hold(&key, retry_after).await {
                tracing::warn!(error = %e, "cannot pause the provider's rate limit");
            }
        }
    }

    /// How many sends `kind` allows in flight at once in one lane.
    pub fn max_in_flight(&self, kind: ChannelKind) -> usize {
        self.registered(kind)
            .map_or(1, |r| r.channel.max_in_flight())
    }
}
