//! The `[email]` section: the SMTP server, how the connection is secured, the sender and the
//! server's limits.

use super::EmailChannel;
use crate::channels::{BadSetting, Channel, ChannelSettings, DeliveryError, Shared};
use crate::domain::ChannelKind;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailSecurity {
    /// No TLS at all: only for a relay on localhost or a test server.
    Plain,
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    Starttls,
    /// TLS from the first byte (implicit TLS), usually port 465.
    Tls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    /// The SMTP server that takes blast's email.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls`, `tls` (implicit) or `plain` (local relays and tests only).
    pub security: EmailSecurity,
    /// SMTP AUTH user; empty: no authentication.
    pub username: String,
    pub password: Secret,
    /// The sender, e.g. `News <news@example.com>`.
    pub from: String,
    /// Give up on one message (connect, greet, send) after this many milliseconds.
    pub timeout_ms: u64,
    /// Messages in flight at once, per worker process and priority lane.
    pub max_in_flight: u32,
    /// Idle SMTP connections kept open for reuse, per worker process.
    pub max_connections: u32,
    /// The SMTP server's limit in messages per second; 0 for none. With Redis it holds across
    /// all worker processes together; embedded, per process.
    pub rate_limit_per_second: u32,
    /// Longest text or HTML body accepted, in characters, after templating.
    pub max_body_chars: u32,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            smtp_host: "127.0.0.1".into(),
            smtp_port: 587,
            security: EmailSecurity::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: "blast <blast@localhost>".into(),
            timeout_ms: 30_000,
            max_in_flight: 8,
            max_connections: 8,
            rate_limit_per_second: 0,
            max_body_chars: 200_000,
        }
    }
}

impl ChannelSettings for EmailSettings {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn check(&self) -> Result<(), BadSetting> {
        if self.max_in_flight == 0 {
            return Err(BadSetting::new("email.max_in_flight must be at least 1"));
        }
        if let Err(e) = self.from.parse::<lettre::message::Mailbox>() {
            return Err(BadSetting(format!(
                "email.from {:?} is not an address (e.g. \"News <news@example.com>\"): {e}",
                self.from
            )));
        }
        if self.timeout_ms == 0 {
            return Err(BadSetting::new("email.timeout_ms must be at least 1"));
        }
        Ok(())
    }

    fn redact(&mut self) {
        self.password.redact();
    }

    fn max_text_chars(&self) -> u32 {
        self.max_body_chars
    }

    fn send_rate_per_second(&self) -> u32 {
        self.rate_limit_per_second
    }

    fn build(&self, shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError> {
        Ok(Arc::new(EmailChannel::new(self)?.rate_limited(shared)))
    }
}
