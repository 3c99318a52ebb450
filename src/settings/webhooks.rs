//! `[webhooks]`: how status events are posted to tenants' URLs.

use crate::outbound::OutboundPolicy;
use serde::{Deserialize, Serialize};

/// Status webhooks: how events are posted to tenants' URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Give up waiting for a receiver's answer after this many milliseconds.
    pub timeout_ms: u64,
    /// Attempts per event before it is marked failed.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to `max_delay_ms`.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// How often each worker looks for events to post.
    pub interval_ms: u64,
    /// Accept `http:` URLs on loopback hosts (a local receiver in tests); otherwise `https:`
    /// only.
    pub allow_loopback_http: bool,
    /// Accept URLs whose host is or resolves to a loopback, private, link-local or other
    /// non-public address (checked at registration and again at every connection).
    pub allow_private_addresses: bool,
    /// Webhooks one tenant may register.
    pub max_per_tenant: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            max_per_tenant: 10,
            timeout_ms: 10_000,
            max_attempts: 12,
            base_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
            interval_ms: 500,
            allow_loopback_http: false,
            allow_private_addresses: false,
        }
    }
}

impl WebhookSettings {
    /// What webhook URLs may point at beyond public `https:` addresses.
    pub fn outbound_policy(&self) -> OutboundPolicy {
        OutboundPolicy {
            allow_loopback_http: self.allow_loopback_http,
            allow_private_addresses: self.allow_private_addresses,
            section: "webhooks",
        }
    }
}
