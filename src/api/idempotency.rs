//! `Idempotency-Key` on POST: the first response to a key is stored and returned to every
//! retry of the same request; the same key with a different request is refused.

use super::AppState;
use super::auth::{Tenant, bearer};
use super::error::ApiError;
use crate::store::IdempotencyClaim;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const HEADER: &str = "idempotency-key";

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(HEADER) {
        return next.run(request).await;
    }
    match handle(state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, Response> {
    let key = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible characters")
                .into_response()
        })?;
    let (mut parts, body) = request.into_parts();
    // Without a valid token the handler answers 401 itself; nothing to remember.
    let Some(token) = bearer(&parts).map(str::to_owned) else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let Some(user) = state
        .store
        .user_by_token(&token)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let limit = state.settings.api.import_body_limit_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the configured limit",
        )
        .into_response()
    })?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(parts.uri.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash = hex::encode(hasher.finalize());

    match state
        .store
        .claim_idempotency_key(user.id, &key, &hash)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    {
        IdempotencyClaim::Done { status, body } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        IdempotencyClaim::InProgress => {
            return Err(ApiError::conflict(
                "a request with this Idempotency-Key is still being handled; retry later",
            )
            .into_response());
        }
        IdempotencyClaim::Mismatch => {
            return Err(
                ApiError::invalid("this Idempotency-Key was used for a different request")
                    .into_response(),
            );
        }
        IdempotencyClaim::Fresh => {}
    }

    parts.extensions.insert(Tenant(user.clone()));
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            let _ = state.store.release_idempotency_key(user.id, &key).await;
            return Err(ApiError::internal().into_response());
        }
    };
    // A failure on our side is not remembered: the client's retry deserves a real attempt.
    let remembered = if parts.status.is_server_error() {
        state.store.release_idempotency_key(user.id, &key).await
    } else {
        state
            .store
            .finish_idempotent(user.id, &key, parts.status.as_u16(), &bytes)
            .await
    };
    if let Err(e) = remembered {
        tracing::warn!(error = %e, "cannot store the idempotent response");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
