//! A stand-in for the Telegram Bot API: `POST /bot<TOKEN>/<method>` (method names compared
//! without regard to case, since teloxide sends `SendMessage`), with JSON, form or multipart
//! bodies, answering as the Bot API documents.
//!
//! It enforces Telegram's limits with real 429s (`retry_after` in `parameters`): per bot
//! ([`TelegramStubOptions::bot_per_second`], or `paid_per_second` for a send with
//! `allow_paid_broadcast`), per chat (1/s) and per group chat (20/min). Each
//! is a GCRA bucket with [`TelegramStubOptions::tolerance`] of slack, so a sender that keeps to
//! the rate never sees a 429 and one that bursts past it does. Chosen chats answer as blocked
//! (403), deactivated (403), not found (400), upgraded to a supergroup (400 with
//! `migrate_to_chat_id`) or with a server error, see [`ChatFault`]. Uploaded files get a fresh
//! `file_id`; a send by `file_id` must name one the stub handed out to the same bot.
//!
//! `getMe` answers only for bots made known with [`TelegramStub::add_bot`], and 401
//! "Unauthorized" for any other token, as Telegram does for a wrong one. Other methods take any
//! token (the sends of a test need no registration).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// The limits the stub enforces.
#[derive(Debug, Clone)]
pub struct TelegramStubOptions {
    /// Messages per second per bot token.
    pub bot_per_second: u32,
    /// Messages per second per bot with `allow_paid_broadcast`.
    pub paid_per_second: u32,
    /// Messages per second to one chat.
    pub chat_per_second: u32,
    /// Messages per minute to one group chat (negative chat id).
    pub group_per_minute: u32,
    /// How far ahead of each rate a sender may run before it gets a 429.
    pub tolerance: Duration,
    /// Time to answer each request.
    pub latency: Duration,
}

impl Default for TelegramStubOptions {
    fn default() -> Self {
        TelegramStubOptions {
            bot_per_second: 30,
            paid_per_second: 1000,
            chat_per_second: 1,
            group_per_minute: 20,
            tolerance: Duration::from_millis(250),
            latency: Duration::ZERO,
        }
    }
}

/// How the stub answers sends to one chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFault {
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 403 "Forbidden: user is deactivated".
    Deactivated,
    /// 400 "Bad Request: chat not found".
    ChatNotFound,
    /// 400 with `parameters.migrate_to_chat_id`: the group became this supergroup.
    MigrateTo(i64),
    /// This 5xx status, the next `n` times; then normal answers.
    ServerError { status: u16, times: u32 },
    /// 429 with this `retry_after` (seconds), the next `times` times, whatever the rate.
    RetryAfter { seconds: u32, times: u32 },
    /// Accept the send, then hold the answer this long (the client times out).
    Hang(Duration),
}

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct BotRequest {
    pub token: String,
    /// The method name, lowercase (`sendmessage`, `sendphoto`, ...).
    pub method: String,
    /// `application/json`, `multipart/form-data`, ...
    pub content_type: String,
    /// Every non-file field; JSON-encoded form values (reply_markup) are parsed.
    pub fields: Map<String, Value>,
    /// Files uploaded in the body: (field, file name, bytes).
    pub files: Vec<(String, String, Vec<u8>)>,
    /// The HTTP status the stub answered.
    pub status: u16,
    /// When it arrived, relative to the stub's start.
    pub at: Duration,
}

impl BotRequest {
    pub fn chat_id(&self) -> Option<i64> {
        match self.fields.get("chat_id")? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The bot's id: the token's part before the colon.
    pub fn bot_id(&self) -> i64 {
        self.token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(1)
    }

    /// Whether the stub accepted it as a delivered message.
    pub fn delivered(&self) -> bool {
        self.status == 200 && self.method.starts_with("send")
    }
}

struct Limits {
    /// Theoretical arrival times (GCRA), by limit key.
    tats: HashMap<String, Instant>,
}

struct Inner {
    options: TelegramStubOptions,
    started: Instant,
    requests: Vec<BotRequest>,
    faults: HashMap<i64, ChatFault>,
    limits: Limits,
    /// file_ids handed out, by bot token.
    file_ids: HashMap<String, Vec<String>>,
    next_message_id: i64,
    /// Updates waiting for `getUpdates`, by bot token: (update_id, update).
    updates: HashMap<String, Vec<(i64, Value)>>,
    next_update_id: i64,
    /// Bots with a `getUpdates` in progress: a second one at the same time is refused with
    /// 409, as Telegram does.
    polling: HashSet<String>,
    /// Webhook URLs set by `setWebhook`, by bot token; `getUpdates` is refused while set.
    webhooks: HashMap<String, String>,
    /// The tokens `getMe` answers for, with the bot id it answers.
    bots: HashMap<String, i64>,
}

impl Inner {
    /// A new file_id for an upload, valid for this bot from now on.
    fn issue_file_id(&mut self, token: &str, field: &str, message_id: i64) -> String {
        let id = format!("stub-file-{field}-{message_id}");
        self.file_ids
            .entry(token.to_string())
            .or_default()
            .push(id.clone());
        id
    }
}

/// A running stub; stops when dropped.
pub struct TelegramStub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: oneshot::Sender<()>,
}

type Shared = Arc<Mutex<Inner>>;

impl TelegramStub {
    pub async fn start(options: TelegramStubOptions) -> std::io::Result<TelegramStub> {
        let inner = Arc::new(Mutex::new(Inner {
            options,
            started: Instant::now(),
            requests: Vec::new(),
            faults: HashMap::new(),
            limits: Limits {
                tats: HashMap::new(),
            },
            file_ids: HashMap::new(),
            next_message_id: 1,
            updates: HashMap::new(),
            next_update_id: 1,
            polling: HashSet::new(),
            webhooks: HashMap::new(),
            bots: HashMap::new(),
        }));
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::any(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(TelegramStub {
            addr,
            inner,
            _stop: stop,
        })
    }

    /// The API root to give the bot client (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Know `token` from now on: `getMe` answers with the bot its id (before the colon) names.
    pub fn add_bot(&self, token: &str) {
        let id = token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(1);
        self.add_bot_as(token, id);
    }

    /// Know `token` as the token of bot `id`, whatever its own prefix says (a token edited to
    /// borrow another bot's id).
    pub fn add_bot_as(&self, token: &str, id: i64) {
        self.lock().bots.insert(token.to_string(), id);
    }

    /// Answer sends to `chat_id` with `fault` from now on.
    pub fn set_fault(&self, chat_id: i64, fault: ChatFault) {
        self.lock().faults.insert(chat_id, fault);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<BotRequest> {
        self.lock().requests.clone()
    }

    /// The accepted sends so far.
    pub fn delivered(&self) -> Vec<BotRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.delivered())
            .cloned()
            .collect()
    }

    /// How many requests got a 429.
    pub fn too_many_requests(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == 429)
            .count()
    }

    /// Time since the stub started, on the clock of [`BotRequest::at`].
    pub fn elapsed(&self) -> Duration {
        self.lock().started.elapsed()
    }

    /// Queue a private-chat text message from a user, for the bot's `getUpdates`.
    pub fn push_user_message(&self, token: &str, chat_id: i64, first_name: &str, text: &str) {
        let mut inner = self.lock();
        let update_id = inner.next_update_id;
        inner.next_update_id += 1;
        let message_id = inner.next_message_id;
        inner.next_message_id += 1;
        let update = json!({
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "date": unix_now(),
                "chat": {"id": chat_id, "type": "private", "first_name": first_name},
                "from": {"id": chat_id, "is_bot": false, "first_name": first_name},
                "text": text,
            }
        });
        inner
            .updates
            .entry(token.to_string())
            .or_default()
            .push((update_id, update));
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// How long until one more send passes `key`; zero: now.
fn gcra_wait(limits: &Limits, key: &str, tolerance: Duration, now: Instant) -> Duration {
    let tat = limits.tats.get(key).copied().unwrap_or(now).max(now);
    (tat - now).saturating_sub(tolerance)
}

/// Charge one send to `key`.
fn gcra_take(limits: &mut Limits, key: String, count: u32, period: Duration, now: Instant) {
    let interval = period / count.max(1);
    let tat = limits.tats.get(&key).copied().unwrap_or(now).max(now);
    limits.tats.insert(key, tat + interval);
}

fn api_error(status: u16, description: &str, parameters: Option<Value>) -> (u16, Value) {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (status, body)
}

async fn handle(
    State(inner): State<Shared>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let Some(token) = bot.strip_prefix("bot").map(str::to_string) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let method = method.to_ascii_lowercase();
    // Limits count a request from its arrival, as Telegram sees it: reading a large upload's
    // body (slow on a loaded machine) must not move it closer to the next request.
    let arrived = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (fields, files) = match read_body(&content_type, request).await {
        Ok(parsed) => parsed,
        Err(e) => {
            let (status, body) = api_error(400, &format!("Bad Request: {e}"), None);
            return reply(status, body);
        }
    };
    if method == "getupdates" {
        return long_poll(&inner, token, content_type, fields).await;
    }
    let latency = inner.lock().map(|i| i.options.latency).unwrap_or_default();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, body, hang) = {
        let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut req = BotRequest {
            token: token.clone(),
            method: method.clone(),
            content_type: content_type.clone(),
            fields,
            files,
            status: 0,
            at: guard.started.elapsed(),
        };
        let (status, body, hang) = answer(&mut guard, &mut req, arrived);
        req.status = status;
        guard.requests.push(req);
        (status, body, hang)
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    reply(status, body)
}

/// `getUpdates` as Telegram answers it: held up to `timeout` seconds until an update comes,
/// refused with 409 while a webhook is set or another `getUpdates` of the bot is in progress.
async fn long_poll(
    inner: &Shared,
    token: String,
    content_type: String,
    fields: Map<String, Value>,
) -> Response {
    let number = |name: &str| {
        fields.get(name).and_then(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    };
    let offset = number("offset");
    let timeout = Duration::from_secs(number("timeout").unwrap_or(0).clamp(0, 50) as u64);
    let deadline = Instant::now() + timeout;
    let record = |guard: &mut Inner, status: u16| {
        let at = guard.started.elapsed();
        guard.requests.push(BotRequest {
            token: token.clone(),
            method: "getupdates".into(),
            content_type: content_type.clone(),
            fields: fields.clone(),
            files: Vec::new(),
            status,
            at,
        });
    };
    {
        let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
        let conflict = if guard.webhooks.contains_key(&token) {
            Some(
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            )
        } else if guard.polling.contains(&token) {
            Some(
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            )
        } else {
            None
        };
        if let Some(description) = conflict {
            record(&mut guard, 409);
            let (status, body) = api_error(409, description, None);
            return reply(status, body);
        }
        guard.polling.insert(token.clone());
    }
    // Ends the poll for the bot however this future ends, a client hanging up included.
    struct Polling<'a>(&'a Shared, &'a str);
    impl Drop for Polling<'_> {
        fn drop(&mut self) {
            let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            guard.polling.remove(self.1);
        }
    }
    let _polling = Polling(inner, &token);
    loop {
        {
            let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
            let queue = guard.updates.entry(token.clone()).or_default();
            if let Some(offset) = offset {
                queue.retain(|(id, _)| *id >= offset);
            }
            let result: Vec<Value> = queue.iter().map(|(_, u)| u.clone()).collect();
            if !result.is_empty() || Instant::now() >= deadline {
                record(&mut guard, 200);
                return reply(200, json!({"ok": true, "result": result}));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response()
}

/// The fields and files of a JSON, form or multipart body.
async fn read_body(
    content_type: &str,
    request: Request,
) -> Result<(Map<String, Value>, Vec<(String, String, Vec<u8>)>), String> {
    let mut fields = Map::new();
    let mut files = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| e.to_string())?;
        while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let data = field.bytes().await.map_err(|e| e.to_string())?;
            match file_name {
                Some(file_name) => files.push((name, file_name, data.to_vec())),
                None => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    fields.insert(name, form_value(text));
                }
            }
        }
    } else {
        let bytes: Bytes = axum::body::to_bytes(request.into_body(), 64 << 20)
            .await
            .map_err(|e| e.to_string())?;
        if content_type.starts_with("application/json") {
            if !bytes.is_empty() {
                let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                if let Value::Object(map) = value {
                    fields = map;
                }
            }
        } else {
            for pair in String::from_utf8_lossy(&bytes).split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    fields.insert(k.to_string(), form_value(v.to_string()));
                }
            }
        }
    }
    Ok((fields, files))
}

/// A form value as the Bot API reads it: JSON-serialized objects (reply_markup) are objects.
fn form_value(text: String) -> Value {
    if (text.starts_with('{') || text.starts_with('['))
        && let Ok(value) = serde_json::from_str(&text)
    {
        return value;
    }
    Value::String(text)
}

/// The media field each send method carries, and how its result is shaped.
fn media_field(method: &str) -> Option<&'static str> {
    Some(match method {
        "sendphoto" => "photo",
        "sendvideo" => "video",
        "sendvoice" => "voice",
        "sendvideonote" => "video_note",
        "sendanimation" => "animation",
        "senddocument" => "document",
        _ => return None,
    })
}

fn answer(
    inner: &mut Inner,
    req: &mut BotRequest,
    arrived: Instant,
) -> (u16, Value, Option<Duration>) {
    let method = req.method.clone();
    match method.as_str() {
        "getme" if inner.bots.contains_key(&req.token) => {
            let id = inner.bots.get(&req.token).copied().unwrap_or_default();
            return (
                200,
                json!({"ok": true, "result": {
                    "id": id, "is_bot": true, "first_name": "blast test bot",
                    "username": format!("blast_test_{id}_bot"), "can_join_groups": true,
                    "can_read_all_group_messages": false, "supports_inline_queries": false,
                }}),
                None,
            );
        }
        "getme" => {
            let (status, body) = api_error(401, "Unauthorized", None);
            return (status, body, None);
        }
        "setwebhook" => {
            let url = req.fields.get("url").and_then(Value::as_str).unwrap_or("");
            if url.is_empty() {
                inner.webhooks.remove(&req.token);
            } else {
                inner.webhooks.insert(req.token.clone(), url.to_string());
            }
            return (200, json!({"ok": true, "result": true}), None);
        }
        "deletewebhook" => {
            inner.webhooks.remove(&req.token);
            return (200, json!({"ok": true, "result": true}), None);
        }
        _ => {}
    }
    let is_send =
        method == "sendmessage" || method == "sendmediagroup" || media_field(&method).is_some();
    if !is_send {
        let (status, body) = api_error(404, "Not Found: method not found", None);
        return (status, body, None);
    }
    let Some(chat_id) = req.chat_id() else {
        let (status, body) = api_error(400, "Bad Request: chat_id is empty", None);
        return (status, body, None);
    };
    let now = arrived;
    let options = inner.options.clone();
    // A forced 429 counts before the limits, like an overloaded chat would.
    if let Some(ChatFault::RetryAfter { seconds, times }) = inner.faults.get_mut(&chat_id)
        && *times > 0
    {
        {
            *times -= 1;
            let seconds = *seconds;
            let (status, body) = api_error(
                429,
                &format!("Too Many Requests: retry after {seconds}"),
                Some(json!({"retry_after": seconds})),
            );
            return (status, body, None);
        }
    }
    let paid = matches!(
        req.fields.get("allow_paid_broadcast"),
        Some(Value::Bool(true))
    ) || req.str_field("allow_paid_broadcast") == Some("true");
    let mut layers = vec![
        if paid {
            (
                format!("paid:{}", req.token),
                options.paid_per_second,
                Duration::from_secs(1),
            )
        } else {
            (
                format!("bot:{}", req.token),
                options.bot_per_second,
                Duration::from_secs(1),
            )
        },
        (
            format!("chat:{}:{chat_id}", req.token),
            options.chat_per_second,
            Duration::from_secs(1),
        ),
    ];
    if chat_id < 0 {
        layers.push((
            format!("group:{}:{chat_id}", req.token),
            options.group_per_minute,
            Duration::from_secs(60),
        ));
    }
    // Check every layer before charging any, as Telegram refuses the message as a whole. An
    // album needs room for all its items (an idle bot takes any album: it cannot be split).
    let messages = message_count(req);
    let wait = layers
        .iter()
        .map(|(key, count, period)| {
            let room = (*period / (*count).max(1)) * (messages - 1);
            gcra_wait(
                &inner.limits,
                key,
                options.tolerance.saturating_sub(room),
                now,
            )
        })
        .max()
        .unwrap_or_default();
    if !wait.is_zero() {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let (status, body) = api_error(
            429,
            &format!("Too Many Requests: retry after {seconds}"),
            Some(json!({"retry_after": seconds})),
        );
        return (status, body, None);
    }
    // An album counts each of its items.
    for (key, count, period) in layers {
        for _ in 0..messages {
            gcra_take(&mut inner.limits, key.clone(), count, period, now);
        }
    }
    let mut hang = None;
    match inner.faults.get_mut(&chat_id) {
        Some(ChatFault::Blocked) => {
            let (s, b) = api_error(403, "Forbidden: bot was blocked by the user", None);
            return (s, b, None);
        }
        Some(ChatFault::Deactivated) => {
            let (s, b) = api_error(403, "Forbidden: user is deactivated", None);
            return (s, b, None);
        }
        Some(ChatFault::ChatNotFound) => {
            let (s, b) = api_error(400, "Bad Request: chat not found", None);
            return (s, b, None);
        }
        Some(ChatFault::MigrateTo(to)) => {
            let (s, b) = api_error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                Some(json!({"migrate_to_chat_id": *to})),
            );
            return (s, b, None);
        }
        Some(ChatFault::ServerError { status, times }) if *times > 0 => {
            *times -= 1;
            let (s, b) = api_error(*status, "Internal Server Error", None);
            return (s, b, None);
        }
        Some(ChatFault::Hang(d)) => hang = Some(*d),
        _ => {}
    }
    match message_result(inner, req, chat_id) {
        Ok(result) => (200, json!({"ok": true, "result": result}), hang),
        Err(description) => {
            let (s, b) = api_error(400, &description, None);
            (s, b, None)
        }
    }
}

/// The `Message` a successful send returns, shaped as the Bot API shapes it; an array of
/// them for `sendMediaGroup`.
fn message_result(inner: &mut Inner, req: &BotRequest, chat_id: i64) -> Result<Value, String> {
    if req.method == "sendmediagroup" {
        let items = album_items(req)?;
        // Refuse the album as a whole before any of it is "sent".
        let mut checked = Vec::with_capacity(items.len());
        for item in &items {
            let field = item.get("type").and_then(Value::as_str).unwrap_or_default();
            if !matches!(field, "photo" | "video" | "document" | "audio") {
                return Err(format!(
                    "Bad Request: wrong media type {field:?} in an album"
                ));
            }
            let media = item
                .get("media")
                .and_then(Value::as_str)
                .unwrap_or_default();
            checked.push((field, media.to_string(), item.get("caption").cloned()));
        }
        let group = format!("album{}", inner.next_message_id);
        let mut messages = Vec::with_capacity(checked.len());
        for (field, media, caption) in checked {
            let mut message = new_message(inner, req, chat_id);
            let message_id = message["message_id"].as_i64().unwrap_or_default();
            let file_id = file_id_for(inner, req, field, Some(&media), message_id)?;
            message[field] = file_json(field, &file_id, message_id);
            message["media_group_id"] = json!(group);
            if let Some(caption) = caption {
                message["caption"] = caption;
            }
            messages.push(message);
        }
        return Ok(Value::Array(messages));
    }
    let mut message = new_message(inner, req, chat_id);
    let message_id = message["message_id"].as_i64().unwrap_or_default();
    if req.method == "sendmessage" {
        let text = req.str_field("text").unwrap_or_default();
        if text.is_empty() {
            return Err("Bad Request: message text is empty".into());
        }
        message["text"] = json!(text);
        return Ok(message);
    }
    let field = media_field(&req.method).unwrap_or("document");
    let file_id = if req.files.iter().any(|(name, _, _)| name == field) {
        inner.issue_file_id(&req.token, field, message_id)
    } else {
        file_id_for(inner, req, field, req.str_field(field), message_id)?
    };
    if field == "animation" {
        // Telegram returns an animation together with a document of the same file.
        message["document"] =
            json!({"file_id": file_id, "file_unique_id": format!("u{message_id}d")});
    }
    message[field] = file_json(field, &file_id, message_id);
    if let Some(caption) = req.str_field("caption") {
        message["caption"] = json!(caption);
    }
    Ok(message)
}

/// The items of a `sendMediaGroup`: 2 to 10, as the Bot API demands.
fn album_items(req: &BotRequest) -> Result<Vec<Value>, String> {
    let items = match req.fields.get("media") {
        Some(Value::Array(items)) => items.clone(),
        _ => return Err("Bad Request: there is no media in the request".into()),
    };
    if !(2..=10).contains(&items.len()) {
        return Err("Bad Request: media group must include 2-10 items".into());
    }
    Ok(items)
}

/// How many messages a send is to the limits: each item of an album counts.
fn message_count(req: &BotRequest) -> u32 {
    match req.fields.get("media") {
        Some(Value::Array(items)) if req.method == "sendmediagroup" => items.len().max(1) as u32,
        _ => 1,
    }
}

fn new_message(inner: &mut Inner, req: &BotRequest, chat_id: i64) -> Value {
    let message_id = inner.next_message_id;
    inner.next_message_id += 1;
    let chat = if chat_id < 0 {
        json!({"id": chat_id, "type": "supergroup", "title": "a group"})
    } else {
        json!({"id": chat_id, "type": "private", "first_name": "someone"})
    };
    json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": chat,
        "from": {"id": req.bot_id(), "is_bot": true, "first_name": "blast test bot"},
    })
}

/// The file_id of a medium named in a field: `attach://<part>` (uploaded in this request), a
/// URL Telegram fetches, or a file_id this bot was given before.
fn file_id_for(
    inner: &mut Inner,
    req: &BotRequest,
    field: &str,
    value: Option<&str>,
    message_id: i64,
) -> Result<String, String> {
    match value {
        Some(value) if value.starts_with("attach://") => {
            let part = &value["attach://".len()..];
            if !req.files.iter().any(|(name, _, _)| name == part) {
                return Err(format!("Bad Request: file {part} not uploaded"));
            }
            Ok(inner.issue_file_id(&req.token, field, message_id))
        }
        Some(value) if value.starts_with("http://") || value.starts_with("https://") => {
            Ok(format!("stub-url-{field}-{message_id}"))
        }
        Some(value) if !value.is_empty() => {
            let known = inner
                .file_ids
                .get(&req.token)
                .is_some_and(|ids| ids.iter().any(|id| id == value));
            if !known {
                return Err("Bad Request: wrong file identifier/HTTP URL specified".into());
            }
            Ok(value.to_string())
        }
        _ => Err(format!("Bad Request: there is no {field} in the request")),
    }
}

/// A media object of the message, shaped per kind.
fn file_json(field: &str, file_id: &str, message_id: i64) -> Value {
    let unique = format!("u{message_id}");
    match field {
        "photo" => json!([
            {"file_id": format!("{file_id}-small"), "file_unique_id": format!("{unique}s"), "width": 90, "height": 90},
            {"file_id": file_id, "file_unique_id": unique, "width": 800, "height": 800}
        ]),
        "video" | "animation" => {
            json!({"file_id": file_id, "file_unique_id": unique, "width": 640, "height": 360, "duration": 3})
        }
        "voice" | "audio" => json!({"file_id": file_id, "file_unique_id": unique, "duration": 3}),
        "video_note" => {
            json!({"file_id": file_id, "file_unique_id": unique, "length": 240, "duration": 3})
        }
        _ => json!({"file_id": file_id, "file_unique_id": unique, "file_name": "file"}),
    }
}
