//! The console's session cookie: read, started, ended; and the sign-in form's own token.

use super::{ConsoleError, ConsoleState};
use crate::now_ms;
use crate::store::{ConsoleSession, User};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use subtle::ConstantTimeEq;

const COOKIE_NAME: &str = "blast_session";

/// The cookie that carries the sign-in form's token. A sign-in starts a session, so it is a
/// state-changing request too: without this, another site could sign a visitor in as the
/// attacker (login CSRF) and read what the visitor then types. The form carries the same
/// token; another site can neither read the cookie nor, SameSite=Strict, have it sent.
const SIGN_IN_COOKIE: &str = "blast_sign_in";

/// The value of the request's cookie `name`, if it has one.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The session token the request's cookie carries, if any.
pub(super) fn token(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE_NAME)
}

/// The sign-in form's token: the one the request's cookie already carries (so that two open
/// sign-in pages both work), else a new one; and the `Set-Cookie` value that carries it.
pub(super) fn sign_in_token(state: &ConsoleState, headers: &HeaderMap) -> (String, String) {
    let token = cookie_value(headers, SIGN_IN_COOKIE)
        .filter(|t| t.len() == 64)
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            hex::encode(bytes)
        });
    let cookie = Cookie::build((SIGN_IN_COOKIE, token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.api.public_url.starts_with("https://"))
        .path("/sign-in")
        .build();
    (token, cookie.to_string())
}

/// Whether a sign-in form's token is the one its cookie carries (compared in constant time).
pub(super) fn sign_in_token_matches(headers: &HeaderMap, given: &str) -> bool {
    cookie_value(headers, SIGN_IN_COOKIE)
        .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(given.as_bytes())))
}

/// The request's live session, if it has one.
pub(super) async fn current(
    state: &ConsoleState,
    headers: &HeaderMap,
) -> Result<Option<ConsoleSession>, ConsoleError> {
    let Some(token) = token(headers) else {
        return Ok(None);
    };
    by_token(state, &token).await
}

/// The live session of `token`, if it is one.
pub(super) async fn by_token(
    state: &ConsoleState,
    token: &str,
) -> Result<Option<ConsoleSession>, ConsoleError> {
    let limits = state.settings.console.session_limits();
    Ok(state.store.console_session(token, now_ms(), limits).await?)
}

/// Start a session for `user`; the answer is its `Set-Cookie` value.
pub(super) async fn start(state: &ConsoleState, user: &User) -> Result<String, ConsoleError> {
    let (token, _csrf) = state.store.start_console_session(user.id, now_ms()).await?;
    Ok(cookie(state, token).to_string())
}

/// End the request's session, if it has one.
pub(super) async fn end(state: &ConsoleState, headers: &HeaderMap) -> Result<(), ConsoleError> {
    if let Some(token) = token(headers) {
        state.store.end_console_session(&token).await?;
    }
    Ok(())
}

/// A `Set-Cookie` value that removes the session cookie.
pub(super) fn cleared_cookie(state: &ConsoleState) -> String {
    let mut removal = cookie(state, String::new());
    removal.make_removal();
    removal.to_string()
}

fn cookie(state: &ConsoleState, value: String) -> Cookie<'static> {
    Cookie::build((COOKIE_NAME, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.api.public_url.starts_with("https://"))
        .path("/")
        .build()
}

/// Whether a form's CSRF token is its session's (compared in constant time).
pub(super) fn csrf_matches(session: &ConsoleSession, given: &str) -> bool {
    bool::from(session.csrf.as_bytes().ct_eq(given.as_bytes()))
}

/// The request's live session, as a handler's argument: without one, the answer is the way to
/// the sign-in page.
pub(super) struct SignedIn(pub ConsoleSession);

impl FromRequestParts<ConsoleState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        match current(state, &parts.headers).await {
            Ok(Some(session)) => Ok(SignedIn(session)),
            Ok(None) => Err(Redirect::to("/sign-in").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}
