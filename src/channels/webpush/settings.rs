//! The `[webpush]` section: the VAPID key and subject, the push TTL, and what endpoints may
//! be.

use super::WebPushChannel;
use crate::channels::{BadSetting, Channel, ChannelSettings, DeliveryError, Shared};
use crate::domain::{ChannelKind, MAX_PUSH_TEXT_CHARS};
use crate::outbound::OutboundPolicy;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebPushSettings {
    /// The VAPID private key, base64url (`blast config vapid-keys` makes a pair); empty: web
    /// push messages wait until one is set.
    pub vapid_private_key: Secret,
    /// Who push services may contact about our pushes: `mailto:…` or an `https:` URL.
    pub subject: String,
    /// How long a push service keeps an undelivered message (its `TTL` header), in seconds;
    /// at most 86400, because the VAPID signature is valid as long.
    pub ttl_secs: u64,
    /// Give up waiting for one push service's answer after this many milliseconds.
    pub timeout_ms: u64,
    /// Sends in flight at once, per worker process and priority lane.
    pub max_in_flight: u32,
    /// Accept `http:` endpoints on loopback hosts (a local push service in tests); real push
    /// services are `https:` only.
    pub allow_loopback_http: bool,
    /// Accept endpoints whose host is or resolves to a loopback, private, link-local or other
    /// non-public address (checked at subscription and again at every connection).
    pub allow_private_addresses: bool,
}

impl Default for WebPushSettings {
    fn default() -> Self {
        WebPushSettings {
            vapid_private_key: Secret::default(),
            subject: "mailto:postmaster@localhost".into(),
            ttl_secs: 12 * 3600,
            timeout_ms: 10_000,
            max_in_flight: 32,
            allow_loopback_http: false,
            allow_private_addresses: false,
        }
    }
}

impl WebPushSettings {
    /// What push endpoints may point at beyond public `https:` addresses.
    pub fn outbound_policy(&self) -> OutboundPolicy {
        OutboundPolicy {
            allow_loopback_http: self.allow_loopback_http,
            allow_private_addresses: self.allow_private_addresses,
            section: "webpush",
        }
    }
}

impl ChannelSettings for WebPushSettings {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WebPush
    }

    fn check(&self) -> Result<(), BadSetting> {
        let vapid = self.vapid_private_key.expose();
        if !vapid.is_empty() {
            crate::vapid::VapidKey::from_base64url(vapid).map_err(|e| BadSetting(e.to_string()))?;
        }
        // web-push-native signs the VAPID token for the TTL too, and RFC 8292 refuses one
        // valid for more than 24 hours.
        if self.ttl_secs == 0 || self.ttl_secs > 86_400 {
            return Err(BadSetting::new(
                "webpush.ttl_secs must be 1 to 86400 (the VAPID token lives as long)",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(BadSetting::new("webpush.max_in_flight must be at least 1"));
        }
        Ok(())
    }

    fn redact(&mut self) {
        self.vapid_private_key.redact();
    }

    /// A push payload is at most 4 KB once encrypted; the text is its body.
    fn max_text_chars(&self) -> u32 {
        MAX_PUSH_TEXT_CHARS
    }

    fn build(&self, _shared: Shared) -> Result<Arc<dyn Channel>, DeliveryError> {
        Ok(Arc::new(WebPushChannel::new(self)?))
    }
}
