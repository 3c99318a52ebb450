//! Telegram over the Bot API (teloxide-core): every message kind of a mailing to one chat, and
//! the Bot API's answers mapped onto the delivery error split.
//!
//! teloxide-core reads the error from the answer's JSON, not its HTTP status: `parameters`
//! give `RetryAfter` (429) and `MigrateToChatId`, known descriptions a typed `ApiError`, and any
//! other description `ApiError::Unknown`. On a 5xx it sleeps 10 s before returning (a constant
//! in teloxide-core); our own timeout around each send bounds that.

mod limits;
mod settings;

pub use settings::{DEFAULT_MEDIA_QUOTA_BYTES, TelegramSettings};

use super::{
    Attempt, Channel, ChannelEvent, DeliveryError, NotReachable, Outgoing, Parts, Profile, Receipt,
    Recipient, Route,
};
use crate::domain::ChannelKind;
pub use crate::domain::{TelegramBot, bot_id_of};
use crate::limits::Limit;
use crate::secret::Secret;
use crate::telegram::{MediaSource, ParseMode, TelegramContent, TelegramKind, UrlButton};
use futures::future::BoxFuture;
use limits::TelegramLimits;
use std::time::Duration;
use teloxide_core::payloads::setters::*;
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    ChatId, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia,
    InputMediaDocument, InputMediaPhoto, InputMediaVideo, LinkPreviewOptions, Message,
};
use teloxide_core::{ApiError, Bot, RequestError};

impl TelegramBot {
    /// The bot of `telegram.bot_token`; empty when none is set (its sends then wait).
    pub fn configured(settings: &TelegramSettings) -> TelegramBot {
        let token = settings.bot_token.clone();
        TelegramBot {
            id: bot_id_of(token.expose()).unwrap_or_default().to_string(),
            token,
        }
    }

    /// Ask the Bot API at `telegram.api_url` who `token` is (`getMe`), before a tenant's bot
    /// is registered: limits are keyed by the id before the colon, so a made-up token with
    /// another bot's id would otherwise spend that bot's rate budget. `Permanent`: the token
    /// is not a working token of the bot its id names (Telegram answered 401/404, or for
    /// another bot). `Unavailable`: Telegram could not be asked or gave no Bot API answer.
    pub async fn verify(
        settings: &TelegramSettings,
        token: &Secret,
    ) -> Result<TelegramBot, DeliveryError> {
        let secret = token.expose();
        // The token goes into the request path: only the characters @BotFather uses.
        let id = bot_id_of(secret)
            .filter(|_| {
                secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
            })
            .ok_or_else(|| DeliveryError::Permanent(NOT_A_TOKEN.into()))?;
        let base = api_url(settings).map_err(|e| DeliveryError::Unavailable(e.to_string()))?;
        let url = base
            .join(&format!("/bot{secret}/getMe"))
            .map_err(|e| DeliveryError::Unavailable(format!("telegram.api_url: {e}")))?;
        let timeout = Duration::from_millis(settings.timeout_ms).min(VERIFY_TIMEOUT);
        let client = http_client(Duration::from_secs(5).min(timeout), timeout)
            .map_err(|e| DeliveryError::Unavailable(e.to_string()))?;
        let unreachable = |why: String| {
            DeliveryError::Unavailable(format!(
                "cannot check the bot token: the Telegram Bot API at {base} {why}"
            ))
        };
        let response = client
            .post(url)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| unreachable(format!("cannot be reached: {}", why_unreachable(e))))?;
        let status = response.status();
        let answer: GetMeAnswer = response
            .json()
            .await
            .map_err(|_| unreachable(format!("answered {status} without a Bot API answer")))?;
        match answer {
            GetMeAnswer {
                ok: true,
                result: Some(me),
                ..
            } if me.id.to_string() == id => Ok(TelegramBot {
                id: id.to_string(),
                token: token.clone(),
            }),
            GetMeAnswer {
                ok: true,
                result: Some(me),
                ..
            } => Err(DeliveryError::Permanent(format!(
                "Telegram says this token belongs to bot {}, not to bot {id} (the number before the colon)",
                me.id
            ))),
            GetMeAnswer {
                ok: false,
                error_code: Some(code @ (401 | 404)),
                description,
                ..
            } => Err(DeliveryError::Permanent(format!(
                "Telegram refused the bot token ({code} {}): check it with @BotFather",
                description.unwrap_or_default()
            ))),
            GetMeAnswer {
                error_code,
                description,
                ..
            } => Err(unreachable(format!(
                "answered getMe with {} {}",
                error_code.map_or_else(|| status.as_u16().to_string(), |c| c.to_string()),
                description.unwrap_or_default()
            ))),
        }
    }
}

/// A failed request's text for an operator: reqwest's own line says only "error sending
/// request", the cause (refused, timed out, DNS) is at the end of its sources. Without the
/// URL, which holds the token.
fn why_unreachable(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if std::ptr::addr_eq(cause, &error) {
        error.to_string()
    } else {
        format!("{error} ({cause})")
    }
}

/// What a token that does not even look like one is told (as the store says it).
const NOT_A_TOKEN: &str =
    "that is not a bot token: digits, a colon, then the secret from @BotFather";

/// The longest a registration waits for `getMe`.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a Bot API answer to `getMe` that a registration looks at.
#[derive(Debug, serde::Deserialize)]
struct GetMeAnswer {
    ok: bool,
    result: Option<GetMeBot>,
    error_code: Option<u16>,
    description: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct GetMeBot {
    id: i64,
}

/// Why the Bot API cannot be talked to at all: the setting that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BotApiSetupError {
    #[error("cannot build the Bot API's HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("telegram.api_url {url:?}: {source}")]
    ApiUrl {
        url: String,
        source: <reqwest::Url as std::str::FromStr>::Err,
    },
    #[error("telegram.bot_token is not a bot token")]
    Token,
}

/// The HTTP client Bot API requests go through; `request_timeout` bounds each request.
fn http_client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<reqwest::Client, BotApiSetupError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(BotApiSetupError::HttpClient)
}

fn api_url(settings: &TelegramSettings) -> Result<reqwest::Url, BotApiSetupError> {
    reqwest::Url::parse(&settings.api_url).map_err(|source| BotApiSetupError::ApiUrl {
        url: settings.api_url.clone(),
        source,
    })
}

/// The Bot API client of the configured bot, and the bot's public id. `request_timeout`
/// bounds each HTTP request. The error names the setting that is wrong.
pub fn connect_bot(
    settings: &TelegramSettings,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<(Bot, String), BotApiSetupError> {
    let token = settings.bot_token.expose();
    let bot_id = bot_id_of(token).ok_or(BotApiSetupError::Token)?.to_string();
    let client = http_client(connect_timeout, request_timeout)?;
    Ok((
        Bot::with_client(token, client).set_api_url(api_url(settings)?),
        bot_id,
    ))
}

/// The media of one send, resolved by the worker: a URL or file_id to pass on, or the bytes of
/// a stored file to upload.
#[derive(Debug, Clone, Copy)]
pub enum MediaRef<'a> {
    Url(&'a str),
    FileId(&'a str),
    Upload {
        file_name: &'a str,
        content: &'a [u8],
    },
}

/// What a Telegram send carries beyond its text (the caption of a media message).
#[derive(Debug, Clone)]
pub struct TelegramParts<'a> {
    /// The bot it goes out through.
    pub bot: &'a TelegramBot,
    pub content: &'a TelegramContent,
    /// One per medium of the content, in [`TelegramContent::sources`] order.
    pub media: Vec<MediaRef<'a>>,
}

/// The Bot API, for any bot: one HTTP connection pool, each send through the bot its
/// mailing names. A bot without a token makes its sends wait as `Unavailable`.
#[derive(Debug)]
pub struct TelegramChannel {
    client: reqwest::Client,
    api_url: reqwest::Url,
    timeout: Duration,
    max_in_flight: usize,
    limits: TelegramLimits,
    /// The id of `telegram.bot_token`'s bot, which subscribers start.
    configured_bot_id: String,
}

/// A Telegram message reaches a client with a chat that did not block the bot; its title, if
/// any, is part of the text.
pub const PROFILE: Profile = Profile {
    audience: "c.telegram_chat_id IS NOT NULL AND c.telegram_blocked_at IS NULL",
    notifies: true,
    subject: super::Subject::None,
    html_body: false,
    telegram_content: true,
    unsubscribe_link: false,
    push_subscriptions: false,
};

impl TelegramChannel {
    pub fn new(settings: &TelegramSettings) -> Result<TelegramChannel, DeliveryError> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        // Our timeout (around each send) is the one that decides; the client's only backs it
        // up, beyond teloxide's 10 s pause after a 5xx.
        let client = http_client(
            Duration::from_secs(5).min(timeout),
            timeout + Duration::from_secs(15),
        )
        .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        Ok(TelegramChannel {
            client,
            api_url: api_url(settings).map_err(|e| DeliveryError::permanent(e.to_string()))?,
            timeout,
            max_in_flight: settings.max_in_flight as usize,
            limits: TelegramLimits::new(settings),
            configured_bot_id: TelegramBot::configured(settings).id,
        })
    }

    /// Send one message through the bot its parts name.
    pub async fn post(&self, msg: &Outgoing<'_>) -> Result<Receipt, DeliveryError> {
        let Parts::Telegram(parts) = &msg.parts else {
            return Err(DeliveryError::permanent(
                "a Telegram send without its content",
            ));
        };
        if parts.bot.token.is_empty() {
            return Err(DeliveryError::Unavailable(
                "no Telegram bot token: set telegram.bot_token (BLAST_TELEGRAM__BOT_TOKEN)".into(),
            ));
        }
        // Cheap: the client and URL are shared, the token is copied into the request path.
        let bot = &Bot::with_client(parts.bot.token.expose(), self.client.clone())
            .set_api_url(self.api_url.clone());
        let chat =
            msg.address.parse::<i64>().map(ChatId).map_err(|_| {
                DeliveryError::permanent(format!("{:?} is not a chat id", msg.address))
            })?;
        let request = send_request(bot, chat, msg.text, parts);
        let uploaded: Vec<bool> = parts
            .media
            .iter()
            .map(|m| matches!(m, MediaRef::Upload { .. }))
            .collect();
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => {
                metrics::counter!("blast_provider_errors_total", "channel" => "telegram", "kind" => "timeout")
                    .increment(1);
                Err(DeliveryError::Indeterminate(format!(
                    "no answer from the Bot API within {} ms",
                    self.timeout.as_millis()
                )))
            }
            Ok(Err(e)) => Err(classify(e)),
            Ok(Ok(messages)) => Ok(Receipt {
                // Only what was uploaded needs remembering; a URL's file_id is not ours to keep.
                file_ids: uploaded
                    .iter()
                    .zip(
                        messages
                            .iter()
                            .map(file_id_of)
                            .chain(std::iter::repeat(None)),
                    )
                    .map(|(&uploaded, file_id)| file_id.filter(|_| uploaded))
                    .collect(),
            }),
        }
    }
}

fn parse_mode(mode: ParseMode) -> teloxide_core::types::ParseMode {
    match mode {
        ParseMode::Html => teloxide_core::types::ParseMode::Html,
        ParseMode::MarkdownV2 => teloxide_core::types::ParseMode::MarkdownV2,
    }
}

fn keyboard(rows: &[Vec<UrlButton>]) -> Result<Option<InlineKeyboardMarkup>, DeliveryError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut keyboard = Vec::with_capacity(rows.len());
    for row in rows {
        let mut buttons = Vec::with_capacity(row.len());
        for button in row {
            let url = reqwest::Url::parse(&button.url).map_err(|e| {
                DeliveryError::permanent(format!("button link {:?}: {e}", button.url))
            })?;
            buttons.push(InlineKeyboardButton::url(button.text.clone(), url));
        }
        keyboard.push(buttons);
    }
    Ok(Some(InlineKeyboardMarkup::new(keyboard)))
}

fn input_file(media: MediaRef<'_>) -> Result<InputFile, DeliveryError> {
    Ok(match media {
        MediaRef::Url(url) => InputFile::url(
            reqwest::Url::parse(url)
                .map_err(|e| DeliveryError::permanent(format!("media URL {url:?}: {e}")))?,
        ),
        MediaRef::FileId(id) => InputFile::file_id(FileId(id.to_string())),
        MediaRef::Upload { file_name, content } => {
            InputFile::memory(content.to_vec()).file_name(file_name.to_string())
        }
    })
}

/// Sets the caption, parse mode, buttons and paid broadcast every media send method shares.
macro_rules! media_send {
    ($request:expr, $caption:expr, $mode:expr, $markup:expr, $paid:expr) => {{
        let mut request = $request;
        if let Some(caption) = $caption {
            request = request.caption(caption.to_string());
        }
        if let Some(mode) = $mode {
            request = request.parse_mode(mode);
        }
        if let Some(markup) = $markup {
            request = request.reply_markup(markup);
        }
        if $paid {
            request = request.allow_paid_broadcast(true);
        }
        request.await
    }};
}

/// The messages Telegram made of one send: one, or one per item of an album.
async fn send_request(
    bot: &Bot,
    chat: ChatId,
    text: &str,
    parts: &TelegramParts<'_>,
) -> Result<Vec<Message>, RequestError> {
    let content = parts.content;
    if content.kind == TelegramKind::MediaGroup {
        return send_album(bot, chat, text, parts).await;
    }
    send_one(bot, chat, text, parts).await.map(|m| vec![m])
}

impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable> {
        if to.telegram_blocked {
            return Err(NotReachable::new("the client blocked the bot"));
        }
        to.client
            .telegram_chat_id
            .map(|chat| chat.to_string())
            .ok_or_else(|| NotReachable::new("the client has no Telegram chat any more"))
    }

    /// The bot's limit (or its paid-broadcast ceiling), the chat's, and a group's.
    fn limits(&self, route: &Route<'_>) -> Vec<Limit> {
        let paid = route.telegram.is_some_and(|c| c.allow_paid_broadcast);
        self.limits.for_chat(route.bot_id, route.address, paid)
    }

    /// A 429 holds back every send of the bot, free and paid.
    fn pause_keys(&self, bot_id: &str) -> Vec<String> {
        vec![
            TelegramLimits::bot_key(bot_id),
            TelegramLimits::paid_key(bot_id),
        ]
    }

    /// The client's chat came from the configured bot (its /start): only that bot's "blocked"
    /// takes the client off Telegram. A registered bot the user never started is refused the
    /// same way, which fails just this message.
    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let result = self.post(msg).await;
            let mut events = Vec::new();
            match (&result, &msg.parts) {
                (Err(DeliveryError::Blocked(_)), Parts::Telegram(parts))
                    if parts.bot.id == self.configured_bot_id =>
                {
                    events.push(ChannelEvent::BlockedTheBot);
                }
                (Err(DeliveryError::Moved { to }), _) => {
                    if let (Ok(from), Ok(to)) = (msg.address.parse(), to.parse()) {
                        events.push(ChannelEvent::ChatMoved { from, to });
                    }
                }
                _ => {}
            }
            Attempt { result, events }
        })
    }
}

fn bad_request(what: impl std::fmt::Display) -> RequestError {
    RequestError::Api(ApiError::Unknown(format!("Bad Request: {what}")))
}

/// An album by `sendMediaGroup`: the text is the first item's caption, which Telegram shows
/// under the whole album.
async fn send_album(
    bot: &Bot,
    chat: ChatId,
    text: &str,
    parts: &TelegramParts<'_>,
) -> Result<Vec<Message>, RequestError> {
    let content = parts.content;
    if parts.media.len() != content.album.len() {
        return Err(bad_request("the media of this album are missing"));
    }
    let mode = content.parse_mode.map(parse_mode);
    let mut items = Vec::with_capacity(content.album.len());
    for (index, (item, media)) in content.album.iter().zip(&parts.media).enumerate() {
        let file = input_file(*media).map_err(bad_request)?;
        let caption = (index == 0 && !text.trim().is_empty()).then(|| text.to_string());
        items.push(match item.kind {
            TelegramKind::Photo => {
                let mut photo = InputMediaPhoto::new(file);
                photo.caption = caption;
                photo.parse_mode = mode.filter(|_| photo.caption.is_some());
                InputMedia::Photo(photo)
            }
            TelegramKind::Video => {
                let mut video = InputMediaVideo::new(file);
                video.caption = caption;
                video.parse_mode = mode.filter(|_| video.caption.is_some());
                InputMedia::Video(video)
            }
            TelegramKind::Document => {
                let mut document = InputMediaDocument::new(file);
                document.caption = caption;
                document.parse_mode = mode.filter(|_| document.caption.is_some());
                InputMedia::Document(document)
            }
            other => {
                return Err(bad_request(format!(
                    "an album cannot hold a {}",
                    other.as_str()
                )));
            }
        });
    }
    let mut request = bot.send_media_group(chat, items);
    if content.allow_paid_broadcast {
        request = request.allow_paid_broadcast(true);
    }
    request.await
}

async fn send_one(
    bot: &Bot,
    chat: ChatId,
    text: &str,
    parts: &TelegramParts<'_>,
) -> Result<Message, RequestError> {
    let content = parts.content;
    // Links were checked when the mailing was made; one that no longer parses is left out.
    let markup = keyboard(&content.buttons).unwrap_or_default();
    let mode = content.parse_mode.map(parse_mode);
    let paid = content.allow_paid_broadcast;
    let caption = (!text.trim().is_empty()).then_some(text);
    let file = match (content.kind, parts.media.first()) {
        (TelegramKind::Text, _) => None,
        (_, Some(media)) => Some(input_file(*media).map_err(bad_request)?),
        (_, None) => return Err(bad_request("the media of this message is missing")),
    };
    match (content.kind, file) {
        (TelegramKind::Photo, Some(file)) => {
            media_send!(bot.send_photo(chat, file), caption, mode, markup, paid)
        }
        (TelegramKind::Video, Some(file)) => {
            media_send!(bot.send_video(chat, file), caption, mode, markup, paid)
        }
        (TelegramKind::Voice, Some(file)) => {
            media_send!(bot.send_voice(chat, file), caption, mode, markup, paid)
        }
        (TelegramKind::Animation, Some(file)) => {
            media_send!(bot.send_animation(chat, file), caption, mode, markup, paid)
        }
        (TelegramKind::Document, Some(file)) => {
            media_send!(bot.send_document(chat, file), caption, mode, markup, paid)
        }
        (TelegramKind::VideoNote, Some(file)) => {
            // sendVideoNote takes no caption.
            let mut request = bot.send_video_note(chat, file);
            if let Some(markup) = markup {
                request = request.reply_markup(markup);
            }
            if paid {
                request = request.allow_paid_broadcast(true);
            }
            request.await
        }
        _ => {
            let mut request = bot.send_message(chat, text.to_string());
            if let Some(mode) = mode {
                request = request.parse_mode(mode);
            }
            if !content.link_preview {
                request = request.link_preview_options(no_link_preview());
            }
            if let Some(markup) = markup {
                request = request.reply_markup(markup);
            }
            if paid {
                request = request.allow_paid_broadcast(true);
            }
            request.await
        }
    }
}

fn no_link_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// The file_id Telegram gave the media of a sent message (the largest size of a photo).
fn file_id_of(message: &Message) -> Option<String> {
    if let Some(sizes) = message.photo() {
        return sizes
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
            .map(|p| p.file.id.0.clone());
    }
    message
        .video()
        .map(|v| &v.file)
        .or_else(|| message.animation().map(|a| &a.file))
        .or_else(|| message.voice().map(|v| &v.file))
        .or_else(|| message.video_note().map(|v| &v.file))
        .or_else(|| message.document().map(|d| &d.file))
        .map(|f| f.id.0.clone())
}

/// The Bot API's answer as a delivery error, counted in `blast_provider_errors_total`.
fn classify(error: RequestError) -> DeliveryError {
    let (kind, error) = sort_error(error);
    metrics::counter!("blast_provider_errors_total", "channel" => "telegram", "kind" => kind)
        .increment(1);
    error
}

fn sort_error(error: RequestError) -> (&'static str, DeliveryError) {
    match error {
        RequestError::RetryAfter(wait) => (
            "http_429",
            DeliveryError::RateLimited {
                retry_after: wait.duration(),
            },
        ),
        RequestError::MigrateToChatId(to) => (
            "migrated",
            DeliveryError::Moved {
                to: to.0.to_string(),
            },
        ),
        RequestError::Api(ApiError::ChatNotFound) => (
            "chat_not_found",
            DeliveryError::permanent("Bad Request: chat not found"),
        ),
        RequestError::Api(api) => {
            let description = api.to_string();
            if description.starts_with("Forbidden") || description.contains("bot was kicked") {
                // Blocked, deactivated, kicked, never started: nothing will reach them.
                ("blocked", DeliveryError::Blocked(description))
            } else if description.starts_with("Unauthorized") || description == "Not Found" {
                (
                    "unauthorized",
                    DeliveryError::Unavailable(format!(
                        "the Bot API refused the bot token (check telegram.bot_token): {description}"
                    )),
                )
            } else if description.starts_with("Bad Request") {
                ("bad_request", DeliveryError::Permanent(description))
            } else {
                // Server errors and anything else Telegram may get over.
                ("server", DeliveryError::transient(description))
            }
        }
        RequestError::Network(e) if e.is_timeout() => (
            "timeout",
            DeliveryError::Indeterminate(format!("Bot API: {e}")),
        ),
        RequestError::Network(e) if e.is_connect() => (
            "connect",
            DeliveryError::Unavailable(format!("cannot reach the Bot API: {e}")),
        ),
        RequestError::Network(e) => (
            "transport",
            DeliveryError::transient(format!("Bot API: {e}")),
        ),
        RequestError::InvalidJson { raw, .. } => (
            "malformed",
            DeliveryError::transient(format!(
                "the Bot API answered something that is not its JSON: {}",
                raw.chars().take(200).collect::<String>()
            )),
        ),
        RequestError::Io(e) => ("io", DeliveryError::transient(format!("Bot API: {e}"))),
    }
}

/// A stored media source as the worker resolves it: URLs and file_ids pass through.
pub fn direct_media(source: &MediaSource) -> Option<MediaRef<'_>> {
    match source {
        MediaSource::Url(url) => Some(MediaRef::Url(url)),
        MediaSource::FileId(id) => Some(MediaRef::FileId(id)),
        MediaSource::Upload(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_ids_come_from_the_public_part_of_the_token() {
        assert_eq!(bot_id_of("123456:AAE-secret_part"), Some("123456"));
        assert_eq!(bot_id_of("abc:AAE-secret_part"), None);
        assert_eq!(bot_id_of("123456"), None);
        assert_eq!(bot_id_of("123456:short"), None);
    }
}
