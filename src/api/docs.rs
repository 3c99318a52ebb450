//! `/docs`: the API reference, rendered in the browser by Redoc from `/openapi.json`. Redoc's
//! script is vendored (assets/vendor/redoc) and embedded in the binary: the page loads nothing
//! from any other host, so it works offline and behind a strict firewall.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

/// Redoc 2.5.2's standalone bundle, as npm ships it.
const REDOC_JS: &[u8] = include_bytes!("../../assets/vendor/redoc/redoc.standalone.js");

/// Where the bundle is served; its version is in the path, so browsers may keep it for good.
macro_rules! redoc_path {
    () => {
        "/docs/redoc-2.5.2.standalone.js"
    };
}

/// Only this server's own scripts, styles and the document; Redoc styles its elements inline
/// and renders its search in a worker made from a blob.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:";

const PAGE: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>blast API reference</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src=""#,
    redoc_path!(),
    r#""></script>
</body>
</html>
"#
);

/// The routes of the reference page and its script.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(page))
        .route(redoc_path!(), get(script))
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)],
        Html(PAGE),
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        REDOC_JS,
    )
}
