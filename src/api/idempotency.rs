//! `Idempotency-Key` on POST: the first response to a key is stored and returned to every
//! retry of the same request; the same key with a different request is refused.
//!
//! Like Stripe's, every response the handler gave is remembered, 5xx included: a server error
//! after a commit must not let the retry create the thing twice. The handler runs in its own
//! task, so a client that hangs up mid-request cannot leave the key half-claimed; a key whose
//! process died mid-request is taken over after `api.idempotency_lease_secs`.

use super::AppState;
use super::auth::{Tenant, bearer};
use super::error::ApiError;
use super::upload::{UploadRules, spool};
use crate::store::IdempotencyClaim;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sha2::{Digest, Sha256};

const HEADER: &str = "idempotency-key";

/// An import slot the middleware took for the request.
#[derive(Clone)]
pub struct HeldImportSlot(#[allow(dead_code)] pub std::sync::Arc<super::upload::Slot>);

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let applies = request.method() == Method::POST
        && request.headers().contains_key(HEADER)
        // Auth answers and inbox tokens carry secrets (a fresh token): never store them.
        && !request.uri().path().starts_with("/api/v1/auth/")
        && !request.uri().path().ends_with("/inbox-token");
    if !applies {
        return next.run(request).await;
    }
    match handle(state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

/// Read a body of at most `limit` bytes: too long is a 413, anything else broken a 400.
pub async fn read_body(
    body: Body,
    limit: usize,
    idle: std::time::Duration,
) -> Result<axum::body::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::too_large(limit)),
        Err(e) => Err(super::upload::body_error(e.as_ref(), idle)),
    }
}

/// The request's `Idempotency-Key`, if it has one: 1 to 255 visible characters, trimmed;
/// anything else is a 400. Handlers that keep the key themselves (a notification's event) read
/// it the same way.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| ApiError::bad_request("Idempotency-Key must be 1 to 255 visible characters"))
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, Response> {
    let (mut parts, body) = request.into_parts();
    // Without a valid token the handler answers 401 itself; nothing to remember.
    let Some(token) = bearer(&parts).map(str::to_owned) else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let Some(user) = super::auth::token_user(&state, &token)
        .await
        .map_err(IntoResponse::into_response)?
    else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    // Read once the caller is known: a request without a valid token is a 401 whatever its
    // key. The middleware runs only where the header is present.
    let key = idempotency_key(&parts.headers)
        .map_err(IntoResponse::into_response)?
        .unwrap_or_default();
    let large = matches!(
        parts.uri.path(),
        "/api/v1/clients/import" | "/api/v1/mailings"
    );
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(parts.uri.to_string().as_bytes());
    hasher.update(b"\n");
    // A large body is hashed as it is spooled to disk and handed on from there: never whole
    // in memory, and never stored (only the handler's answer is).
    if parts.uri.path() == "/api/v1/clients/import" {
        // The import's slot, held from before the upload is spooled until the import ends
        // (the handler finds it here and takes no second one).
        let slot = state
            .import_slot(user.id)
            .map_err(IntoResponse::into_response)?;
        parts
            .extensions
            .insert(HeldImportSlot(std::sync::Arc::new(slot)));
    }
    let rules = UploadRules::of(
        &state.settings.api,
        state.settings.api.import_body_limit_bytes,
    );
    let body = if large {
        let spooled = spool(body, rules)
            .await
            .map_err(IntoResponse::into_response)?;
        hasher.update(spooled.digest);
        let file = tokio::fs::File::from_std(spooled.file);
        Body::from_stream(tokio_util::io::ReaderStream::new(file))
    } else {
        let bytes = read_body(body, state.settings.api.body_limit_bytes, rules.idle)
            .await
            .map_err(IntoResponse::into_response)?;
        hasher.update(&bytes);
        Body::from(bytes)
    };
    let hash = hex::encode(hasher.finalize());
    let lease_ms = i64::try_from(
        state
            .settings
            .api
            .idempotency_lease_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX);

    match state
        .store
        .claim_idempotency_key(user.id, &key, &hash, lease_ms)
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

    let shows_secret = parts.uri.path() == "/api/v1/webhooks";
    parts.extensions.insert(Tenant(user.clone()));
    let request = Request::from_parts(parts, body);
    let store = state.store.clone();
    // Its own task: if the client hangs up, the request still completes and is remembered.
    let handled = tokio::spawn(async move {
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        // A secret is shown once: the stored answer leaves it out.
        let kept = if shows_secret {
            without_secret(&bytes)
        } else {
            bytes.to_vec()
        };
        // A refusal to try again later (too many at once, too slow) is not this request's
        // answer: the key is freed so that the retry is handled.
        let transient = matches!(
            parts.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT
        );
        let kept_or_freed = if transient {
            store.release_idempotency_key(user.id, &key).await
        } else {
            store
                .finish_idempotent(user.id, &key, parts.status.as_u16(), &kept)
                .await
        };
        if let Err(e) = kept_or_freed {
            tracing::warn!(error = %e, "cannot store the idempotent response; the key frees after its lease");
        }
        Response::from_parts(parts, Body::from(bytes))
    });
    handled.await.map_err(|e| {
        tracing::error!(error = %e, "request handler panicked");
        ApiError::internal().into_response()
    })
}

/// A JSON answer without its `secret` field (anything else is kept as it is).
fn without_secret(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) if map.contains_key("secret") => {
            map.remove("secret");
            serde_json::to_vec(&map).unwrap_or_default()
        }
        _ => body.to_vec(),
    }
}
