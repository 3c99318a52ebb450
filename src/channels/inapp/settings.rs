//! The `[inapp]` section: the in-app inbox's sends, and the sockets apps hold to it.

use super::InAppChannel;
use crate::channels::{BadSetting, Channel, ChannelSettings, DeliveryError, Shared};
use crate::domain::ChannelKind;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InAppSettings {
    /// Items stored at once, per worker process and priority lane.
    pub max_in_flight: u32,
    /// Longest text accepted, in characters, after templating.
    pub max_text_chars: u32,
    /// How long an inbox token (`POST /api/v1/clients/{id}/inbox-token`) is good for; a socket
    /// opened with it is closed when it runs out, and the app connects again with a new one.
    pub token_ttl_secs: u64,
    /// Sockets one client may hold open at once, per API process; a newer one closes the
    /// oldest (an app that reconnected before its old socket was found dead).
    pub max_sockets_per_client: u32,
    /// A ping goes to every socket this often; one that answered nothing for twice as long
    /// is closed.
    pub heartbeat_secs: u64,
    /// Items waiting to be written to one socket; a socket that falls further behind is
    /// closed (the app catches up from the inbox when it reconnects).
    pub send_buffer: u32,
}

impl Default for InAppSettings {
    fn default() -> Self {
        InAppSettings {
            max_in_flight: 64,
            max_text_chars: 4000,
            token_ttl_secs: 3600,
            max_sockets_per_client: 5,
            heartbeat_secs: 30,
            send_buffer: 256,
        }
    }
}

impl ChannelSettings for InAppSettings {
    fn kind(&self) -> ChannelKind {
        ChannelKind::InApp
    }

    fn check(&self) -> Result<(), BadSetting> {
        let at_least_one = [
            ("max_in_flight", u64::from(self.max_in_flight)),
            ("token_ttl_secs", self.token_ttl_secs),
            (
                "max_sockets_per_client",
                u64::from(self.max_sockets_per_client),
            ),
            ("heartbeat_secs", self.heartbeat_secs),
            ("send_buffer", u64::from(self.send_buffer)),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(BadSetting::new(format!("inapp.{key} must be at least 1")));
        }
        Ok(())
    }

    fn max_text_chars(&self) -> u32 {
        self.max_text_chars
    }

    /// An item is stored once per message, however often it is put.
    fn resend_is_safe(&self) -> bool {
        true
    }

    fn build(&self, shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError> {
        Ok(Arc::new(InAppChannel::new(
            shared.inbox,
            self.max_in_flight as usize,
        )))
    }
}
