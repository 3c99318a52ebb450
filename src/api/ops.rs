//! Operational endpoints: liveness, readiness, Prometheus metrics.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub store: &'static str,
    pub queue: &'static str,
}

/// The store and the queue answer.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let store_ok = state.store.ping().await.is_ok();
    let queue_ok = match state.queue().await {
        Ok(queue) => queue.ping().await.is_ok(),
        Err(_) => false,
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if store_ok && queue_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            store: word(store_ok),
            queue: word(queue_ok),
        }),
    )
}

/// Prometheus metrics of this process. With `api.metrics_token` set, only a request bearing
/// that token gets them (401 otherwise): the counts name tenants and providers' errors.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security((), ("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    crate::metrics::exposition(state.settings.api.metrics_token.expose(), &headers)
}
