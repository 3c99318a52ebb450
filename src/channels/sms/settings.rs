//! The `[sms]` section: the provider's address and token, its limits, and whether it
//! deduplicates by message id.

use super::SmsChannel;
use crate::channels::{BadSetting, Channel, ChannelSettings, DeliveryError, Shared};
use crate::domain::ChannelKind;
use crate::secret::{Secret, redacted_url};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSettings {
    /// The provider's base URL; messages go to `{base_url}/v1/send/{id}`.
    pub base_url: String,
    /// The provider's JWT, sent as `Authorization: Bearer ...`.
    pub token: Secret,
    /// Give up on one request after this many milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight at once, per worker process and priority lane (each lane has its own
    /// slots, so a high-priority send never waits for low-priority ones to free a slot).
    pub max_in_flight: u32,
    /// Longest text accepted, in characters, after templating.
    pub max_text_chars: u32,
    /// The provider's limit in messages per second; 0 for none. With Redis it holds across
    /// all worker processes together; embedded, per process.
    pub rate_limit_per_second: u32,
    /// Whether a message the provider may have received but never acknowledged (a worker
    /// killed mid-send, a timeout, a reset or a garbled answer after the request went out) is
    /// sent again under its id. True for a provider that deduplicates by message id; false
    /// records it `unknown` instead, never sending it twice.
    pub resend_unacknowledged: bool,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            base_url: "http://127.0.0.1:8081".into(),
            token: Secret::default(),
            timeout_ms: 10_000,
            max_in_flight: 64,
            max_text_chars: 1000,
            rate_limit_per_second: 0,
            resend_unacknowledged: true,
        }
    }
}

impl ChannelSettings for SmsSettings {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn check(&self) -> Result<(), BadSetting> {
        if self.max_in_flight == 0 {
            return Err(BadSetting::new("sms.max_in_flight must be at least 1"));
        }
        Ok(())
    }

    fn redact(&mut self) {
        self.base_url = redacted_url(&self.base_url);
        self.token.redact();
    }

    fn max_text_chars(&self) -> u32 {
        self.max_text_chars
    }

    fn send_rate_per_second(&self) -> u32 {
        self.rate_limit_per_second
    }

    fn resend_is_safe(&self) -> bool {
        self.resend_unacknowledged
    }

    fn build(&self, shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError> {
        Ok(Arc::new(SmsChannel::new(self, shared)?))
    }
}
