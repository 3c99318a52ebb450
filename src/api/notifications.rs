//! Notifications (`/api/v1/notifications`): one event to one client over its preferred
//! channels; and what they need from a client: its web push subscriptions and its preferences.

use super::AppState;
use super::auth::Tenant;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::app::notifications;
use crate::ids::ClientId;
use crate::store::{
    NewPushSubscription, Notification, NotificationPreferences, StoredPushSubscription,
};
use crate::wire::notifications::NotificationInput;
use crate::wire::registrations::PushSubscriptionInput;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

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
    let new = input.into_new_notification(idempotency_key);
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
    ApiPath(id): ApiPath<ClientId>,
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
    ApiPath(id): ApiPath<ClientId>,
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
    ApiPath(id): ApiPath<ClientId>,
    ApiJson(input): ApiJson<PushSubscriptionInput>,
) -> ApiResult<(StatusCode, Json<StoredPushSubscription>)> {
    let new = input.into_new_subscription();
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

#[utoipa::path(get, path = "/api/v1/clients/{id}/push-subscriptions", tag = "notifications",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Vec<StoredPushSubscription>), (status = 404, body = ErrorBody)))]
pub async fn subscriptions(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<ClientId>,
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
