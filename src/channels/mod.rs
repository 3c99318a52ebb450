//! Channels: the adapters that hand one rendered message to a provider.
//!
//! Every adapter answers with `Ok` or a [`DeliveryError`], which is either `Permanent` (do not
//! try again) or `Transient` (try again later, perhaps after a delay the provider named). That
//! one split drives all retry policy in the worker.

mod log;
mod sms;

pub use log::LogChannel;
pub use sms::SmsChannel;

use crate::domain::ChannelKind;
use crate::settings::Settings;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
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
    pub phone: &'a str,
    pub text: &'a str,
}

/// A channel adapter behind an in-flight limit.
#[derive(Debug)]
pub enum Channel {
    Sms(SmsChannel),
    Log(LogChannel),
}

impl Channel {
    pub async fn send(&self, msg: &Outgoing<'_>) -> Result<(), DeliveryError> {
        match self {
            Channel::Sms(c) => c.send(msg).await,
            Channel::Log(c) => c.send(msg).await,
        }
    }
}

/// Every channel this process can send on, each with its own in-flight limit.
#[derive(Debug, Clone)]
pub struct Channels {
    sms: Arc<(Channel, Semaphore)>,
    log: Arc<(Channel, Semaphore)>,
    max_in_flight: usize,
    /// The SMS provider's rate limit, when one is configured.
    sms_rate: Option<Arc<DefaultDirectRateLimiter>>,
}

impl Channels {
    pub fn from_settings(settings: &Settings) -> Result<Channels, DeliveryError> {
        Ok(Channels {
            sms: Arc::new((
                Channel::Sms(SmsChannel::new(&settings.sms)?),
                Semaphore::new(settings.sms.max_in_flight as usize),
            )),
            log: Arc::new((
                Channel::Log(LogChannel::new(&settings.log_channel.path)),
                Semaphore::new(settings.sms.max_in_flight as usize),
            )),
            max_in_flight: settings.sms.max_in_flight as usize,
            sms_rate: NonZeroU32::new(settings.sms.rate_limit_per_second)
                .map(|rate| Arc::new(RateLimiter::direct(Quota::per_second(rate)))),
        })
    }

    /// Channels whose sends carry no idempotency key: a send cut off mid-flight on them must
    /// not be repeated blindly. The log channel appends a line per send, so it is one.
    pub fn unsafe_to_resend() -> &'static [&'static str] {
        &["log"]
    }

    /// Whether a send on `kind` may be repeated after a crash without a duplicate reaching the
    /// recipient (the SMS provider deduplicates by message id).
    pub fn resend_is_safe(kind: ChannelKind) -> bool {
        !Channels::unsafe_to_resend().contains(&kind.as_str())
    }

    /// Wait for an in-flight slot on `kind`. The caller checks whether the send is still
    /// wanted (cancelled? window closed?) after the wait, then waits for [`Channels::rate_wait`].
    pub async fn acquire(
        &self,
        kind: ChannelKind,
    ) -> Result<(SemaphorePermit<'_>, &Channel), DeliveryError> {
        let (channel, slots) = match kind {
            ChannelKind::Sms => &*self.sms,
            ChannelKind::Log => &*self.log,
        };
        let permit = slots
            .acquire()
            .await
            .map_err(|_| DeliveryError::transient("channel is shutting down"))?;
        Ok((permit, channel))
    }

    /// Wait for the provider's rate limit on `kind`, if it has one.
    pub async fn rate_wait(&self, kind: ChannelKind) {
        if let (ChannelKind::Sms, Some(rate)) = (kind, &self.sms_rate)
            && rate.check().is_err()
        {
            let waited = std::time::Instant::now();
            rate.until_ready().await;
            metrics::counter!("blast_rate_limit_waits_total", "channel" => kind.as_str())
                .increment(1);
            metrics::histogram!("blast_rate_limit_wait_duration_seconds", "channel" => kind.as_str())
                .record(waited.elapsed().as_secs_f64());
        }
    }

    /// How many sends `kind` allows in flight at once.
    pub fn max_in_flight(&self, kind: ChannelKind) -> usize {
        match kind {
            ChannelKind::Sms | ChannelKind::Log => self.max_in_flight,
        }
    }
}
