//! `[console]`: the web console `blast up` and `blast serve` serve at `/`.

use super::SettingsError;
use crate::store::SessionLimits;
use serde::{Deserialize, Serialize};

/// The web console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Serve the console at `/`; false leaves only the API.
    pub enabled: bool,
    /// A session ends after this many minutes without a request.
    pub idle_timeout_minutes: u32,
    /// A session ends this many hours after its sign-in, however busy.
    pub absolute_timeout_hours: u32,
    /// The dashboard's activity (today's counts, sends per minute, top errors) is read again
    /// at most this often per tenant and process; 0 reads it on every view.
    pub activity_refresh_secs: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
            activity_refresh_secs: 30,
        }
    }
}

impl ConsoleSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.idle_timeout_minutes == 0 || self.absolute_timeout_hours == 0 {
            return Err(SettingsError::Rule(
                "console.idle_timeout_minutes and console.absolute_timeout_hours must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            idle_ms: i64::from(self.idle_timeout_minutes) * 60_000,
            absolute_ms: i64::from(self.absolute_timeout_hours) * 3_600_000,
        }
    }
}
