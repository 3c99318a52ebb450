//! Notifications (`/api/v1/notifications`): one event to one client over its preferred
//! channels; and what they need from a client: its web push subscriptions and its preferences.

use super::AppState;
use super::auth::Tenant;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::app::notifications;
use crate::domain::Priority;
use crate::notify::Event;
use crate::store::{
    NewNotification, NewPushSubscription, Notification, NotificationPreferences,
    StoredPushSubscription,
};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

/// One event for one client.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationInput {
    pub client_id: i64,
    /// One line, at most 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// At most 1000 characters.
    #[serde(default)]
    pub body: String,
    /// Free JSON for the receiving app (a web push carries it), at most 1 KB.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Where the event leads: an http(s) URL.
    pub link: Option<String>,
    /// high (default), medium or low.
    #[schema(value_type = Option<super::document::rules::PriorityName>)]
    pub priority: Option<Priority>,
    /// Deliver even in the client's quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// Hold it this many minutes, and send the events that arrive meanwhile for the same
    /// client and `coalesce_key` with it as one digest.
    #[serde(default)]
    pub coalesce_minutes: u32,
    /// Which events coalesce together (default: all of the client's coalescing events).
    pub coalesce_key: Option<String>,
}

/// Send a notification. With an `Idempotency-Key` header a repeated key notifies once: while
/// the API's replay cache holds the key (`api.idempotency_ttl_secs`) it answers exactly as the
/// first time (201), and after that 200 with the notification the first request made.
#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications",
    request_body = NotificationInput, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Notification), (status = 200, body = Notification),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    headers: HeaderMap,
    ApiJson(input): ApiJson<NotificationInput>,
) -> ApiResult<(StatusCode, Json<Notification>)> {
    let idempotency_key = super::idempotency::idempotency_key(&headers)?;
    let new = NewNotification {
        client_id: input.client_id,
        event: Event {
            title: input.title,
            body: input.body,
            data: input.data,
            link: input.link,
        },
        priority: input.priority.unwrap_or(Priority::High),
        urgent: input.urgent,
        coalesce_minutes: input.coalesce_minutes,
        coalesce_key: input.coalesce_key,
        idempotency_key,
    };
    let (notification, created) =
        notifications::notify(&state.store, user.id, new, &state.settings.notifications).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(notification)))
}

/// A notification: where it stands, which channels were tried, its events.
#[utoipa::path(get, path = "/api/v1/notifications/{id}", tag = "notifications",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Notification), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Notification>> {
    Ok(Json(state.store.notification(user.id, id).await?))
}

/// A client's channel order and quiet hours (the configured defaults if it has none).
#[utoipa::path(get, path = "/api/v1/clients/{id}/notification-preferences", tag = "notifications",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = NotificationPreferences), (status = 404, body = ErrorBody)))]
pub async fn get_preferences(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<NotificationPreferences>> {
    Ok(Json(
        notifications::preferences(&state.store, user.id, id, &state.settings.notifications)
            .await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/clients/{id}/notification-preferences", tag = "notifications",
    request_body = NotificationPreferences, security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = NotificationPreferences), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn put_preferences(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<NotificationPreferences>,
) -> ApiResult<Json<NotificationPreferences>> {
    Ok(Json(
        notifications::set_preferences(&state.store, user.id, id, &input).await?,
    ))
}

/// Store a browser's `PushSubscription` (its `toJSON()`) for a client. Subscribing the same
/// endpoint again replaces its keys. An endpoint whose host is or resolves to a non-public
/// address is refused (422) unless `webpush.allow_private_addresses`.
#[utoipa::path(post, path = "/api/v1/clients/{id}/push-subscriptions", tag = "notifications",
    request_body = NewPushSubscription, security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 201, body = StoredPushSubscription), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn subscribe(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PushSubscriptionInput>,
) -> ApiResult<(StatusCode, Json<StoredPushSubscription>)> {
    let new = NewPushSubscription {
        endpoint: input.endpoint,
        keys: input.keys,
    };
    let stored = crate::app::push::add_push_subscription(
        &state.store,
        user.id,
        id,
        &new,
        &state.settings.webpush,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// A browser's `PushSubscription.toJSON()`; `expirationTime` is accepted and ignored (push
/// services answer 404/410 when a subscription ends, and blast deletes it then).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PushSubscriptionInput {
    pub endpoint: String,
    pub keys: crate::store::PushKeys,
    #[serde(default, rename = "expirationTime")]
    #[allow(dead_code)]
    pub expiration_time: Option<serde_json::Value>,
}

#[utoipa::path(get, path = "/api/v1/clients/{id}/push-subscriptions", tag = "notifications",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Vec<StoredPushSubscription>), (status = 404, body = ErrorBody)))]
pub async fn subscriptions(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<StoredPushSubscription>>> {
    Ok(Json(
        state.store.list_push_subscriptions(user.id, id).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/push-subscriptions/{id}", tag = "notifications",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.store.remove_push_subscription(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
