//! `/u/{token}`: the unsubscribe link in every email. No login: the signed token is the proof.
//! Only a POST unsubscribes: the one-click POST of mail programs (RFC 8058), or the button of
//! the page a GET shows. A GET alone changes nothing, because mail scanners and link previews
//! open every link they find. Unsubscribing twice is harmless.

use super::AppState;
use super::error::{ApiError, ApiPath, ApiResult, ErrorBody};
use crate::unsubscribe::UnsubscribeKeys;
use axum::extract::State;
use axum::response::Html;

/// The client a token names, when the token is genuine.
async fn client_of(state: &AppState, token: &str) -> ApiResult<i64> {
    let keys = state
        .unsubscribe
        .get_or_try_init(|| async {
            state
                .store
                .site_secret(UnsubscribeKeys::SECRET_NAME)
                .await
                .map(|secret| UnsubscribeKeys::new(&secret))
        })
        .await?;
    keys.verify(token).ok_or_else(not_found)
}

/// One answer for a forged token and for a deleted client: a link reveals nothing.
fn not_found() -> ApiError {
    ApiError::not_found("this unsubscribe link is not valid")
}

/// The confirmation page: one button that POSTs back to the same link.
#[utoipa::path(get, path = "/u/{token}", tag = "clients",
    params(("token" = String, Path, description = "the token of the email's unsubscribe link")),
    responses((status = 200, content_type = "text/html", body = String), (status = 404, body = ErrorBody)))]
pub async fn confirm_page(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<Html<&'static str>> {
    client_of(&state, &token).await?;
    Ok(Html(
        r#"<!doctype html><html><body><form method="post"><p>Stop receiving these emails?</p><button type="submit">Unsubscribe</button></form></body></html>"#,
    ))
}

/// Unsubscribe from email: the page's button, or one click in the mail program (RFC 8058,
/// `List-Unsubscribe-Post`).
#[utoipa::path(post, path = "/u/{token}", tag = "clients",
    params(("token" = String, Path, description = "the token of the email's unsubscribe link")),
    responses((status = 200, content_type = "text/html", body = String), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<Html<&'static str>> {
    let client_id = client_of(&state, &token).await?;
    if !state
        .store
        .opt_out_of_email(crate::ids::ClientId(client_id))
        .await?
    {
        return Err(not_found());
    }
    Ok(Html(
        "<!doctype html><html><body><p>You are unsubscribed: you will get no more of these emails.</p></body></html>",
    ))
}
