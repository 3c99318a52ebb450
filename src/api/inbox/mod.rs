//! The in-app inbox (`/api/v1/inbox/…`): what an end user's app calls with the inbox token the
//! tenant's backend got for it (`POST /api/v1/clients/{id}/inbox-token`). A WebSocket (or, as
//! a fallback, an event stream) pushes new items at once ([`live`]); REST lists them, counts
//! the unread and marks them.

mod live;

use super::AppState;
use super::auth::Tenant;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::app::inbox::InboxToken;
use crate::channels::inapp::{InboxClaims, InboxTokens};
use crate::ids::ClientId;
use crate::inbox::Hub;
use crate::store::{InboxCursor, InboxItem, InboxMark};
use crate::wire::Page;
use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::Sse;
use serde::{Deserialize, Serialize};

/// A client's unread items.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unread {
    pub unread: i64,
}

fn now_secs() -> i64 {
    crate::now_ms() / 1000
}

impl AppState {
    /// Makes and checks inbox tokens; the secret is read from the store on first use.
    async fn inbox_tokens(&self) -> ApiResult<&InboxTokens> {
        Ok(self
            .inbox_tokens
            .get_or_try_init(|| crate::app::inbox::tokens(&self.store))
            .await?)
    }

    /// This process's sockets, fed from the store or Redis from first use.
    async fn inbox_hub(&self) -> ApiResult<&Hub> {
        let queue = self.queue().await?;
        let inapp = &self.settings.inapp;
        Ok(self
            .inbox_hub
            .get_or_init(|| async {
                Hub::start(
                    &self.store,
                    queue,
                    inapp.max_sockets_per_client as usize,
                    inapp.send_buffer as usize,
                    self.shutdown.clone(),
                )
            })
            .await)
    }
}

/// Get an inbox token for a client: the credential its app opens its inbox with (the socket
/// and the `/api/v1/inbox` routes), good for `inapp.token_ttl_secs`.
#[utoipa::path(post, path = "/api/v1/clients/{id}/inbox-token", tag = "inbox",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 201, body = InboxToken), (status = 404, body = ErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<(StatusCode, Json<InboxToken>)> {
    let signer = state.inbox_tokens().await?;
    let ttl = state.settings.inapp.token_ttl_secs;
    let token = crate::app::inbox::token(&state.store, signer, user.id, id, ttl).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The client an inbox token opens: from `Authorization: Bearer …`, or `?token=…` (a browser
/// cannot set headers on a WebSocket).
pub struct InboxUser(pub InboxClaims);

impl FromRequestParts<AppState> for InboxUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<InboxUser> {
        let from_query = axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.token);
        let token = match super::auth::bearer(parts) {
            Some(token) => token.to_owned(),
            None => from_query.ok_or_else(|| {
                ApiError::unauthorized("an inbox token is required (bearer or ?token=)")
            })?,
        };
        let refused = || ApiError::unauthorized("the inbox token is not valid or has expired");
        let claimed = InboxTokens::claims(&token).ok_or_else(refused)?;
        let created_at = state
            .store
            .client_created_at(claimed.tenant_id, claimed.client_id)
            .await?
            .ok_or_else(refused)?;
        state
            .inbox_tokens()
            .await?
            .verify(&token, created_at, now_secs())
            .map(InboxUser)
            .ok_or_else(refused)
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ItemsQuery {
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The client's inbox, unread items first, newest first (archived items left out).
#[utoipa::path(get, path = "/api/v1/inbox/items", tag = "inbox", security(("bearer" = [])),
    params(ItemsQuery),
    responses((status = 200, body = Page<InboxItem>), (status = 401, body = ErrorBody)))]
pub async fn items(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiQuery(q): ApiQuery<ItemsQuery>,
) -> ApiResult<Json<Page<InboxItem>>> {
    let limit = super::clients::page_limit(&state, q.limit)?;
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            InboxCursor::parse(text)
                .ok_or_else(|| ApiError::invalid("cursor is not one this API gave"))?,
        ),
    };
    let (items, next_cursor) = state
        .store
        .inbox_items(claims.tenant_id, claims.client_id, cursor, limit)
        .await?;
    Ok(Json(Page { items, next_cursor }))
}

/// How many of the client's items are unread.
#[utoipa::path(get, path = "/api/v1/inbox/unread", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Unread), (status = 401, body = ErrorBody)))]
pub async fn unread(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
) -> ApiResult<Json<Unread>> {
    unread_of(&state, &claims).await.map(Json)
}

async fn unread_of(state: &AppState, claims: &InboxClaims) -> ApiResult<Unread> {
    Ok(Unread {
        unread: state
            .store
            .inbox_unread(claims.tenant_id, claims.client_id)
            .await?,
    })
}

async fn mark_one(
    state: &AppState,
    claims: &InboxClaims,
    id: i64,
    mark: InboxMark,
) -> ApiResult<Json<Unread>> {
    state
        .store
        .mark_inbox(claims.tenant_id, claims.client_id, Some(&[id]), mark)
        .await?;
    unread_of(state, claims).await.map(Json)
}

/// Mark an item read; answers the unread count.
#[utoipa::path(post, path = "/api/v1/inbox/items/{id}/read", tag = "inbox",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Unread), (status = 404, body = ErrorBody)))]
pub async fn read(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Unread>> {
    mark_one(&state, &claims, id, InboxMark::Read).await
}

/// Mark an item unread again; answers the unread count.
#[utoipa::path(post, path = "/api/v1/inbox/items/{id}/unread", tag = "inbox",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Unread), (status = 404, body = ErrorBody)))]
pub async fn mark_unread(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Unread>> {
    mark_one(&state, &claims, id, InboxMark::Unread).await
}

/// Archive an item: it leaves the list and the unread count for good.
#[utoipa::path(post, path = "/api/v1/inbox/items/{id}/archive", tag = "inbox",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Unread), (status = 404, body = ErrorBody)))]
pub async fn archive(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Unread>> {
    mark_one(&state, &claims, id, InboxMark::Archived).await
}

/// Items an app received and showed (over an event stream, say).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AckInput {
    /// At most 100 item ids.
    pub ids: Vec<i64>,
}

/// Acknowledge items: they become `delivered` (the webhooks hear it); answers the unread
/// count. Ids of another client's items change nothing.
#[utoipa::path(post, path = "/api/v1/inbox/ack", tag = "inbox", security(("bearer" = [])),
    request_body = AckInput,
    responses((status = 200, body = Unread), (status = 422, body = ErrorBody)))]
pub async fn ack(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiJson(input): ApiJson<AckInput>,
) -> ApiResult<Json<Unread>> {
    state
        .store
        .mark_inbox(
            claims.tenant_id,
            claims.client_id,
            Some(&input.ids),
            InboxMark::Delivered,
        )
        .await
        .or_else(|e| match e {
            // One id of another client (or archived): nothing to acknowledge.
            crate::store::StoreError::NotFound(_) => Ok(0),
            e => Err(e),
        })?;
    unread_of(&state, &claims).await.map(Json)
}

/// Mark every item read.
#[utoipa::path(post, path = "/api/v1/inbox/read-all", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Unread), (status = 401, body = ErrorBody)))]
pub async fn read_all(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
) -> ApiResult<Json<Unread>> {
    state
        .store
        .mark_inbox(claims.tenant_id, claims.client_id, None, InboxMark::Read)
        .await?;
    unread_of(&state, &claims).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LiveQuery {
    /// The last item id the app saw: it is sent every item after it first. None: only what
    /// comes from now on.
    pub after: Option<i64>,
}

/// The client's live inbox over a WebSocket (see [`live`] for the frames).
#[utoipa::path(get, path = "/api/v1/inbox/ws", tag = "inbox", security(("bearer" = [])),
    params(LiveQuery,
        ("token" = Option<String>, Query, description = "the inbox token, where a bearer header cannot be set")),
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 401, body = ErrorBody)))]
pub async fn socket(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiQuery(q): ApiQuery<LiveQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let hub = state.inbox_hub().await?.clone();
    let after = q.after.map(|after| after.max(0));
    // Small buffers: a server holds thousands of these, and the frames both ways are small
    // (tungstenite's default reserves 128 KiB of read buffer per socket).
    Ok(upgrade
        .read_buffer_size(live::READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_frame_size(live::MAX_FRAME_BYTES)
        .max_message_size(live::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| {
            let tracker = state.live_connections.clone();
            tracker.track_future(
                live::Live::new(state, claims, live::Outlet::Socket(Box::new(socket)))
                    .run(hub, after),
            )
        }))
}

/// The same as the WebSocket, as server-sent events, for where a WebSocket cannot go: each
/// frame is an event named by its `type` whose data is the frame, and an item's event id is
/// its id, so a reconnecting `EventSource` catches up by itself (`Last-Event-ID`).
/// Acknowledge and mark read over REST.
#[utoipa::path(get, path = "/api/v1/inbox/events", tag = "inbox", security(("bearer" = [])),
    params(LiveQuery,
        ("token" = Option<String>, Query, description = "the inbox token, where a bearer header cannot be set"),
        ("Last-Event-ID" = Option<i64>, Header, description = "the last item id seen (instead of `after`)")),
    responses((status = 200, content_type = "text/event-stream", body = String),
              (status = 401, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    InboxUser(claims): InboxUser,
    ApiQuery(q): ApiQuery<LiveQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<live::EventStream>> {
    let hub = state.inbox_hub().await?.clone();
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last_event_id.or(q.after).map(|after| after.max(0));
    let (outlet, stream) = live::Outlet::stream();
    let tracker = state.live_connections.clone();
    tokio::spawn(tracker.track_future(live::Live::new(state, claims, outlet).run(hub, after)));
    Ok(Sse::new(stream))
}
