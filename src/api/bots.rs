//! `/api/v1/telegram-bots`: a tenant's own Telegram bots, which its mailings may name to go out
//! through them (each bot with its own limits). Tokens go in and never come back out.

use super::AppState;
use super::auth::Tenant;
use super::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};
use crate::app::bots::{BotRegistrationError, register_bot};
use crate::channels::DeliveryError;
use crate::settings::Secret;
use crate::store::RegisteredBot;
use crate::wire::registrations::BotInput;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

#[utoipa::path(get, path = "/api/v1/telegram-bots", tag = "telegram", security(("bearer" = [])),
    responses((status = 200, body = Vec<RegisteredBot>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Tenant(user): Tenant,
) -> ApiResult<Json<Vec<RegisteredBot>>> {
    Ok(Json(state.store.telegram_bots(user.id).await?))
}

/// Register a bot. Its token is checked with Telegram first (`getMe` at `telegram.api_url`):
/// a token Telegram refuses, or one of another bot than its id names, is a 422; a Bot API
/// that cannot be reached is a 502 (nothing is stored either way).
#[utoipa::path(post, path = "/api/v1/telegram-bots", tag = "telegram", request_body = BotInput,
    security(("bearer" = [])),
    responses((status = 201, body = RegisteredBot), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiJson(input): ApiJson<BotInput>,
) -> ApiResult<(StatusCode, Json<RegisteredBot>)> {
    let token = Secret::new(input.token);
    let bot = register_bot(
        &state.store,
        user.id,
        &input.name,
        &token,
        &state.settings.telegram,
    )
    .await
    .map_err(|e| match e {
        BotRegistrationError::Store(e) => ApiError::from(e),
        BotRegistrationError::Refused(reason) => ApiError::invalid(reason),
        BotRegistrationError::Unreachable(DeliveryError::Unavailable(reason)) => {
            ApiError::bad_gateway(reason)
        }
        BotRegistrationError::Unreachable(other) => ApiError::bad_gateway(other.to_string()),
    })?;
    Ok((StatusCode::CREATED, Json(bot)))
}

/// Forget a bot; refused (409) while an unfinished mailing names it.
#[utoipa::path(delete, path = "/api/v1/telegram-bots/{name}", tag = "telegram",
    security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.remove_telegram_bot(user.id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
