//! /api/v1/mailings: create, edit before the start, follow, pause, resume, cancel, retry.

use super::auth::Tenant;
use super::clients::{page_limit, parse_cursor};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, Page};
use crate::app::progress::{Follow, ProgressEvent, Step};
use crate::domain::{MailingState, MessageState};
use crate::ids::MailingId;
use crate::store::{Mailing, MailingPreview, MailingStats, MessageRow, StateCounts};
use crate::wire::mailings::{MailingInput, MailingView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa::{IntoParams, ToSchema};

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
    Ok(Json(Page::new(items, limit, |m| m.id.0)))
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    pub mailing_id: MailingId,
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
    ApiPath(id): ApiPath<MailingId>,
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
    ApiPath(id): ApiPath<MailingId>,
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
    Ok(Json(Page::new(items, limit, |m| m.id.0)))
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
        .filter(|s| s.mailing_id.0 < before)
        .collect();
    items.sort_by_key(|s| std::cmp::Reverse(s.mailing_id));
    items.truncate(limit as usize);
    Ok(Json(Page::new(items, limit, |s| s.mailing_id.0)))
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
    ApiPath(id): ApiPath<MailingId>,
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
    let store = state.store.clone();
    let follow = (
        Follow::new(state.store.clone(), user.id, id),
        store,
        token,
        slot,
    );
    let stream = futures::stream::unfold(follow, |(mut f, store, token, slot)| async move {
        // A token that expired or whose user was disabled ends the stream.
        let still_allowed = || {
            let (store, token) = (store.clone(), token.clone());
            async move { matches!(store.user_by_token(&token).await, Ok(Some(_))) }
        };
        let event = match f.next(still_allowed).await? {
            Step::Progress(p) => Event::default().event("progress").data(json(&p)),
            Step::Done(p) => Event::default().event("done").data(json(&p)),
            Step::Gone => error_event("not_found", "the mailing is no longer there"),
            Step::Unauthorized => error_event("unauthorized", "the token is no longer valid"),
        };
        Some((Ok(event), (f, store, token, slot)))
    })
    .take_until(stop);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn json(progress: &ProgressEvent) -> String {
    serde_json::to_string(progress).unwrap_or_default()
}
