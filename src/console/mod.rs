//! The web console: server-rendered pages for operators, served beside the API by `blast up`
//! and `blast serve` at `/` (`console.enabled`). It calls the same use cases and store
//! functions as the API. Sessions live in the database (any process serves any request), in an
//! HttpOnly, SameSite=Strict cookie (Secure when `api.public_url` is https), and every
//! state-changing form carries the session's CSRF token. Nothing loads from another host.

mod pages;
mod session;

use crate::settings::Settings;
use crate::store::{Store, StoreError, is_plausible_user_name};
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pages::Pages;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Why a console page could not be made: the store or a template failed. The operator sees
/// a plain error page; the cause goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a console page cannot be rendered: {0}")]
    Template(#[from] minijinja::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "console page failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong; the server's log says what.",
        )
            .into_response()
    }
}

type PageResult = Result<Response, ConsoleError>;

struct Inner {
    store: Store,
    settings: Settings,
    pages: Pages,
    /// Sign-in attempts per client address and user name, as the API counts them.
    login_limiter: DefaultKeyedRateLimiter<(IpAddr, String)>,
    /// Sign-in attempts per client address.
    address_limiter: DefaultKeyedRateLimiter<IpAddr>,
}

#[derive(Clone)]
struct ConsoleState(Arc<Inner>);

/// The console's routes, for the API's router to serve beside its own.
pub fn routes<S: Clone + Send + Sync + 'static>(store: Store, settings: Settings) -> Router<S> {
    let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
    let state = ConsoleState(Arc::new(Inner {
        login_limiter: RateLimiter::keyed(per_minute(settings.api.login_attempts_per_minute)),
        address_limiter: RateLimiter::keyed(per_minute(
            settings.api.auth_attempts_per_minute_per_ip,
        )),
        pages: Pages::new(),
        store,
        settings,
    }));
    Router::new()
        .route("/", get(dashboard))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/console/assets/console.css", get(stylesheet))
        .with_state(state)
}

/// The dashboard: the tenant's latest mailings. Without a session, the sign-in page.
async fn dashboard(State(state): State<ConsoleState>, headers: HeaderMap) -> PageResult {
    let Some(session) = session::current(&state, &headers).await? else {
        return Ok(Redirect::to("/sign-in").into_response());
    };
    let mailings = state.store.list_mailings(session.user.id, None, 50).await?;
    let html = state.0.pages.dashboard(&session, &mailings)?;
    Ok(html.into_response())
}

async fn sign_in_page(State(state): State<ConsoleState>, headers: HeaderMap) -> PageResult {
    if session::current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(state.0.pages.sign_in("", None)?.into_response())
}

#[derive(Deserialize)]
struct SignIn {
    username: String,
    password: String,
}

/// Check the user name and password; a right pair starts a session and opens the dashboard.
async fn sign_in(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<SignIn>,
) -> PageResult {
    let refuse = |status: StatusCode, message: &str| -> PageResult {
        let page = state.0.pages.sign_in(&form.username, Some(message))?;
        Ok((status, page).into_response())
    };
    let client = peer.ip().to_canonical();
    if state.0.address_limiter.check_key(&client).is_err() {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts from this address; wait a minute.",
        );
    }
    const WRONG: &str = "Wrong user name or password.";
    if !is_plausible_user_name(&form.username) {
        return refuse(StatusCode::UNAUTHORIZED, WRONG);
    }
    if state
        .0
        .login_limiter
        .check_key(&(client, form.username.clone()))
        .is_err()
    {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts for this user from this address; wait a minute.",
        );
    }
    let Some(user) = state
        .store
        .verify_password(&form.username, &form.password)
        .await?
    else {
        return refuse(StatusCode::UNAUTHORIZED, WRONG);
    };
    let cookie = session::start(&state, &user).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

#[derive(Deserialize)]
struct Csrf {
    csrf: String,
}

/// End the session; the form must carry its CSRF token.
async fn sign_out(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> PageResult {
    let Some(current) = session::current(&state, &headers).await? else {
        return Ok(Redirect::to("/sign-in").into_response());
    };
    if !session::csrf_matches(&current, &form.csrf) {
        return Ok(state.0.pages.csrf_refused(&current)?.into_response());
    }
    session::end(&state, &headers).await?;
    Ok((
        [(header::SET_COOKIE, session::cleared_cookie(&state))],
        Redirect::to("/sign-in"),
    )
        .into_response())
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
}

impl std::ops::Deref for ConsoleState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
