//! Configuration: defaults, then config.toml, then `BLAST_*` environment variables, then flags.
//!
//! Nested keys use a double underscore in the environment: `BLAST_SMS__TOKEN` sets `sms.token`.
//! The reference `config.toml` at the repository root lists every key with its default; a test
//! keeps the two equal.

pub use crate::channels::email::{EmailSecurity, EmailSettings};
pub use crate::channels::log::LogChannelSettings;
pub use crate::channels::sms::SmsSettings;
pub use crate::channels::telegram::TelegramSettings;
pub use crate::channels::webpush::WebPushSettings;
use crate::channels::{ChannelSettings, Channels, DeliveryError, ResendPolicy, Shared};
use crate::domain::ChannelKind;
use crate::outbound::OutboundPolicy;
pub use crate::secret::{Secret, redacted_url};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `sqlite://FILE` for the embedded profile, `postgres://USER@HOST/DB` for production.
    pub database_url: String,
    /// `text` for people, `json` for log collectors.
    pub log_format: LogFormat,
    pub api: ApiSettings,
    pub worker: WorkerSettings,
    pub retry: RetrySettings,
    pub mailing: MailingSettings,
    pub sms: SmsSettings,
    pub log_channel: LogChannelSettings,
    pub redis: RedisSettings,
    pub rate_limits: RateLimitSettings,
    pub email: EmailSettings,
    pub telegram: TelegramSettings,
    pub bot: BotSettings,
    pub stats: StatsSettings,
    pub webpush: WebPushSettings,
    pub notifications: NotificationSettings,
    pub webhooks: WebhookSettings,
    pub pool: PoolSettings,
    pub secrets: SecretsSettings,
    pub phones: PhoneSettings,
    /// `BLAST_*` environment variables that name no setting (a script's own `BLAST_BIN`):
    /// left out of the configuration, to be warned about once logging runs.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

/// The key tenants' secrets (registered bots' tokens, webhook secrets) are sealed with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// 32 bytes in base64 (`blast config secret-key`); empty: stored unsealed.
    pub key: Secret,
    /// Keys that sealed values before `key`: they still open them until `blast secrets
    /// rotate` has sealed everything under `key`.
    pub previous_keys: Vec<Secret>,
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

/// Database connections each process keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// The main pool on PostgreSQL.
    pub postgres_connections: u32,
    /// The main pool on SQLite.
    pub sqlite_connections: u32,
    /// PostgreSQL connections for client imports (COPY), apart from the main pool.
    pub import_connections: u32,
    /// Seconds a request waits for a connection before it fails.
    pub acquire_timeout_secs: u64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        let sizes = crate::store::PoolSizes::default();
        PoolSettings {
            postgres_connections: sizes.postgres,
            sqlite_connections: sizes.sqlite,
            import_connections: sizes.imports,
            acquire_timeout_secs: sizes.acquire_timeout.as_secs(),
        }
    }
}

impl PoolSettings {
    pub fn sizes(&self) -> crate::store::PoolSizes {
        crate::store::PoolSizes {
            postgres: self.postgres_connections,
            sqlite: self.sqlite_connections,
            imports: self.import_connections,
            acquire_timeout: Duration::from_secs(self.acquire_timeout_secs.max(1)),
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

/// Notifications: one event to one client over its preferred channels in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// A notification not delivered on any channel this long after it was made expires.
    pub expire_after_secs: u64,
    /// The channel order of a client with no preferences of its own.
    pub default_channels: Vec<ChannelKind>,
    /// The longest coalescing window a notification may ask for, in minutes.
    pub max_coalesce_minutes: u32,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            expire_after_secs: 24 * 3600,
            default_channels: vec![
                ChannelKind::WebPush,
                ChannelKind::Telegram,
                ChannelKind::Email,
            ],
            max_coalesce_minutes: 24 * 60,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB` for the production profile: queues, deduplication keys and rate
    /// limits shared by every process. Empty: embedded (queues in the SQLite file, limits per
    /// process).
    pub url: Secret,
    /// Every key blast writes starts with this, so deployments can share a server.
    pub key_prefix: String,
    /// Give up on one Redis reply after this many milliseconds (the client's 500 ms default
    /// fails pushes under load).
    pub response_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: Secret::default(),
            key_prefix: "blast".into(),
            response_timeout_ms: 5000,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Message rows per queue job.
    pub batch_size: u32,
    /// At most this many jobs wait in each lane's queue; the pump tops it up to this.
    pub queue_watermark: u32,
    /// Jobs one worker process runs at once per lane.
    pub jobs_in_flight: u32,
    /// How often the pump looks for due rows, in milliseconds.
    pub pump_interval_ms: u64,
    /// How often the scheduler starts and finishes mailings, in milliseconds.
    pub schedule_interval_ms: u64,
    /// How often the reconciler looks for lost work, in milliseconds.
    pub reconcile_interval_ms: u64,
    /// A row queued longer than this without being picked up is re-queued, in seconds.
    pub queued_lease_secs: u64,
    /// A row left `sending` longer than this (its worker died) is recovered, in seconds.
    pub sending_lease_secs: u64,
    /// How often the worker rereads the paused and cancelled mailings, in milliseconds: the
    /// fallback for a lost notice (notices stop running batches at once, see `halts`).
    pub cancel_check_interval_ms: u64,
    /// A running batch writes its outcomes at least this often, in milliseconds: the longest
    /// an acknowledged send waits to be recorded (what a crash can leave undecided).
    pub flush_interval_ms: u64,
    /// Finished queue jobs are deleted after this many seconds.
    pub job_retention_secs: u64,
    /// How often a process tells the others it is alive, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// A process silent this long is taken for dead, in seconds.
    pub instance_timeout_secs: u64,
    /// Where `blast worker` serves /metrics (Prometheus), e.g. `0.0.0.0:9091`; empty: nowhere.
    /// (`blast up` and `blast serve` serve it with the API.)
    pub metrics_listen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// First retry delay, in milliseconds; each next one doubles, with jitter.
    pub base_delay_ms: u64,
    /// The longest delay between two attempts, in milliseconds.
    pub max_delay_ms: u64,
    /// Attempts before a transient failure becomes permanent.
    pub max_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://blast.db".into(),
            log_format: LogFormat::Text,
            api: ApiSettings::default(),
            worker: WorkerSettings::default(),
            retry: RetrySettings::default(),
            mailing: MailingSettings::default(),
            sms: SmsSettings::default(),
            log_channel: LogChannelSettings::default(),
            redis: RedisSettings::default(),
            rate_limits: RateLimitSettings::default(),
            email: EmailSettings::default(),
            telegram: TelegramSettings::default(),
            bot: BotSettings::default(),
            stats: StatsSettings::default(),
            webpush: WebPushSettings::default(),
            notifications: NotificationSettings::default(),
            webhooks: WebhookSettings::default(),
            pool: PoolSettings::default(),
            secrets: SecretsSettings::default(),
            phones: PhoneSettings::default(),
            ignored_env: Vec::new(),
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 200,
            queue_watermark: 8,
            jobs_in_flight: 4,
            pump_interval_ms: 100,
            schedule_interval_ms: 500,
            reconcile_interval_ms: 2000,
            queued_lease_secs: 120,
            sending_lease_secs: 60,
            cancel_check_interval_ms: 250,
            flush_interval_ms: 250,
            job_retention_secs: 3600,
            heartbeat_interval_ms: 1000,
            instance_timeout_secs: 10,
            metrics_listen: String::new(),
        }
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            base_delay_ms: 1000,
            max_delay_ms: 600_000,
            max_attempts: 10,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    // Not a #[source]: figment's message already says everything, and would print twice.
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

/// The names of the top-level settings and sections (`database_url`, `sms`, …).
fn top_level_keys() -> Vec<String> {
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// figment's error, with the key meant when an unknown one is close to a known one.
fn explain_figment_error(e: figment::Error) -> SettingsError {
    if let figment::error::Kind::UnknownField(found, expected) = &e.kind {
        let closest = expected
            .iter()
            .map(|known| (strsim::damerau_levenshtein(found, known), *known))
            .filter(|(distance, _)| *distance <= 3)
            .min();
        if let Some((_, known)) = closest {
            // The path ends with the unknown key itself.
            let section = e.path[..e.path.len().saturating_sub(1)].join(".");
            let meant = if section.is_empty() {
                known.to_owned()
            } else {
                format!("{section}.{known}")
            };
            return SettingsError::Rule(format!("{e}; did you mean `{meant}`?"));
        }
    }
    SettingsError::Invalid(Box::new(e))
}

impl Settings {
    /// Load settings. `config_file` is the explicit `--config` path (which must exist); without
    /// it, `./config.toml` is read if present. `overrides` are the command-line flags.
    pub fn load(
        config_file: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) if !path.exists() => {
                return Err(SettingsError::MissingFile(path.to_owned()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            // Only ./config.toml: figment's `Toml::file` would also search parent directories.
            None if Path::new("config.toml").exists() => {
                figment = figment.merge(Toml::file_exact("config.toml"))
            }
            None => {}
        }
        // Variables the command line reads itself (clap's `env`), not settings.
        const FLAGS: &[&str] = &["config", "user", "server", "token", "new_bot_token"];
        let known = top_level_keys();
        // `SMS__TOKEN` as the variable is named, `sms.token` as figment's filter sees it.
        let names_a_setting = move |key: &str| {
            let dotted = key.to_ascii_lowercase().replace("__", ".");
            let top = dotted.split('.').next().unwrap_or_default().to_owned();
            known.contains(&top)
        };
        let ignored_env: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter_map(|name| {
                let key = name.strip_prefix("BLAST_")?;
                let flag = FLAGS.iter().any(|f| key.eq_ignore_ascii_case(f));
                (!flag && !names_a_setting(key)).then_some(name)
            })
            .collect();
        // A misspelt key inside a known section (BLAST_SMS__TOKN) still reaches the
        // settings and is refused there; a variable outside every section is not ours.
        figment = figment.merge(
            Env::prefixed("BLAST_")
                .split("__")
                .ignore(FLAGS)
                .filter(move |key| names_a_setting(key.as_str())),
        );
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value));
        }
        let mut settings: Settings = figment.extract().map_err(explain_figment_error)?;
        settings.check()?;
        settings.ignored_env = ignored_env;
        Ok(settings)
    }

    fn check_bot(&self) -> Result<(), SettingsError> {
        let bot = &self.bot;
        if bot.poll_timeout_secs == 0 || bot.poll_timeout_secs > 50 {
            return Err(SettingsError::Rule(
                "bot.poll_timeout_secs must be 1 to 50".into(),
            ));
        }
        let secret = bot.webhook_secret.expose();
        if secret.len() > 256
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(SettingsError::Rule(
                "bot.webhook_secret must be at most 256 of A-Z, a-z, 0-9, _ and -".into(),
            ));
        }
        if let Some(bad) = bot
            .tags
            .iter()
            .find(|t| crate::domain::parse_tag(t).is_err())
        {
            return Err(SettingsError::Rule(format!(
                "bot.tags: {bad:?} is not a tag name (1-64 letters, digits, '-', '_', '.' or ':')"
            )));
        }
        if bot.mode == BotMode::Webhook && !bot.tenant.is_empty() {
            if !bot.webhook_url.starts_with("https://") || secret.is_empty() {
                return Err(SettingsError::Rule(
                    "bot.mode = \"webhook\" needs bot.webhook_url (the public https:// URL Telegram posts to) and bot.webhook_secret"
                        .into(),
                ));
            }
            if bot.in_worker {
                return Err(SettingsError::Rule(
                    "bot.in_worker runs the bot by polling; with bot.mode = \"webhook\" run `blast bot` on its own"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), SettingsError> {
        self.secret_keys()?;
        crate::domain::parse_region(&self.phones.default_region)
            .map_err(|e| SettingsError::Rule(format!("phones.default_region: {e}")))?;
        for proxy in &self.api.trusted_proxies {
            if crate::settings::parse_proxy(proxy).is_none() {
                return Err(SettingsError::Rule(format!(
                    "api.trusted_proxies: {proxy:?} is not an IP address or network (10.0.0.0/8)"
                )));
            }
        }
        if self.mailing.template_fuel < 1000 || self.mailing.template_timeout_ms == 0 {
            return Err(SettingsError::Rule(
                "mailing.template_fuel must be at least 1000 and mailing.template_timeout_ms at least 1".into(),
            ));
        }
        let w = &self.worker;
        if w.batch_size == 0 || w.queue_watermark == 0 || w.jobs_in_flight == 0 {
            return Err(SettingsError::Rule(
                "worker.batch_size, worker.queue_watermark and worker.jobs_in_flight must be at least 1".into(),
            ));
        }
        if w.queued_lease_secs == 0 || w.sending_lease_secs == 0 {
            return Err(SettingsError::Rule(
                "worker.queued_lease_secs and worker.sending_lease_secs must be at least 1".into(),
            ));
        }
        if w.instance_timeout_secs.saturating_mul(1000) <= w.heartbeat_interval_ms.saturating_mul(2)
        {
            return Err(SettingsError::Rule(
                "worker.instance_timeout_secs must exceed two heartbeat intervals".into(),
            ));
        }
        if self.api.login_attempts_per_minute == 0
            || self.api.auth_attempts_per_minute_per_ip == 0
            || self.api.max_page_size == 0
        {
            return Err(SettingsError::Rule(
                "api.login_attempts_per_minute and api.max_page_size must be at least 1".into(),
            ));
        }
        for section in self.channel_sections() {
            section
                .check()
                .map_err(|e| SettingsError::Rule(e.to_string()))?;
        }
        self.check_bot()?;
        if self.stats.schedule.parse::<cron::Schedule>().is_err() {
            return Err(SettingsError::Rule(format!(
                "stats.schedule {:?} is not a cron expression with seconds (e.g. \"0 0 7 * * *\")",
                self.stats.schedule
            )));
        }
        if self.stats.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(SettingsError::Rule(format!(
                "stats.timezone {:?} is not an IANA time zone (e.g. Europe/Moscow)",
                self.stats.timezone
            )));
        }
        for address in &self.stats.recipients {
            crate::domain::parse_email(address)
                .map_err(|e| SettingsError::Rule(format!("stats.recipients: {e}")))?;
        }
        if self.retry.base_delay_ms > self.retry.max_delay_ms {
            return Err(SettingsError::Rule(
                "retry.base_delay_ms must not exceed retry.max_delay_ms".into(),
            ));
        }
        Ok(())
    }

    pub fn sms_timeout(&self) -> Duration {
        Duration::from_millis(self.sms.timeout_ms)
    }

    /// Every channel's section, in the order of [`ChannelKind::ALL`]: the registry of
    /// channels. A new channel adds its section to [`Settings`] and here.
    pub fn channel_sections(&self) -> [&dyn ChannelSettings; 5] {
        [
            &self.sms,
            &self.email,
            &self.telegram,
            &self.log_channel,
            &self.webpush,
        ]
    }

    fn channel_sections_mut(&mut self) -> [&mut dyn ChannelSettings; 5] {
        [
            &mut self.sms,
            &mut self.email,
            &mut self.telegram,
            &mut self.log_channel,
            &mut self.webpush,
        ]
    }

    /// The section of `channel`.
    pub fn channel(&self, channel: ChannelKind) -> &dyn ChannelSettings {
        let sections = self.channel_sections();
        let at = sections
            .iter()
            .position(|s| s.kind() == channel)
            .unwrap_or_default();
        sections[at]
    }

    /// Every channel, built and registered, rate-limited through `limiter`. Runs inside a
    /// tokio runtime (the SMTP connection pool starts a task).
    pub fn channels(&self, limiter: crate::limits::Limiter) -> Result<Channels, DeliveryError> {
        let shared = Shared {
            burst: Duration::from_millis(self.rate_limits.burst_ms),
        };
        let built = self
            .channel_sections()
            .into_iter()
            .map(|section| section.build(shared))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Channels::new(
            built,
            limiter,
            self.rate_limits.tenant_per_second,
            shared,
        ))
    }

    /// Which channels may send a cut-off message again.
    pub fn resend_policy(&self) -> ResendPolicy {
        ResendPolicy::new(self.channel_sections())
    }

    /// The longest message text a mailing on `channel` may have.
    pub fn max_text_chars(&self, channel: ChannelKind) -> u32 {
        self.channel(channel).max_text_chars()
    }

    /// The keys that seal tenant secrets, from `[secrets]`.
    pub fn secret_keys(&self) -> Result<crate::store::SecretKeys, SettingsError> {
        let previous: Vec<&str> = self
            .secrets
            .previous_keys
            .iter()
            .map(Secret::expose)
            .collect();
        crate::store::SecretKeys::new(self.secrets.key.expose(), &previous)
            .map_err(|e| SettingsError::Rule(format!("secrets: {e}")))
    }

    /// How far a message template on `channel` may go: its rendered length, fuel and time.
    pub fn text_limits(&self, channel: crate::domain::ChannelKind) -> crate::template::TextLimits {
        crate::template::TextLimits {
            max_chars: self.max_text_chars(channel) as usize,
            fuel: self.mailing.template_fuel,
            timeout: Duration::from_millis(self.mailing.template_timeout_ms),
        }
    }

    /// Messages per second a channel's provider is held to (0: no configured limit), for the
    /// time a mailing is expected to take.
    pub fn send_rate_per_second(&self, channel: ChannelKind) -> u32 {
        self.channel(channel).send_rate_per_second()
    }

    /// The settings as TOML, with secrets replaced by a placeholder.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for section in shown.channel_sections_mut() {
            section.redact();
        }
        // Every URL may carry credentials (`https://user:password@host`).
        for url in [
            &mut shown.database_url,
            &mut shown.bot.webhook_url,
            &mut shown.api.public_url,
        ] {
            *url = redacted_url(url);
        }
        for secret in [
            &mut shown.bot.webhook_secret,
            &mut shown.redis.url,
            &mut shown.secrets.key,
            &mut shown.api.metrics_token,
        ]
        .into_iter()
        .chain(shown.secrets.previous_keys.iter_mut())
        {
            if !secret.is_empty() {
                *secret = Secret::new("***");
            }
        }
        // Settings hold only strings, numbers and tables, which TOML always represents.
        toml::to_string(&shown).unwrap_or_default()
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

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn the_reference_config_toml_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let from_file: Settings = Figment::new()
            .merge(Toml::file_exact(&path))
            .extract()
            .expect("config.toml parses");
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn every_channel_has_exactly_one_section() {
        let settings = Settings::default();
        let kinds: Vec<ChannelKind> = settings
            .channel_sections()
            .iter()
            .map(|s| s.kind())
            .collect();
        assert_eq!(kinds, ChannelKind::ALL);
        let mut mutable = settings.clone();
        let kinds_mut: Vec<ChannelKind> = mutable
            .channel_sections_mut()
            .iter()
            .map(|s| s.kind())
            .collect();
        assert_eq!(kinds_mut, ChannelKind::ALL);
        for kind in ChannelKind::ALL {
            assert_eq!(settings.channel(kind).kind(), kind);
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut s = Settings::default();
        s.sms.token = Secret::new("eyJhbGciOi.secret.jwt");
        s.email.password = Secret::new("smtp-secret-pw");
        s.telegram.bot_token = Secret::new("123:tg-secret-token");
        s.telegram.api_url = "https://user:tg-url-pw@tg.example.com".into();
        for secret in ["smtp-secret-pw", "tg-secret-token", "tg-url-pw"] {
            assert!(!s.to_redacted_toml().contains(secret), "{secret}");
        }
        assert!(!format!("{s:?}").contains("secret.jwt"));
        assert!(!s.to_redacted_toml().contains("secret.jwt"));
        assert!(s.to_redacted_toml().contains("token = \"***\""));
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "config.toml",
                "[sms]\ntimeout_ms = 111\nmax_in_flight = 3\n",
            )?;
            jail.set_env("BLAST_SMS__TIMEOUT_MS", "222");
            let s = Settings::load(None, &[]).expect("loads");
            assert_eq!(s.sms.timeout_ms, 222);
            assert_eq!(s.sms.max_in_flight, 3);
            let s =
                Settings::load(None, &[("database_url", "sqlite://x.db".into())]).expect("loads");
            assert_eq!(s.database_url, "sqlite://x.db");
            Ok(())
        });
    }

    #[test]
    fn a_misspelt_key_names_the_one_meant_and_a_stranger_variable_is_only_noted() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BLAST_BIN", "/usr/local/bin/blast");
            jail.set_env("BLAST_SMS__TIMEOUT_MS", "333");
            let settings = Settings::load(None, &[]).expect("a stranger variable is no error");
            assert_eq!(settings.ignored_env, ["BLAST_BIN"]);
            assert_eq!(settings.sms.timeout_ms, 333);
            jail.set_env("BLAST_SMS__TOKN", "x");
            let err = Settings::load(None, &[]).expect_err("a misspelt key");
            assert!(
                err.to_string().contains("did you mean `sms.token`?"),
                "{err}"
            );
            jail.clear_env();
            jail.create_file("config.toml", "[email]\nsmtp_hots = \"smtp.example.com\"\n")?;
            let err = Settings::load(None, &[]).expect_err("misspelt in the file");
            assert!(err.to_string().contains("`email.smtp_host`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.toml", "[sms]\ntimeout = 5\n")?;
            let err = Settings::load(None, &[]).expect_err("unknown key");
            assert!(err.to_string().contains("timeout"), "{err}");
            jail.create_file("config.toml", "[worker]\nbatch_size = 0\n")?;
            assert!(Settings::load(None, &[]).is_err());
            Ok(())
        });
        assert!(matches!(
            Settings::load(Some(Path::new("/nonexistent/blast.toml")), &[]),
            Err(SettingsError::MissingFile(_))
        ));
    }

    #[test]
    fn a_webhook_bot_needs_a_public_https_url_a_secret_and_its_own_process() {
        let mut s = Settings::default();
        s.bot.tenant = "alice".into();
        s.bot.mode = BotMode::Webhook;
        s.bot.webhook_url = "https://blast.example.com/tg".into();
        s.bot.webhook_secret = Secret::new("s3cret");
        assert!(s.check().is_ok());
        for broken in [
            |s: &mut Settings| s.bot.webhook_url = "http://blast.example.com/tg".into(),
            |s: &mut Settings| s.bot.webhook_secret = Secret::default(),
            |s: &mut Settings| s.bot.webhook_secret = Secret::new("no spaces"),
            |s: &mut Settings| s.bot.in_worker = true,
            |s: &mut Settings| s.bot.tags = vec!["not a tag".into()],
            |s: &mut Settings| s.bot.poll_timeout_secs = 0,
        ] {
            let mut bad = s.clone();
            broken(&mut bad);
            assert!(
                matches!(bad.check(), Err(SettingsError::Rule(_))),
                "{:?}",
                bad.bot
            );
        }
    }
}
