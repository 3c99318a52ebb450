//! The `[log_channel]` section: the file the `log` channel appends to, and its limits (the
//! same defaults as SMS, which it stands in for).

use super::LogChannel;
use crate::channels::{BadSetting, Channel, ChannelSettings, DeliveryError, Shared};
use crate::domain::ChannelKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogChannelSettings {
    /// The JSON-lines file the `log` channel appends deliveries to.
    pub path: PathBuf,
    /// Lines in flight at once, per worker process and priority lane.
    pub max_in_flight: u32,
    /// Longest text accepted, in characters, after templating.
    pub max_text_chars: u32,
}

impl Default for LogChannelSettings {
    fn default() -> Self {
        LogChannelSettings {
            path: PathBuf::from("deliveries.jsonl"),
            max_in_flight: 64,
            max_text_chars: 1000,
        }
    }
}

impl ChannelSettings for LogChannelSettings {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Log
    }

    fn check(&self) -> Result<(), BadSetting> {
        if self.max_in_flight == 0 {
            return Err(BadSetting::new(
                "log_channel.max_in_flight must be at least 1",
            ));
        }
        Ok(())
    }

    fn max_text_chars(&self) -> u32 {
        self.max_text_chars
    }

    fn build(&self, _shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError> {
        Ok(Arc::new(LogChannel::new(
            &self.path,
            self.max_in_flight as usize,
        )))
    }
}
