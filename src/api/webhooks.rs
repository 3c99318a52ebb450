//! `/api/v1/webhooks`: URLs a tenant wants its delivery, mailing and notification events
//! posted to, signed with a secret given once at creation.

use super::AppState;
use super::auth::Tenant;
use super::error::{ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::store::{Webhook, WebhookDelivery};
use crate::wire::registrations::WebhookInput;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Vec<Webhook>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Tenant(user): Tenant,
) -> ApiResult<Json<Vec<Webhook>>> {
    Ok(Json(state.store.webhooks(user.id).await?))
}

/// Register a URL. The answer carries `secret`, the key of every event's `Blast-Signature`
/// (HMAC-SHA256 over "<t>.<body>"); it is not shown again. A URL whose host is or resolves
/// to a non-public address is refused (422) unless `webhooks.allow_private_addresses`.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookInput,
    security(("bearer" = [])),
    responses((status = 201, body = Webhook), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let webhook = crate::app::webhooks::add_webhook(
        &state.store,
        user.id,
        &input.url,
        &state.settings.webhooks,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(webhook)))
}

/// Forget a webhook and the events still owed to it.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    state.store.remove_webhook(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The latest 100 events of a webhook, newest first: what was posted, how often, and why a
/// posting failed.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Vec<WebhookDelivery>), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<WebhookDelivery>>> {
    Ok(Json(
        state
            .store
            .webhook_deliveries(user.id, id, crate::store::WEBHOOK_DELIVERIES_LISTED)
            .await?,
    ))
}
