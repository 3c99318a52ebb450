//! `[api]`: where the HTTP API listens, who may reach it, its limits and its public URL.

use super::{Secret, SettingsError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Largest request body accepted, in bytes (imports and new mailings have their own limit).
    pub body_limit_bytes: usize,
    /// Largest body of a client import or a new mailing (which may carry a media file), in bytes.
    pub import_body_limit_bytes: usize,
    /// Lifetime of a token from POST /api/v1/auth/token, in seconds.
    pub session_ttl_secs: u64,
    /// A valid bearer token is trusted for this many seconds before the database is asked
    /// again (a disabled user's tokens stop working within it); 0 asks on every request.
    pub token_cache_secs: u64,
    /// Whether POST /api/v1/auth/register creates users.
    pub allow_registration: bool,
    /// Password attempts allowed per user name and client address per minute (a stranger
    /// elsewhere cannot lock the user out).
    pub login_attempts_per_minute: u32,
    /// Proxies (addresses or networks such as `10.0.0.0/8`) whose `X-Forwarded-For` names the
    /// client address that login limits count; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <this>` (Prometheus:
    /// `authorization: {credentials: …}`); empty: /metrics is open to whoever reaches the port.
    pub metrics_token: Secret,
    /// How long an Idempotency-Key is remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// A key whose first request never answered (its process died) is free again after this
    /// many seconds.
    pub idempotency_lease_secs: u64,
    /// Login and registration attempts allowed per client address per minute.
    pub auth_attempts_per_minute_per_ip: u32,
    /// The largest page a list endpoint returns.
    pub max_page_size: u32,
    /// An import reports its first this many row errors (and counts the rest).
    pub import_max_errors: usize,
    /// Imports of one tenant that may run at once; more are answered 429.
    pub max_concurrent_imports_per_tenant: usize,
    /// An import's upload slower than this on average, once it has run for
    /// `body_read_timeout_secs`, is cut off with 408; it holds no database connection
    /// meanwhile.
    pub upload_min_bytes_per_sec: u64,
    /// A request whose body sends nothing for this many seconds is cut off with 408.
    pub body_read_timeout_secs: u64,
    /// A connection that does not finish its request headers within this many seconds is
    /// closed.
    pub header_read_timeout_secs: u64,
    /// Live event streams (`/api/v1/mailings/{id}/events`) one tenant may hold open; more
    /// get 429.
    pub max_event_streams_per_tenant: usize,
    /// Where people reach this API from outside: the base of the links blast puts in
    /// messages (unsubscribe), e.g. `https://blast.example.com`.
    pub public_url: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            import_body_limit_bytes: 64 * 1024 * 1024,
            session_ttl_secs: 3600,
            token_cache_secs: 5,
            allow_registration: false,
            login_attempts_per_minute: 10,
            trusted_proxies: Vec::new(),
            metrics_token: Secret::default(),
            idempotency_ttl_secs: 86_400,
            idempotency_lease_secs: 60,
            auth_attempts_per_minute_per_ip: 60,
            max_page_size: 1000,
            import_max_errors: 1000,
            max_concurrent_imports_per_tenant: 2,
            upload_min_bytes_per_sec: 10_000,
            body_read_timeout_secs: 30,
            header_read_timeout_secs: 30,
            max_event_streams_per_tenant: 16,
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

/// A trusted proxy: an address (one host) or a network.
pub fn parse_proxy(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl ApiSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        for proxy in &self.trusted_proxies {
            if parse_proxy(proxy).is_none() {
                return Err(SettingsError::Rule(format!(
                    "api.trusted_proxies: {proxy:?} is not an IP address or network (10.0.0.0/8)"
                )));
            }
        }
        if self.login_attempts_per_minute == 0
            || self.auth_attempts_per_minute_per_ip == 0
            || self.max_page_size == 0
        {
            return Err(SettingsError::Rule(
                "api.login_attempts_per_minute and api.max_page_size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
