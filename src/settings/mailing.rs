//! `[mailing]`, `[rate_limits]` and `[phones]`: what every mailing and
//! notification is held to, whatever its channel.

use super::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailingSettings {
    /// A mailing created without an end runs this many hours after its start.
    pub default_window_hours: u32,
    /// The same text to the same recipient on the same channel is sent once within this many
    /// seconds, across mailings and re-runs; later copies are `skipped`. 0 turns it off.
    pub dedup_window_secs: u64,
    /// Instructions one render of a message template may execute; a template that needs more
    /// is refused at creation (or fails that message), and the process stays responsive.
    pub template_fuel: u64,
    /// Milliseconds one render may take (it runs off the async runtime).
    pub template_timeout_ms: u64,
}

impl Default for MailingSettings {
    fn default() -> Self {
        MailingSettings {
            default_window_hours: 24,
            dedup_window_secs: 0,
            template_fuel: crate::template::DEFAULT_FUEL,
            template_timeout_ms: crate::template::DEFAULT_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Messages per second one tenant may send over all channels together; 0 for none.
    pub tenant_per_second: u32,
    /// How many messages above the steady rate may go at once, as milliseconds of that rate
    /// (100 = a tenth of a second's worth).
    pub burst_ms: u64,
    /// How much further ahead of a limit's steady rate the high lane may run than the low lane
    /// (medium: half), in milliseconds: while high-priority sends wait, low-priority ones find
    /// the limit full, so a high-priority mailing goes through a low backlog at the full rate.
    pub priority_headroom_ms: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            tenant_per_second: 0,
            burst_ms: 100,
            priority_headroom_ms: 200,
        }
    }
}

/// How phones typed by people are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhoneSettings {
    /// The country (ISO 3166 code) of a number typed without a country code: with `RU`,
    /// `89001234567` and `9001234567` are +7 900 123-45-67.
    pub default_region: String,
}

impl Default for PhoneSettings {
    fn default() -> PhoneSettings {
        PhoneSettings {
            default_region: "RU".into(),
        }
    }
}

impl MailingSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.template_fuel < 1000 || self.template_timeout_ms == 0 {
            return Err(SettingsError::Rule(
                "mailing.template_fuel must be at least 1000 and mailing.template_timeout_ms at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl PhoneSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        crate::domain::parse_region(&self.default_region)
            .map_err(|e| SettingsError::Rule(format!("phones.default_region: {e}")))?;
        Ok(())
    }
}
