//! /api/v1/mailings: create, edit before the start, follow, pause, resume, cancel, retry.

use super::auth::Tenant;
use super::clients::{page_limit, parse_cursor};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, Page};
use crate::domain::{AudienceFilter, ChannelKind, MailingState, MessageState, Priority};
use crate::store::{
    Mailing, MailingPreview, MailingStats, MediaUpload, MessageRow, NewMailing, StateCounts,
};
use crate::telegram::{
    AlbumItem, MediaSource, ParseMode, TelegramContent, TelegramKind, UrlButton,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// A mailing as sent to create or replace one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailingInput {
    /// The message; a template over client fields and attributes: `Hi {{ name }}`.
    pub text: String,
    /// `sms` (default), `email`, `telegram` or `log`.
    #[serde(default = "default_channel")]
    #[schema(value_type = crate::domain::ChannelKind)]
    pub channel: String,
    /// Clients with any of these tags.
    #[serde(default)]
    #[schema(value_type = Vec<super::document::rules::TagName>)]
    pub tags: Vec<String>,
    /// Clients of any of these operator codes (with tags: clients matching both).
    #[serde(default)]
    pub operator_codes: Vec<String>,
    /// `all`: every client, asked for explicitly; then tags and operator codes stay empty. A
    /// mailing with neither a filter nor this is refused (422).
    pub audience: Option<AudienceChoice>,
    /// `high`, `medium` (default) or `low`.
    #[serde(default = "default_priority")]
    #[schema(value_type = super::document::rules::PriorityName)]
    pub priority: String,
    /// RFC 3339; default now.
    pub start_at: Option<DateTime<Utc>>,
    /// RFC 3339; default start + mailing.default_window_hours.
    pub end_at: Option<DateTime<Utc>>,
    /// "HH:MM-HH:MM": send only within these hours of each recipient's own day.
    pub local_hours: Option<String>,
    /// Email: the subject, a template like the text (required for email).
    pub subject: Option<String>,
    /// Email: the HTML body, a template like the text, sent beside the text.
    pub html: Option<String>,
    /// Telegram: the kind of message, its media and options (absent: a text message).
    pub telegram: Option<TelegramInput>,
}

/// An audience asked for by name rather than by filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudienceChoice {
    /// Every client of the tenant (reachable on the channel).
    All,
}

/// What a Telegram mailing sends beside its text (the caption of a media message).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramInput {
    /// text, photo, video, voice, video_note, animation, document or media_group
    pub kind: TelegramKind,
    /// Required for every kind but text and media_group.
    pub media: Option<MediaInput>,
    /// A media_group's items, 2 to 10: photos and videos, or documents only. The text is the
    /// album's caption.
    #[serde(default)]
    pub album: Vec<AlbumItemInput>,
    /// html or markdownv2; absent: plain text.
    pub parse_mode: Option<ParseMode>,
    /// Preview the first link of a text message (default true).
    #[serde(default = "default_true")]
    pub link_preview: bool,
    /// Rows of link buttons under the message.
    #[serde(default)]
    pub buttons: Vec<Vec<UrlButton>>,
    /// A paid broadcast: up to telegram.paid_per_second instead of ~30/s (charged in Stars).
    #[serde(default)]
    pub allow_paid_broadcast: bool,
    /// The name of one of your registered bots to send through; absent: the default bot.
    pub bot: Option<String>,
}

/// One photo, video or document of an album.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlbumItemInput {
    /// photo, video or document
    pub kind: TelegramKind,
    pub media: MediaInput,
}

/// A media file: `{"url": …}`, `{"file_id": …}` or `{"file": {"name": …, "base64": …}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaInput {
    Url(String),
    FileId(String),
    File(FileInput),
}

/// A file sent inline; it is stored with the mailing and uploaded to Telegram once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    pub name: String,
    /// The file's bytes, standard base64.
    pub base64: String,
}

fn default_true() -> bool {
    true
}

impl MediaInput {
    /// The medium as stored: a file given inline joins `uploads` and is named by its place
    /// there until it is stored.
    fn into_source(
        self,
        uploads: &mut Vec<MediaUpload>,
        max_upload_bytes: u64,
    ) -> ApiResult<MediaSource> {
        use base64::Engine;
        Ok(match self {
            MediaInput::Url(url) => MediaSource::Url(url),
            MediaInput::FileId(id) => MediaSource::FileId(id),
            MediaInput::File(file) => {
                let content = base64::engine::general_purpose::STANDARD
                    .decode(file.base64.trim())
                    .map_err(|e| ApiError::invalid(format!("media file: not base64: {e}")))?;
                if content.is_empty() || content.len() as u64 > max_upload_bytes {
                    return Err(ApiError::invalid(format!(
                        "media file: {} bytes; it must have 1 to {max_upload_bytes} (telegram.max_upload_bytes)",
                        content.len()
                    )));
                }
                let name = file.name.trim();
                if name.is_empty() || name.contains(['/', '\\']) {
                    return Err(ApiError::invalid("media file: give a plain file name"));
                }
                MediaUpload {
                    file_name: name.to_string(),
                    content,
                }
                .append_to(uploads)
            }
        })
    }
}

impl TelegramInput {
    fn into_content(self, max_upload_bytes: u64) -> ApiResult<(TelegramContent, Vec<MediaUpload>)> {
        let mut uploads = Vec::new();
        let media = self
            .media
            .map(|m| m.into_source(&mut uploads, max_upload_bytes))
            .transpose()?;
        let album = self
            .album
            .into_iter()
            .map(|item| {
                Ok(AlbumItem {
                    kind: item.kind,
                    media: item.media.into_source(&mut uploads, max_upload_bytes)?,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok((
            TelegramContent {
                kind: self.kind,
                media,
                album,
                parse_mode: self.parse_mode,
                link_preview: self.link_preview,
                buttons: self.buttons,
                allow_paid_broadcast: self.allow_paid_broadcast,
                bot: self.bot,
            },
            uploads,
        ))
    }
}

fn default_channel() -> String {
    "sms".into()
}

fn default_priority() -> String {
    "medium".into()
}

impl MailingInput {
    fn into_new_mailing(
        self,
        default_window_hours: u32,
        max_upload_bytes: u64,
    ) -> ApiResult<NewMailing> {
        let start_at = self
            .start_at
            .map_or_else(crate::now_ms, |t| t.timestamp_millis());
        let end_at = self.end_at.map_or(
            start_at + i64::from(default_window_hours) * 3_600_000,
            |t| t.timestamp_millis(),
        );
        let filter = AudienceFilter::requested(
            &self.tags,
            &self.operator_codes,
            self.audience == Some(AudienceChoice::All),
        )?;
        let (telegram, uploads) = match self.telegram {
            Some(input) => {
                let (content, uploads) = input.into_content(max_upload_bytes)?;
                (Some(content), uploads)
            }
            None => (None, Vec::new()),
        };
        Ok(NewMailing {
            channel: self.channel.parse::<ChannelKind>()?,
            text: self.text,
            filter,
            priority: self
                .priority
                .parse::<Priority>()
                .map_err(ApiError::invalid)?,
            start_at,
            end_at,
            local_hours: self.local_hours.as_deref().map(str::parse).transpose()?,
            subject: self.subject,
            html: self.html,
            telegram,
            uploads,
        })
    }
}

/// A mailing with its message counts per state.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailingView {
    #[serde(flatten)]
    pub mailing: Mailing,
    pub counts: StateCounts,
}

async fn view(state: &AppState, mailing: Mailing) -> ApiResult<MailingView> {
    let counts = state.store.mailing_counts(mailing.id).await?;
    Ok(MailingView { mailing, counts })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Mailings, newest first.
#[utoipa::path(get, path = "/api/v1/mailings", tag = "mailings", params(PageQuery),
    security(("bearer" = [])), responses((status = 200, body = Page<Mailing>)))]
pub async fn list(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Mailing>>> {
    let limit = page_limit(&state, q.limit)?;
    let before = parse_cursor(q.cursor.as_deref())?;
    let items = state.store.list_mailings(user.id, before, limit).await?;
    Ok(Json(Page::new(items, limit, |m| m.id)))
}

/// Create a mailing; it starts by itself at `start_at`.
#[utoipa::path(post, path = "/api/v1/mailings", tag = "mailings", request_body = MailingInput,
    security(("bearer" = [])),
    responses((status = 201, body = MailingView), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiJson(input): ApiJson<MailingInput>,
) -> ApiResult<(StatusCode, Json<MailingView>)> {
    let new = input.into_new_mailing(
        state.settings.mailing.default_window_hours,
        state.settings.telegram.max_upload_bytes,
    )?;
    let limits = state.settings.text_limits(new.channel);
    let mailing = crate::app::mailings::create(&state.store, user.id, new, limits).await?;
    Ok((StatusCode::CREATED, Json(view(&state, mailing).await?)))
}

#[utoipa::path(get, path = "/api/v1/mailings/{id}", tag = "mailings", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = MailingView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<MailingView>> {
    let mailing = state.store.mailing(user.id, id).await?;
    Ok(Json(view(&state, mailing).await?))
}

/// Replace a mailing that has not started yet.
#[utoipa::path(put, path = "/api/v1/mailings/{id}", tag = "mailings", request_body = MailingInput,
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = MailingView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<MailingInput>,
) -> ApiResult<Json<MailingView>> {
    let new = input.into_new_mailing(
        state.settings.mailing.default_window_hours,
        state.settings.telegram.max_upload_bytes,
    )?;
    let limits = state.settings.text_limits(new.channel);
    let mailing = crate::app::mailings::update(&state.store, user.id, id, new, limits).await?;
    Ok(Json(view(&state, mailing).await?))
}

/// Delete a mailing that is not being delivered, with its messages.
#[utoipa::path(delete, path = "/api/v1/mailings/{id}", tag = "mailings", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.store.delete_mailing(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/mailings/{id}/cancel", tag = "mailings", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = MailingView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<MailingView>> {
    let mailing = state.store.cancel_mailing(user.id, id).await?;
    state.announce_halt(id).await;
    Ok(Json(view(&state, mailing).await?))
}

#[utoipa::path(post, path = "/api/v1/mailings/{id}/pause", tag = "mailings", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = MailingView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<MailingView>> {
    let mailing = state.store.pause_mailing(user.id, id).await?;
    state.announce_halt(id).await;
    Ok(Json(view(&state, mailing).await?))
}

#[utoipa::path(post, path = "/api/v1/mailings/{id}/resume", tag = "mailings", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = MailingView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<MailingView>> {
    let mailing = state.store.resume_mailing(user.id, id).await?;
    Ok(Json(view(&state, mailing).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryResult {
    /// Messages queued again.
    pub retried: u64,
    pub mailing: MailingView,
}

/// Send the permanently failed messages again, within the mailing's window.
#[utoipa::path(post, path = "/api/v1/mailings/{id}/retry-failed", tag = "mailings",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = RetryResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_failed(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<RetryResult>> {
    let retried = state.store.retry_failed(user.id, id).await?;
    let mailing = state.store.mailing(user.id, id).await?;
    Ok(Json(RetryResult {
        retried,
        mailing: view(&state, mailing).await?,
    }))
}

/// How many clients a mailing would reach and its text for the first of them, without
/// creating it.
#[utoipa::path(post, path = "/api/v1/mailings/preview", tag = "mailings", request_body = MailingInput,
    security(("bearer" = [])), responses((status = 200, body = MailingPreview), (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiJson(input): ApiJson<MailingInput>,
) -> ApiResult<Json<MailingPreview>> {
    let new = input.into_new_mailing(
        state.settings.mailing.default_window_hours,
        state.settings.telegram.max_upload_bytes,
    )?;
    let preview = state
        .store
        .preview_mailing(
            user.id,
            &new,
            state.settings.text_limits(new.channel),
            state.settings.send_rate_per_second(new.channel),
        )
        .await?;
    Ok(Json(preview))
}

/// Counts per state and timings of one mailing.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailingStatsView {
    pub mailing_id: i64,
    #[schema(value_type = String)]
    pub state: MailingState,
    pub recipients: i64,
    pub counts: StateCounts,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Milliseconds from start to finish (or to now while running).
    pub duration_ms: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/mailings/{id}/stats", tag = "stats", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = MailingStatsView), (status = 404, body = ErrorBody)))]
pub async fn stats(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<MailingStatsView>> {
    let m = state.store.mailing(user.id, id).await?;
    let counts = state.store.mailing_counts(id).await?;
    Ok(Json(MailingStatsView {
        mailing_id: m.id,
        state: m.state,
        recipients: m.recipients,
        counts,
        started_at: m.started_at,
        finished_at: m.finished_at,
        duration_ms: m
            .started_at
            .map(|s| m.finished_at.unwrap_or_else(crate::now_ms) - s),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    /// Only messages in this state.
    pub state: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The messages of a mailing, one per recipient, with their state.
#[utoipa::path(get, path = "/api/v1/mailings/{id}/messages", tag = "stats", security(("bearer" = [])),
    params(("id" = i64, Path), MessageQuery),
    responses((status = 200, body = Page<MessageRow>), (status = 404, body = ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<MessageQuery>,
) -> ApiResult<Json<Page<MessageRow>>> {
    let limit = page_limit(&state, q.limit)?;
    let filter = q
        .state
        .as_deref()
        .map(str::parse::<MessageState>)
        .transpose()?;
    let items = state
        .store
        .list_messages(
            user.id,
            id,
            filter,
            parse_cursor(q.cursor.as_deref())?,
            limit,
        )
        .await?;
    Ok(Json(Page::new(items, limit, |m| m.id)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// A UTC day (YYYY-MM-DD): only messages whose state changed on it.
    pub day: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Counts per state of every mailing, newest first.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", security(("bearer" = [])), params(StatsQuery),
    responses((status = 200, body = Page<MailingStats>)))]
pub async fn all_stats(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<Page<MailingStats>>> {
    let limit = page_limit(&state, q.limit)?;
    let day = q
        .day
        .as_deref()
        .map(crate::report::utc_day_range)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let before = parse_cursor(q.cursor.as_deref())?.unwrap_or(i64::MAX);
    let mut items: Vec<MailingStats> = state
        .store
        .stats(user.id, day)
        .await?
        .into_iter()
        .filter(|s| s.mailing_id < before)
        .collect();
    items.sort_by_key(|s| std::cmp::Reverse(s.mailing_id));
    items.truncate(limit as usize);
    Ok(Json(Page::new(items, limit, |s| s.mailing_id)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressEvent {
    pub mailing_id: i64,
    #[schema(value_type = String)]
    pub state: MailingState,
    pub recipients: i64,
    pub counts: StateCounts,
}

/// One Server-Sent Event of a mailing's stream (the document's view; events are written as
/// they go).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    pub event: StreamEventKind,
    /// JSON: a `ProgressEvent` for `progress` and `done`; an `ErrorBody` for `error` (the
    /// token expired or the mailing was deleted: the stream ends).
    pub data: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StreamEventKind {
    Progress,
    Done,
    Error,
}

/// An `error` event: the stream ends.
fn error_event(code: &str, message: &str) -> Event {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    Event::default().event("error").data(body.to_string())
}

/// Live progress as Server-Sent Events: a `progress` event whenever the counts or the state
/// change, and a final `done` event when the mailing is done or cancelled.
#[utoipa::path(get, path = "/api/v1/mailings/{id}/events", tag = "mailings", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, content_type = "text/event-stream", body = StreamEvent),
              (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    state.store.mailing(user.id, id).await?;
    // Each stream reads the database twice a second: a tenant holds a bounded number.
    let slot = state.event_streams.take(
        user.id,
        state.settings.api.max_event_streams_per_tenant,
        "event streams",
    )?;
    let token = super::auth::bearer_token(&headers)
        .unwrap_or_default()
        .to_owned();
    let stop = state.shutdown.clone().cancelled_owned();
    let follow = Follow {
        state,
        tenant: user.id,
        mailing: id,
        token,
        last: None,
        finished: false,
        ticks: 0,
        _slot: slot,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        let event = f.next_event().await?;
        Some((Ok(event), f))
    })
    .take_until(stop);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One client following one mailing.
struct Follow {
    state: AppState,
    tenant: i64,
    mailing: i64,
    token: String,
    last: Option<String>,
    finished: bool,
    ticks: u32,
    /// The tenant's stream slot, given back when the stream ends.
    _slot: super::upload::Slot,
}

impl Follow {
    /// The next event to send, or `None` when the stream is over.
    async fn next_event(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        let mut interval = tokio::time::interval(Duration::from_millis(500));
        loop {
            interval.tick().await;
            self.ticks += 1;
            // A token that expired or whose user was disabled ends the stream (checked every 10 s).
            if self.ticks.is_multiple_of(20)
                && !matches!(
                    self.state.store.user_by_token(&self.token).await,
                    Ok(Some(_))
                )
            {
                self.finished = true;
                return Some(error_event("unauthorized", "the token is no longer valid"));
            }
            let Ok(progress) = progress(&self.state, self.tenant, self.mailing).await else {
                self.finished = true;
                return Some(error_event("not_found", "the mailing is no longer there"));
            };
            let data = serde_json::to_string(&progress).unwrap_or_default();
            if matches!(progress.state, MailingState::Done | MailingState::Cancelled) {
                self.finished = true;
                return Some(Event::default().event("done").data(data));
            }
            if self.last.as_deref() != Some(data.as_str()) {
                self.last = Some(data.clone());
                return Some(Event::default().event("progress").data(data));
            }
        }
    }
}

async fn progress(state: &AppState, tenant: i64, id: i64) -> ApiResult<ProgressEvent> {
    let m = state.store.mailing(tenant, id).await?;
    let counts = state.store.mailing_counts(id).await?;
    Ok(ProgressEvent {
        mailing_id: id,
        state: m.state,
        recipients: m.recipients,
        counts,
    })
}
