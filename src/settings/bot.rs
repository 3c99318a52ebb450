//! `[bot]`: the subscriber bot, by polling or by webhook.

use super::{Secret, SettingsError};
use serde::{Deserialize, Serialize};

/// How the subscriber bot hears from Telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotMode {
    /// `getUpdates` long polling: works behind NAT, one process of the cluster at a time.
    Polling,
    /// Telegram POSTs each update to `bot.webhook_url`, served on `bot.webhook_listen`.
    Webhook,
}

/// The subscriber bot (`blast bot`, or inside `blast worker` with `in_worker`): /start makes or
/// re-activates a client of `tenant` for the chat (tagged with the deep link's payload), /stop
/// opts it out of Telegram mailings. It speaks through `telegram.bot_token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotSettings {
    /// The user (tenant) whose clients the bot's subscribers become; empty: no bot.
    pub tenant: String,
    /// The tags a deep link (`/start TAG`) may give a subscriber. Anyone can type `/start
    /// vip`, so only these are taken; another payload subscribes the client untagged.
    pub tags: Vec<String>,
    pub mode: BotMode,
    /// Also run the bot inside every `blast worker`; with polling, one of them polls at a time.
    pub in_worker: bool,
    /// How long one `getUpdates` waits for an update, in seconds.
    pub poll_timeout_secs: u32,
    /// The public HTTPS URL Telegram POSTs updates to (webhook mode).
    pub webhook_url: String,
    /// Where the webhook listener binds (webhook mode), e.g. behind a reverse proxy.
    pub webhook_listen: String,
    /// The secret Telegram sends back in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z
    /// 0-9 _ -); updates without it are refused.
    pub webhook_secret: Secret,
    /// The answer to /start.
    pub welcome_text: String,
    /// The answer to /stop.
    pub goodbye_text: String,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            tenant: String::new(),
            tags: Vec::new(),
            mode: BotMode::Polling,
            in_worker: false,
            poll_timeout_secs: 25,
            webhook_url: String::new(),
            webhook_listen: "127.0.0.1:8443".into(),
            webhook_secret: Secret::default(),
            welcome_text: "You are subscribed. Send /stop to unsubscribe.".into(),
            goodbye_text: "You are unsubscribed. Send /start to subscribe again.".into(),
        }
    }
}

impl BotSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.poll_timeout_secs == 0 || self.poll_timeout_secs > 50 {
            return Err(SettingsError::Rule(
                "bot.poll_timeout_secs must be 1 to 50".into(),
            ));
        }
        let secret = self.webhook_secret.expose();
        if secret.len() > 256
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(SettingsError::Rule(
                "bot.webhook_secret must be at most 256 of A-Z, a-z, 0-9, _ and -".into(),
            ));
        }
        if let Some(bad) = self
            .tags
            .iter()
            .find(|t| crate::domain::parse_tag(t).is_err())
        {
            return Err(SettingsError::Rule(format!(
                "bot.tags: {bad:?} is not a tag name (1-64 letters, digits, '-', '_', '.' or ':')"
            )));
        }
        if self.mode == BotMode::Webhook && !self.tenant.is_empty() {
            if !self.webhook_url.starts_with("https://") || secret.is_empty() {
                return Err(SettingsError::Rule(
                    "bot.mode = \"webhook\" needs bot.webhook_url (the public https:// URL Telegram posts to) and bot.webhook_secret"
                        .into(),
                ));
            }
            if self.in_worker {
                return Err(SettingsError::Rule(
                    "bot.in_worker runs the bot by polling; with bot.mode = \"webhook\" run `blast bot` on its own"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Its secret and the password of its URL masked, for printing.
    pub(super) fn redact(&mut self) {
        self.webhook_url = super::redacted_url(&self.webhook_url);
        self.webhook_secret.redact();
    }
}
