//! The subscriber bot: /start (with an optional deep-link tag) makes or re-activates a client
//! for the chat, /stop opts it out of Telegram mailings, and a user who blocks the bot is
//! opted out the same way. Updates come by long polling (one process of the cluster polls at a
//! time, under a database lease) or by webhook.

use crate::channels::connect_bot;
use crate::domain::parse_tag;
use crate::ids::TenantId;
use crate::settings::{BotMode, BotSettings, Settings, TelegramSettings};
use crate::store::{Store, StoreError, Subscribed};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use teloxide_core::payloads::setters::*;
use teloxide_core::requests::Requester;
use teloxide_core::types::{AllowedUpdate, ChatId, Update, UpdateKind};
use teloxide_core::{ApiError, Bot, RequestError};
use tokio_util::sync::CancellationToken;

/// A command's answer that Telegram refused with 429 is tried again this many times, after
/// the `retry_after` it named, if that is no longer than `MAX_REPLY_WAIT`.
const REPLY_RETRIES: u32 = 3;
const MAX_REPLY_WAIT: Duration = Duration::from_secs(30);

/// How much longer than one poll the polling lease lasts. Longer than the HTTP client's own
/// margin over the poll timeout (`bot_client`), so a stalled poll is cut off before its lease
/// can pass to another process.
const LEASE_MARGIN: Duration = Duration::from_secs(45);
/// After this many failed polls in a row the holder lets another process try.
const RELEASE_AFTER_FAILURES: u32 = 3;
/// An update the store failed to take is tried this many times before it is skipped.
const UPDATE_TRIES: u32 = 5;

/// The lease name of a bot's long polling: one holder per bot across the cluster.
fn polling_lease(bot_id: &str) -> String {
    format!("telegram-polling:{bot_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("the subscriber bot is not configured: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the Bot API refused: {0}")]
    Api(#[from] RequestError),
    #[error("cannot listen for the webhook on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A command the bot answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    /// /start, with the deep link's payload when there was one.
    Start(Option<String>),
    Stop,
}

/// `/start`, `/start TAG`, `/start@bot_name TAG` or `/stop`; anything else is not for us.
fn parse_command(text: &str) -> Option<Command> {
    let mut words = text.split_whitespace();
    let head = words.next()?;
    let name = head.strip_prefix('/')?.split('@').next()?;
    match name.to_ascii_lowercase().as_str() {
        "start" => Some(Command::Start(words.next().map(str::to_owned))),
        "stop" => Some(Command::Stop),
        _ => None,
    }
}

/// The subscriber bot of one tenant.
pub struct SubscriberBot {
    store: Store,
    bot: Bot,
    bot_id: String,
    tenant_id: TenantId,
    settings: BotSettings,
    /// This process's name in the polling lease.
    holder: String,
}

impl SubscriberBot {
    /// The bot `settings.bot` describes, or None when it is off (`bot.tenant` empty).
    pub async fn from_settings(
        store: Store,
        settings: &Settings,
    ) -> Result<Option<SubscriberBot>, BotError> {
        if settings.bot.tenant.is_empty() {
            return Ok(None);
        }
        let tenant = store
            .user_by_name(&settings.bot.tenant)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => BotError::Config(format!(
                    "bot.tenant {:?} is not a user (blast user add {0})",
                    settings.bot.tenant
                )),
                other => other.into(),
            })?;
        let (bot, bot_id) = bot_client(&settings.telegram, &settings.bot)?;
        Ok(Some(SubscriberBot {
            store,
            bot,
            bot_id,
            tenant_id: tenant.id,
            settings: settings.bot.clone(),
            holder: format!(
                "{}-{}-{:08x}",
                crate::store::hostname(),
                std::process::id(),
                rand::random::<u32>()
            ),
        }))
    }

    /// Run in the configured mode until `stop`.
    pub async fn run(self, stop: CancellationToken) -> Result<(), BotError> {
        match self.settings.mode {
            BotMode::Polling => self.poll(stop).await,
            BotMode::Webhook => {
                let addr = self.settings.webhook_listen.clone();
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|source| BotError::Listen { addr, source })?;
                self.serve_webhook(listener, stop).await
            }
        }
    }

    /// This process's name in the polling lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Long polling. Each round first takes (or renews) the cluster-wide lease and checks it
    /// again once the poll returns: a batch fetched by a process that lost the lease meanwhile
    /// is dropped unconfirmed, for the new holder to handle in order. Without the lease the
    /// process waits and asks again, so a stopped holder is replaced within seconds and a
    /// crashed one after its lease (the poll timeout plus `LEASE_MARGIN`).
    pub async fn poll(self, stop: CancellationToken) -> Result<(), BotError> {
        let lease = polling_lease(&self.bot_id);
        let timeout = self.settings.poll_timeout_secs;
        let lease_ms =
            i64::from(timeout) * 1000 + i64::try_from(LEASE_MARGIN.as_millis()).unwrap_or(i64::MAX);
        let mut offset: Option<i32> = None;
        let mut webhook_cleared = false;
        let mut failures: u32 = 0;
        // The update that failed to be handled, and how many times it has.
        let mut failing: Option<(u32, u32)> = None;
        tracing::info!(bot = %self.bot_id, "subscriber bot polling");
        while !stop.is_cancelled() {
            if !self.hold_lease(&lease, lease_ms).await {
                offset = None; // whoever holds it confirms what it handles
                webhook_cleared = false;
                let wait = Duration::from_secs(u64::from(timeout).min(5));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
            if !webhook_cleared {
                // Telegram refuses getUpdates while a webhook is set.
                match self.bot.delete_webhook().await {
                    Ok(_) => webhook_cleared = true,
                    Err(e) => tracing::warn!(error = %e, "cannot delete the bot's webhook"),
                }
            }
            let mut request = self
                .bot
                .get_updates()
                .timeout(timeout)
                .allowed_updates([AllowedUpdate::Message, AllowedUpdate::MyChatMember]);
            if let Some(offset) = offset {
                request = request.offset(offset);
            }
            let updates = tokio::select! {
                _ = stop.cancelled() => break,
                updates = request.into_future() => updates,
            };
            let updates = match updates {
                Ok(updates) => {
                    failures = 0;
                    updates
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "getUpdates failed");
                    if let RequestError::Api(ApiError::TerminatedByOtherGetUpdates) = e {
                        webhook_cleared = false;
                    }
                    if failures >= RELEASE_AFTER_FAILURES {
                        // Perhaps only this host cannot reach Telegram: let another try.
                        self.release_lease(&lease).await;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            if updates.is_empty() || !self.hold_lease(&lease, lease_ms).await {
                continue;
            }
            for update in &updates {
                let id = update.id.0;
                if let Err(e) = self.handle(update).await {
                    let tries = match failing {
                        Some((failed, tries)) if failed == id => tries + 1,
                        _ => 1,
                    };
                    if tries < UPDATE_TRIES {
                        // Unconfirmed: Telegram hands it over again with the ones after it.
                        tracing::warn!(error = %e, update = id, tries, "an update was not handled; trying again");
                        failing = Some((id, tries));
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        break;
                    }
                    tracing::error!(error = %e, update = id, tries, "an update was not handled; skipping it");
                }
                failing = None;
                offset = Some(i32::try_from(id).unwrap_or(i32::MAX).saturating_add(1));
            }
        }
        if let Some(offset) = offset {
            // Confirm what was handled, so the next holder does not answer it again.
            let confirm = self.bot.get_updates().offset(offset).timeout(0).limit(1);
            if let Err(e) = confirm.await {
                tracing::warn!(error = %e, "cannot confirm the last updates");
            }
        }
        self.release_lease(&lease).await;
        Ok(())
    }

    async fn hold_lease(&self, lease: &str, lease_ms: i64) -> bool {
        match self.store.hold_lease(lease, &self.holder, lease_ms).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the bot's polling lease");
                false
            }
        }
    }

    async fn release_lease(&self, lease: &str) {
        if let Err(e) = self.store.release_lease(lease, &self.holder).await {
            tracing::warn!(error = %e, "cannot release the bot's polling lease");
        }
    }

    /// Webhook mode: register `bot.webhook_url` with its secret, then serve updates on
    /// `listener` (any path) until `stop`.
    pub async fn serve_webhook(
        self,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> Result<(), BotError> {
        let url = reqwest::Url::parse(&self.settings.webhook_url)
            .map_err(|e| BotError::Config(format!("bot.webhook_url: {e}")))?;
        self.bot
            .set_webhook(url)
            .secret_token(self.settings.webhook_secret.expose())
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::MyChatMember])
            .await?;
        tracing::info!(bot = %self.bot_id, "subscriber bot webhook registered");
        let app = axum::Router::new()
            .fallback(axum::routing::post(webhook))
            .with_state(Arc::new(self));
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(|source| BotError::Listen {
                addr: "webhook".into(),
                source,
            })
    }

    /// Act on one update.
    pub async fn handle(&self, update: &Update) -> Result<(), BotError> {
        match &update.kind {
            UpdateKind::Message(message) if message.chat.is_private() => {
                let Some(command) = message.text().and_then(parse_command) else {
                    return Ok(());
                };
                let chat = message.chat.id;
                match command {
                    Command::Start(payload) => {
                        let name = message
                            .from
                            .as_ref()
                            .map(|u| u.full_name())
                            .unwrap_or_default();
                        // Only the tags the operator named may come from a deep link: anyone
                        // can type `/start vip`. Any other payload subscribes untagged.
                        let tag = payload
                            .as_deref()
                            .and_then(|p| parse_tag(p).ok())
                            .filter(|t| self.settings.tags.contains(t));
                        let subscribed = self
                            .store
                            .subscribe_telegram(self.tenant_id, chat.0, &name, tag.as_deref())
                            .await?;
                        metrics::counter!("blast_bot_commands_total", "command" => "start")
                            .increment(1);
                        tracing::info!(
                            chat = chat.0,
                            client = subscribed.client_id().0,
                            new = matches!(subscribed, Subscribed::New(_)),
                            tag = tag.as_deref().unwrap_or(""),
                            "subscribed"
                        );
                        self.reply(chat, &self.settings.welcome_text);
                    }
                    Command::Stop => {
                        self.store
                            .unsubscribe_telegram(self.tenant_id, chat.0)
                            .await?;
                        metrics::counter!("blast_bot_commands_total", "command" => "stop")
                            .increment(1);
                        tracing::info!(chat = chat.0, "unsubscribed");
                        self.reply(chat, &self.settings.goodbye_text);
                    }
                }
            }
            // The user blocked the bot in a private chat; unblocking it tells nothing (they
            // come back with /start).
            UpdateKind::MyChatMember(change)
                if change.chat.is_private() && change.new_chat_member.kind.is_banned() =>
            {
                self.store
                    .unsubscribe_telegram(self.tenant_id, change.chat.id.0)
                    .await?;
                tracing::info!(chat = change.chat.id.0, "the user blocked the bot");
            }
            _ => {}
        }
        Ok(())
    }

    /// Answer a command, in a task of its own so that a 429 (a user who sends commands faster
    /// than Telegram's one message per second per chat) is waited out without holding up other
    /// updates. A lost answer loses nothing the user asked for (the subscription is written),
    /// so it is logged, not kept.
    fn reply(&self, chat: ChatId, text: &str) {
        if text.is_empty() {
            return;
        }
        let (bot, text) = (self.bot.clone(), text.to_owned());
        tokio::spawn(async move {
            for _ in 0..=REPLY_RETRIES {
                match bot.send_message(chat, text.as_str()).await {
                    Ok(_) => return,
                    Err(RequestError::RetryAfter(wait)) if wait.duration() <= MAX_REPLY_WAIT => {
                        tokio::time::sleep(wait.duration()).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, chat = chat.0, "cannot answer a bot command");
                        return;
                    }
                }
            }
        });
    }
}

/// One update POSTed by Telegram. Without the secret it is refused; an update the bot cannot
/// read is acknowledged anyway (Telegram would only send it again).
async fn webhook(
    State(bot): State<Arc<SubscriberBot>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = bot.settings.webhook_secret.expose();
    // Constant time: the answer's timing must not tell how much of a guess was right.
    let matches: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into();
    if !matches {
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            tracing::warn!(error = %e, "an update the bot cannot read");
            return StatusCode::OK;
        }
    };
    match bot.handle(&update).await {
        Ok(()) => StatusCode::OK,
        // Telegram retries a failed delivery of the update: let it, the store may be back.
        Err(e) => {
            tracing::warn!(error = %e, "an update was not handled");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The Bot API client of the subscriber bot: its HTTP timeout outlasts a long poll.
fn bot_client(tg: &TelegramSettings, bot: &BotSettings) -> Result<(Bot, String), BotError> {
    if tg.bot_token.is_empty() {
        return Err(BotError::Config("telegram.bot_token is not set".into()));
    }
    connect_bot(
        tg,
        Duration::from_secs(10),
        Duration::from_secs(u64::from(bot.poll_timeout_secs) + 30),
    )
    .map_err(|e| BotError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_like_telegram_clients_send_them() {
        assert_eq!(parse_command("/start"), Some(Command::Start(None)));
        assert_eq!(
            parse_command("/start promo-2026"),
            Some(Command::Start(Some("promo-2026".into())))
        );
        assert_eq!(
            parse_command("/start@blast_bot vip"),
            Some(Command::Start(Some("vip".into())))
        );
        assert_eq!(parse_command("/STOP"), Some(Command::Stop));
        assert_eq!(parse_command("/stop@blast_bot"), Some(Command::Stop));
        assert_eq!(parse_command("hello"), None);
        assert_eq!(parse_command("/help"), None);
        assert_eq!(parse_command(""), None);
    }
}
