//! The one error shape of the API, `{"error": {"code": "...", "message": "..."}}`, and the JSON
//! body extractor that turns every malformed body into it.

use crate::domain::InvalidInput;
use crate::store::StoreError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// An API error: an HTTP status, a stable machine-readable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: bad_request, unauthorized, forbidden, not_found, method_not_allowed, conflict,
    /// request_timeout (a body that stopped arriving or came too slowly), payload_too_large,
    /// unsupported_media_type, validation_failed, rate_limited,
    /// bad_gateway (a service blast had to ask, such as Telegram, could not answer), internal.
    pub code: String,
    pub message: String,
    /// The request body's field at fault (`end_at`, `text`, …), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// A 413 naming the limit the body went past.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }
    /// A 401; the response names the scheme (`WWW-Authenticate: Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }
    /// A service the request needed (Telegram's Bot API) could not be asked or gave no usable
    /// answer: not the caller's mistake, and worth trying again later.
    pub fn bad_gateway(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", message)
    }
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field.map(str::to_owned),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"blast\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Invalid(e) => e.into(),
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(msg) => ApiError::conflict(msg),
            other => {
                tracing::error!(error = %other, "store failure while handling a request");
                ApiError::internal()
            }
        }
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> ApiError {
        let field = e.field();
        ApiError {
            field,
            ..ApiError::invalid(e.0)
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            // Well-formed JSON of the wrong shape: wrong types, unknown or missing fields.
            JsonRejection::JsonDataError(e) => ApiError::invalid(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

/// A body that could not be read: past the route's limit (413), stopped arriving (408), or
/// broken off (400).
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the configured limit",
            )
        } else if stopped_arriving(&rejection) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body stopped arriving",
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    }
}

/// Whether a body failed because it stopped arriving: the router's body timeout
/// (`api.body_read_timeout_secs`) ended it. That is a 408, not a malformed request.
pub fn stopped_arriving(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// `axum::Json` whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        // Read within the route's body limit, like axum::Json would.
        let limited = Request::from_parts(parts.clone(), body);
        let bytes = axum::body::Bytes::from_request(limited, state).await?;
        // PostgreSQL refuses NUL in text; both profiles refuse it here, with 422.
        if has_nul(&bytes) {
            return Err(ApiError::invalid(
                "text may not contain the NUL character (\\u0000)",
            ));
        }
        // The body is read (within the route's limit, kept in `parts`' extensions): parse it
        // here, with axum's own content-type rule.
        let req = Request::from_parts(parts, axum::body::Body::empty());
        if let Err(JsonRejection::MissingJsonContentType(e)) =
            axum::Json::<serde::de::IgnoredAny>::from_request(req, state).await
        {
            return Err(JsonRejection::MissingJsonContentType(e).into());
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// Whether a JSON text holds a NUL character: the escape `\u0000` outside an escaped
/// backslash (raw control characters are a syntax error already). The cheap byte search
/// decides almost every body; a hit is confirmed by parsing.
fn has_nul(json: &[u8]) -> bool {
    let lower = |b: &u8| b.to_ascii_lowercase();
    let hit = json
        .windows(6)
        .any(|w| w.iter().map(lower).eq(b"\\u0000".iter().copied()));
    if !hit {
        return false;
    }
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(walk),
            serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || walk(v)),
            _ => false,
        }
    }
    serde_json::from_slice::<serde_json::Value>(json).is_ok_and(|v| walk(&v))
}

pub type ApiResult<T> = Result<T, ApiError>;

/// An axum extractor whose rejections are a 400 [`ApiError`] naming what was wrong.
macro_rules! api_extractor {
    ($(#[$doc:meta])* $name:ident wraps $inner:ident, $what:literal) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<T, S> axum::extract::FromRequestParts<S> for $name<T>
        where
            T: DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                axum::extract::$inner::<T>::from_request_parts(parts, state)
                    .await
                    .map(|axum::extract::$inner(v)| $name(v))
                    .map_err(|e| ApiError::bad_request(format!(concat!("invalid ", $what, ": {}"), e.body_text())))
            }
        }
    };
}

api_extractor!(
    /// `axum::extract::Path` whose rejections are [`ApiError`]s.
    ApiPath wraps Path, "path"
);
api_extractor!(
    /// `axum::extract::Query` whose rejections are [`ApiError`]s.
    ApiQuery wraps Query, "query"
);
