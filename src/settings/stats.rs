//! `[stats]`: the daily statistics email: when, in which time zone, to whom.

use super::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsSettings {
    /// When worker processes send the previous day's statistics email: cron with seconds
    /// first (6 fields: sec min hour day month weekday), in `timezone`. Sent once per day
    /// across all workers.
    pub schedule: String,
    /// The IANA time zone of the schedule and of the report's day.
    pub timezone: String,
    /// Who gets the daily email; empty: no daily email.
    pub recipients: Vec<String>,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            schedule: "0 0 7 * * *".into(),
            timezone: "UTC".into(),
            recipients: Vec::new(),
        }
    }
}

impl StatsSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.schedule.parse::<cron::Schedule>().is_err() {
            return Err(SettingsError::Rule(format!(
                "stats.schedule {:?} is not a cron expression with seconds (e.g. \"0 0 7 * * *\")",
                self.schedule
            )));
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(SettingsError::Rule(format!(
                "stats.timezone {:?} is not an IANA time zone (e.g. Europe/Moscow)",
                self.timezone
            )));
        }
        for address in &self.recipients {
            crate::domain::parse_email(address)
                .map_err(|e| SettingsError::Rule(format!("stats.recipients: {e}")))?;
        }
        Ok(())
    }
}
