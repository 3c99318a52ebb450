//! Configuration: defaults, then config.toml, then `BLAST_*` environment variables, then flags.
//!
//! Nested keys use a double underscore in the environment: `BLAST_SMS__TOKEN` sets `sms.token`.
//! The reference `config.toml` at the repository root lists every key with its default; a test
//! keeps the two equal. Each section is a file of its own here (a channel's is in its folder
//! under `channels/`), with its defaults and its own rules.

pub use crate::channels::email::{EmailSecurity, EmailSettings};
pub use crate::channels::inapp::InAppSettings;
pub use crate::channels::log::LogChannelSettings;
pub use crate::channels::sms::SmsSettings;
pub use crate::channels::telegram::TelegramSettings;
pub use crate::channels::webpush::WebPushSettings;
use crate::channels::{ChannelSettings, Channels, DeliveryError, ResendPolicy, Shared};
use crate::domain::ChannelKind;
pub use crate::secret::{Secret, redacted_url};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod api;
mod bot;
mod console;
mod mailing;
mod stats;
mod storage;
mod webhooks;
mod worker;

pub use crate::notify::NotificationSettings;
pub use api::{ApiSettings, parse_proxy};
pub use bot::{BotMode, BotSettings};
pub use console::ConsoleSettings;
pub use mailing::{MailingSettings, PhoneSettings, RateLimitSettings};
pub use stats::StatsSettings;
use std::sync::Arc;
use std::time::Duration;
pub use storage::{PoolSettings, RedisSettings, SecretsSettings};
pub use webhooks::WebhookSettings;
pub use worker::{RetrySettings, WorkerSettings};

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
    pub inapp: InAppSettings,
    pub notifications: NotificationSettings,
    pub webhooks: WebhookSettings,
    pub console: ConsoleSettings,
    pub pool: PoolSettings,
    pub secrets: SecretsSettings,
    pub phones: PhoneSettings,
    /// `BLAST_*` environment variables that name no setting (a script's own `BLAST_BIN`):
    /// left out of the configuration, to be warned about once logging runs.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
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
            inapp: InAppSettings::default(),
            notifications: NotificationSettings::default(),
            webhooks: WebhookSettings::default(),
            console: ConsoleSettings::default(),
            pool: PoolSettings::default(),
            secrets: SecretsSettings::default(),
            phones: PhoneSettings::default(),
            ignored_env: Vec::new(),
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

    /// Every section's own rules.
    fn check(&self) -> Result<(), SettingsError> {
        self.secret_keys()?;
        self.phones.check()?;
        self.api.check()?;
        self.mailing.check()?;
        self.worker.check()?;
        self.retry.check()?;
        for section in self.channel_sections() {
            section
                .check()
                .map_err(|e| SettingsError::Rule(e.to_string()))?;
        }
        self.bot.check()?;
        self.stats.check()?;
        self.console.check()?;
        Ok(())
    }

    /// Every channel's section, in the order of [`ChannelKind::ALL`]: the registry of
    /// channels. A new channel adds its section to [`Settings`] and here.
    pub fn channel_sections(&self) -> [&dyn ChannelSettings; 6] {
        [
            &self.sms,
            &self.email,
            &self.telegram,
            &self.log_channel,
            &self.webpush,
            &self.inapp,
        ]
    }

    fn channel_sections_mut(&mut self) -> [&mut dyn ChannelSettings; 6] {
        [
            &mut self.sms,
            &mut self.email,
            &mut self.telegram,
            &mut self.log_channel,
            &mut self.webpush,
            &mut self.inapp,
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

    /// Every channel, built and registered, rate-limited through `limiter`, the `inapp`
    /// channel putting its items into `inbox`. Runs inside a tokio runtime (the SMTP
    /// connection pool starts a task).
    pub fn channels(
        &self,
        limiter: crate::limits::Limiter,
        inbox: Arc<dyn crate::channels::inapp::Inbox>,
    ) -> Result<Channels, DeliveryError> {
        let shared = Shared {
            burst: Duration::from_millis(self.rate_limits.burst_ms),
            inbox,
        };
        let built = self
            .channel_sections()
            .into_iter()
            .map(|section| section.build(shared.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Channels::new(
            built,
            limiter,
            self.rate_limits.tenant_per_second,
            &shared,
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
        shown.bot.redact();
        // Every URL may carry credentials (`https://user:password@host`).
        for url in [&mut shown.database_url, &mut shown.api.public_url] {
            *url = redacted_url(url);
        }
        for secret in [
            &mut shown.redis.url,
            &mut shown.secrets.key,
            &mut shown.api.metrics_token,
        ]
        .into_iter()
        .chain(shown.secrets.previous_keys.iter_mut())
        {
            secret.redact();
        }
        // Settings hold only strings, numbers and tables, which TOML always represents.
        toml::to_string(&shown).unwrap_or_default()
    }
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
