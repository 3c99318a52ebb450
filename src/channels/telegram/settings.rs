//! The `[telegram]` section: the Bot API's address, the configured bot's token, Telegram's
//! limits and media sizes.

use super::TelegramChannel;
use crate::channels::{BadSetting, Channel, ChannelSettings, DeliveryError, Shared};
use crate::domain::ChannelKind;
use crate::secret::{Secret, redacted_url};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The media bytes a tenant may keep stored unless its quota says otherwise.
pub const DEFAULT_MEDIA_QUOTA_BYTES: u64 = 1024 * 1024 * 1024;

/// The Telegram Bot API and the limits it enforces. Every limit is counted per bot and, with
/// Redis, across all worker processes together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramSettings {
    /// The bot's token from @BotFather; empty: Telegram mailings wait until one is set.
    pub bot_token: Secret,
    /// The Bot API root (a local Bot API server, or a stub in tests).
    pub api_url: String,
    /// Messages per second per bot, all chats together (Telegram's ~30/s).
    pub bot_per_second: u32,
    /// The ceiling of a mailing with `allow_paid_broadcast` (Telegram allows up to 1000/s,
    /// charging Stars for each message past the free rate).
    pub paid_per_second: u32,
    /// Messages per second to one chat.
    pub chat_per_second: u32,
    /// Messages per minute to one group chat.
    pub group_per_minute: u32,
    /// Give up waiting for one answer after this many milliseconds (the send becomes
    /// `unknown`: Telegram has no idempotency key, so it is never resent blindly).
    pub timeout_ms: u64,
    /// Sends in flight at once, per worker process and priority lane.
    pub max_in_flight: u32,
    /// Largest media file accepted with a mailing, in bytes (the Bot API takes 50 MB).
    pub max_upload_bytes: u64,
    /// The bytes of media files one tenant may keep stored (they are deleted with their
    /// mailing, or when an edit replaces them).
    pub media_quota_bytes: u64,
    /// After a 429 the send waits the `retry_after` Telegram named (on this bot's limit only,
    /// keeping its slot) and tries again, this many times before it goes back to wait its turn.
    pub retries_after_429: u32,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            bot_token: Secret::default(),
            api_url: "https://api.telegram.org".into(),
            bot_per_second: 30,
            paid_per_second: 1000,
            chat_per_second: 1,
            group_per_minute: 20,
            timeout_ms: 30_000,
            max_in_flight: 16,
            max_upload_bytes: 50 * 1024 * 1024,
            media_quota_bytes: DEFAULT_MEDIA_QUOTA_BYTES,
            retries_after_429: 3,
        }
    }
}

impl ChannelSettings for TelegramSettings {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn check(&self) -> Result<(), BadSetting> {
        if self.max_in_flight == 0 {
            return Err(BadSetting::new("telegram.max_in_flight must be at least 1"));
        }
        if self.bot_per_second == 0 || self.chat_per_second == 0 || self.group_per_minute == 0 {
            return Err(BadSetting::new(
                "telegram.bot_per_second, chat_per_second and group_per_minute must be at least 1",
            ));
        }
        if self.paid_per_second == 0 || self.paid_per_second > 1000 {
            return Err(BadSetting::new(
                "telegram.paid_per_second must be 1 to 1000 (Telegram's ceiling)",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(BadSetting::new("telegram.timeout_ms must be at least 1"));
        }
        if !(self.api_url.starts_with("http://") || self.api_url.starts_with("https://")) {
            return Err(BadSetting(format!(
                "telegram.api_url {:?} must be an http:// or https:// URL",
                self.api_url
            )));
        }
        if !self.bot_token.is_empty() && crate::domain::bot_id_of(self.bot_token.expose()).is_none()
        {
            return Err(BadSetting::new(
                "telegram.bot_token does not look like a bot token (digits, a colon, then the secret)",
            ));
        }
        Ok(())
    }

    fn redact(&mut self) {
        self.api_url = redacted_url(&self.api_url);
        self.bot_token.redact();
    }

    fn max_text_chars(&self) -> u32 {
        crate::telegram::MAX_TEXT_CHARS as u32
    }

    /// A mailing goes out through one bot, at that bot's rate.
    fn send_rate_per_second(&self) -> u32 {
        self.bot_per_second
    }

    fn build(&self, _shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError> {
        Ok(Arc::new(TelegramChannel::new(self)?))
    }
}
