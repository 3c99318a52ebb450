//! The web console: server-rendered pages for operators, served beside the API by `blast up`
//! and `blast serve` at `/` (`console.enabled`). It calls the same use cases and store
//! functions as the API. Sessions live in the database (any process serves any request), in an
//! HttpOnly, SameSite=Strict cookie (Secure when `api.public_url` is https), and every
//! state-changing form carries the session's CSRF token. Nothing loads from another host.

mod actions;
mod activity;
mod bots;
mod clients;
mod mailing_form;
mod pages;
mod session;
mod stats;
mod tokens;
mod webhooks;

use crate::app::progress::{Board, BoardStep, Follow, ProgressEvent, Step};
use crate::domain::{ChannelKind, MailingState, MessageState};
use crate::ids::{MailingId, TenantId};
use crate::settings::Settings;
use crate::store::{ConsoleSession, MailingFilter, Store, StoreError};
use actions::Action;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use futures::future::BoxFuture;
use pages::Pages;
use serde::Deserialize;
use session::SignedIn;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    /// What the API hands the console, so that both act alike.
    api: FromApi,
    activity: Arc<activity::ActivityCache>,
}

/// What the API shares with the console it serves.
pub struct FromApi {
    /// Tells the workers of every process that a mailing was paused or cancelled: what the
    /// API does after a pause or a cancel.
    pub announce_halt: Arc<dyn Fn(MailingId) -> BoxFuture<'static, ()> + Send + Sync>,
    /// One of the tenant's live event streams (`api.max_event_streams_per_tenant`, counted
    /// with the API's own), held until dropped; None when the tenant has them all.
    pub stream_slot: Arc<dyn Fn(TenantId) -> Option<Box<dyn Send + Sync>> + Send + Sync>,
    /// Fires when the server shuts down: live streams end.
    pub shutdown: CancellationToken,
    /// Whether a password may be tried for a user name now: the API's login limits (per
    /// client address behind `api.trusted_proxies`, and per address and user), counted with
    /// the API's own logins.
    pub check_sign_in: SignInCheck,
    /// Forgets the tokens the API checked lately, so that a token revoked here is refused
    /// at once by this process's API.
    pub forget_tokens: Arc<dyn Fn() + Send + Sync>,
    /// Imports a body of clients (CSV by its Content-Type) for a tenant with the API's own
    /// limits, answering as `POST /api/v1/clients/import` does (`skip_invalid` as its query).
    pub import_clients: ImportClients,
}

/// See [`FromApi::import_clients`].
pub type ImportClients = Arc<
    dyn Fn(TenantId, HeaderMap, bool, axum::body::Body) -> BoxFuture<'static, Response>
        + Send
        + Sync,
>;

/// Asks whether a password may be tried for a user name now, from a client address and the
/// request's headers.
pub type SignInCheck =
    Arc<dyn Fn(SocketAddr, &HeaderMap, &str) -> Result<(), SignInRefused> + Send + Sync>;

/// Why a password may not be tried now.
#[derive(Debug)]
pub struct SignInRefused {
    /// Too many attempts (429); otherwise a name that cannot exist (401).
    pub limited: bool,
    pub message: String,
}

#[derive(Clone)]
struct ConsoleState(Arc<Inner>);

/// The console's routes, for the API's router to serve beside its own.
pub fn routes<S: Clone + Send + Sync + 'static>(
    store: Store,
    settings: Settings,
    api: FromApi,
) -> Router<S> {
    let state = ConsoleState(Arc::new(Inner {
        pages: Pages::new(),
        activity: activity::ActivityCache::new(
            store.clone(),
            settings.console.activity_refresh_secs,
        ),
        api,
        store,
        settings,
    }));
    Router::new()
        .route("/", get(dashboard))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/mailings", get(mailings_page))
        .route("/mailings/{id}", get(mailing_page))
        .route("/mailings/{id}/events", get(mailing_events))
        .route("/dashboard/events", get(dashboard_events))
        .route("/dashboard/activity", get(dashboard_activity))
        .route("/console/assets/mailing.js", get(mailing_script))
        .route("/console/assets/dashboard.js", get(dashboard_script))
        .route("/mailings/{id}/{action}", get(confirm_page).post(act))
        .route("/console/assets/console.css", get(stylesheet))
        .merge(tokens::routes())
        .merge(webhooks::routes())
        .merge(bots::routes())
        .merge(mailing_form::routes())
        .merge(clients::routes())
        .route("/stats", get(stats::stats_page))
        .route("/console/assets/mailing_form.js", get(mailing_form_script))
        .route("/console/assets/import.js", get(import_script))
        .with_state(state)
}

/// Scheduled, running and paused mailings the dashboard shows with live progress bars.
const BOARD_SHOWN: u32 = 20;

/// The dashboard: the scheduled, running and paused mailings with their progress, today's
/// activity, the latest mailings. Without a session, the sign-in page.
async fn dashboard(State(state): State<ConsoleState>, SignedIn(session): SignedIn) -> PageResult {
    let tenant = session.user.id;
    let board = Board::now(&state.store, tenant, BOARD_SHOWN).await?;
    let mailings = state.store.list_mailings(tenant, None, 20).await?;
    let activity = state.activity.cached(tenant);
    let html = state
        .0
        .pages
        .dashboard(&session, &board, &mailings, activity.as_deref())?;
    Ok(html.into_response())
}

/// The dashboard's activity alone, fresh: what its script puts in place of the placeholder a
/// dashboard shows before the tenant's first activity is read.
async fn dashboard_activity(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
) -> PageResult {
    let activity = state.activity.fresh(session.user.id).await?;
    Ok(state.pages.activity(&activity)?.into_response())
}

/// The dashboard's live progress bars, as Server-Sent Events: `progress` with the mailings
/// that are new on the board or moved and those deleted, `error` when the session ended.
async fn dashboard_events(State(state): State<ConsoleState>, headers: HeaderMap) -> PageResult {
    let Some(session) = session::current(&state, &headers).await? else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    let Some(slot) = (state.api.stream_slot)(session.user.id) else {
        return Ok(StatusCode::TOO_MANY_REQUESTS.into_response());
    };
    let token = session::token(&headers).unwrap_or_default();
    let stop = state.api.shutdown.clone().cancelled_owned();
    let board = Board::new(state.store.clone(), session.user.id, BOARD_SHOWN);
    let stream = futures::stream::unfold(
        (board, state, token, slot),
        |(mut board, state, token, slot)| async move {
            let still_allowed = || {
                let (state, token) = (state.clone(), token.clone());
                async move { matches!(session::by_token(&state, &token).await, Ok(Some(_))) }
            };
            let event = match board.next(still_allowed).await? {
                BoardStep::Changed { rows, gone } => {
                    let rows: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|r| {
                            let mut json = progress_json(&r.progress);
                            json["id"] = r.progress.mailing_id.0.into();
                            json["channel"] = r.channel.as_str().into();
                            json
                        })
                        .collect();
                    let data = serde_json::json!({ "mailings": rows, "gone": gone });
                    Event::default().event("progress").data(data.to_string())
                }
                BoardStep::Unauthorized => Event::default().event("error").data("signed out"),
            };
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (board, state, token, slot),
            ))
        },
    )
    .take_until(stop);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn sign_in_page(State(state): State<ConsoleState>, headers: HeaderMap) -> PageResult {
    if session::current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    sign_in_form(&state, &headers, StatusCode::OK, "", None)
}

/// The sign-in page with its form's token, answered with `status`.
fn sign_in_form(
    state: &ConsoleState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> PageResult {
    let (token, cookie) = session::sign_in_token(state, headers);
    let page = state.pages.sign_in(username, &token, error)?;
    Ok((status, [(header::SET_COOKIE, cookie)], page).into_response())
}

#[derive(Deserialize)]
struct SignIn {
    username: String,
    password: String,
    /// The sign-in form's own token (see `session::sign_in_token`).
    #[serde(default)]
    token: String,
}

/// Check the user name and password; a right pair starts a session and opens the dashboard.
async fn sign_in(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> PageResult {
    let refuse = |status: StatusCode, message: &str| -> PageResult {
        sign_in_form(&state, &headers, status, &form.username, Some(message))
    };
    if !session::sign_in_token_matches(&headers, &form.token) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This sign-in form did not come from this site's page: sign in here again.",
        );
    }
    const WRONG: &str = "Wrong user name or password.";
    if let Err(refused) = (state.api.check_sign_in)(peer, &headers, &form.username) {
        return if refused.limited {
            refuse(StatusCode::TOO_MANY_REQUESTS, &refused.message)
        } else {
            refuse(StatusCode::UNAUTHORIZED, WRONG)
        };
    }
    let Some(user) = state
        .store
        .verify_password(&form.username, &form.password)
        .await?
    else {
        return refuse(StatusCode::UNAUTHORIZED, WRONG);
    };
    let cookie = session::start(&state, &user).await?;
    // The dashboard comes next: its activity is read meanwhile.
    state.activity.cached(user.id);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

#[derive(Deserialize)]
struct Csrf {
    csrf: String,
}

/// End the session; the form must carry its CSRF token.
async fn sign_out(
    State(state): State<ConsoleState>,
    SignedIn(current): SignedIn,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> PageResult {
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

/// The page another tenant's (or no) mailing gets: 404, and nothing about it.
fn not_found(state: &ConsoleState, session: &ConsoleSession) -> PageResult {
    not_found_among(state, session, "mailing")
}

/// The page another tenant's (or no) `what` gets: 404, and nothing about it.
fn not_found_among(state: &ConsoleState, session: &ConsoleSession, what: &str) -> PageResult {
    Ok(state.pages.notice(
        session,
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no such {what} among yours."),
    )?)
}

/// The page a filter or query that is not one gets: 400, saying why.
fn bad_request(state: &ConsoleState, session: &ConsoleSession, why: &str) -> PageResult {
    Ok(state
        .pages
        .notice(session, StatusCode::BAD_REQUEST, "Bad request", why)?)
}

/// Messages a page of the mailing page lists.
const MESSAGES_PER_PAGE: u32 = 50;

#[derive(Deserialize)]
struct MessageFilter {
    state: Option<String>,
    after: Option<i64>,
}

/// One mailing: its facts, counts per state, actions, and its messages (filtered by state,
/// a page at a time) with each one's last error.
async fn mailing_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Query(filter): Query<MessageFilter>,
) -> PageResult {
    let Some(mailing) = own_mailing(&state, &session, &id).await? else {
        return not_found(&state, &session);
    };
    let id = mailing.id;
    let wanted = match filter.state.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => match name.parse::<MessageState>() {
            Ok(wanted) => Some(wanted),
            Err(e) => {
                return Ok(state.pages.notice(
                    &session,
                    StatusCode::BAD_REQUEST,
                    "Bad filter",
                    &e.0,
                )?);
            }
        },
        None => None,
    };
    let counts = state.store.mailing_counts(id).await?;
    let messages = state
        .store
        .list_messages(session.user.id, id, wanted, filter.after, MESSAGES_PER_PAGE)
        .await?;
    let next = (messages.len() == MESSAGES_PER_PAGE as usize)
        .then(|| messages.last())
        .flatten()
        .map(|last| {
            let state_part = wanted.map(|w| format!("state={w}&")).unwrap_or_default();
            format!("/mailings/{id}?{state_part}after={}", last.id)
        });
    let page = pages::MailingPage {
        mailing: &mailing,
        counts: &counts,
        messages: &messages,
        filter: wanted.map(|w| w.as_str()),
        next,
    };
    Ok(state.pages.mailing(&session, &page)?.into_response())
}

/// The session tenant's own mailing a URL's `{id}` names; None for an id that is no number
/// or no mailing of this tenant's (the page then says "not found", nothing more).
async fn own_mailing(
    state: &ConsoleState,
    session: &ConsoleSession,
    id: &str,
) -> Result<Option<crate::store::Mailing>, ConsoleError> {
    let Ok(id) = id.parse::<MailingId>() else {
        return Ok(None);
    };
    match state.store.mailing(session.user.id, id).await {
        Ok(mailing) => Ok(Some(mailing)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The mailing (the tenant's own) and the action a `/mailings/{id}/{action}` URL names;
/// `Err` is the page to answer instead.
async fn target(
    state: &ConsoleState,
    session: &ConsoleSession,
    id: &str,
    action: &str,
) -> Result<Result<(crate::store::Mailing, Action), Response>, ConsoleError> {
    match (
        Action::from_path(action),
        own_mailing(state, session, id).await?,
    ) {
        (Some(action), Some(mailing)) => Ok(Ok((mailing, action))),
        _ => Ok(Err(not_found(state, session)?)),
    }
}

/// The confirmation an action asks for.
async fn confirm_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path((id, action)): Path<(String, String)>,
) -> PageResult {
    let (mailing, action) = match target(&state, &session, &id, &action).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    Ok(state
        .pages
        .confirm(&session, &mailing, action)?
        .into_response())
}

/// Take a confirmed action, through the store functions the API calls; back to the mailing.
async fn act(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Csrf>,
) -> PageResult {
    let (mailing, action) = match target(&state, &session, &id, &action).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if !session::csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let (tenant, id) = (session.user.id, mailing.id);
    let done = match action {
        Action::Cancel => state.store.cancel_mailing(tenant, id).await.map(drop),
        Action::Pause => state.store.pause_mailing(tenant, id).await.map(drop),
        Action::Resume => state.store.resume_mailing(tenant, id).await.map(drop),
        Action::RetryFailed => state.store.retry_failed(tenant, id).await.map(drop),
    };
    match done {
        Ok(()) => {}
        Err(StoreError::Conflict(why)) => {
            return Ok(state
                .pages
                .notice(&session, StatusCode::CONFLICT, "Not now", &why)?);
        }
        Err(StoreError::NotFound(_)) => return not_found(&state, &session),
        Err(e) => return Err(e.into()),
    }
    if matches!(action, Action::Cancel | Action::Pause) {
        (state.api.announce_halt)(id).await;
    }
    Ok(Redirect::to(&format!("/mailings/{id}")).into_response())
}

/// The mailing page's live progress, as Server-Sent Events: `progress` on every change, `done`
/// at the end, `error` when the mailing is gone or the session ended.
async fn mailing_events(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let Some(session) = session::current(&state, &headers).await? else {
        return Ok(StatusCode::UNAUTHORIZED.into_response());
    };
    let Some(mailing) = own_mailing(&state, &session, &id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let id = mailing.id;
    // Each stream reads the database twice a second: a tenant holds a bounded number.
    let Some(slot) = (state.api.stream_slot)(session.user.id) else {
        return Ok(StatusCode::TOO_MANY_REQUESTS.into_response());
    };
    let token = session::token(&headers).unwrap_or_default();
    let stop = state.api.shutdown.clone().cancelled_owned();
    let follow = Follow::new(state.store.clone(), session.user.id, id);
    let stream = futures::stream::unfold(
        (follow, state, token, slot),
        |(mut follow, state, token, slot)| async move {
            // A session that ended (signed out, idle, too old) ends the stream.
            let still_allowed = || {
                let (state, token) = (state.clone(), token.clone());
                async move { matches!(session::by_token(&state, &token).await, Ok(Some(_))) }
            };
            let event = match follow.next(still_allowed).await? {
                Step::Progress(p) => sse_event("progress", &p),
                Step::Done(p) => sse_event("done", &p),
                Step::Gone => Event::default().event("error").data("gone"),
                Step::Unauthorized => Event::default().event("error").data("signed out"),
            };
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (follow, state, token, slot),
            ))
        },
    )
    .take_until(stop);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_event(kind: &str, progress: &ProgressEvent) -> Event {
    Event::default()
        .event(kind)
        .data(progress_json(progress).to_string())
}

/// A mailing's progress as the pages' scripts read it.
fn progress_json(progress: &ProgressEvent) -> serde_json::Value {
    let total = progress.counts.total();
    let finished = progress.counts.finished();
    serde_json::json!({
        "state": progress.state.as_str(),
        "total": total,
        "finished": finished,
        "percent": pages::percent(finished, total),
        "counts": progress.counts,
    })
}

/// One of the pages' scripts, from the binary.
fn script(source: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        source,
    )
}

/// The mailing page's script: it follows the event stream and updates the page in place.
async fn mailing_script() -> impl IntoResponse {
    script(include_str!("mailing.js"))
}

/// The mailing form's script: it shows the chosen channel's fields and the live preview.
async fn mailing_form_script() -> impl IntoResponse {
    script(include_str!("mailing_form.js"))
}

/// The import page's script: it uploads the file with a progress bar and shows the report.
async fn import_script() -> impl IntoResponse {
    script(include_str!("import.js"))
}

/// The dashboard's script: it follows the board's event stream and moves its progress bars.
async fn dashboard_script() -> impl IntoResponse {
    script(include_str!("dashboard.js"))
}

/// Mailings a page of the list shows.
const MAILINGS_PER_PAGE: u32 = 50;

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    channel: Option<String>,
    before: Option<i64>,
}

/// The tenant's mailings, newest first, filtered by state and channel, a page at a time.
async fn mailings_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let filter = match (
        given(&query.state)
            .map(|s| s.parse::<MailingState>())
            .transpose(),
        given(&query.channel)
            .map(|c| c.parse::<ChannelKind>())
            .transpose(),
    ) {
        (Ok(state), Ok(channel)) => MailingFilter { state, channel },
        (Err(e), _) | (_, Err(e)) => {
            return Ok(state.pages.notice(
                &session,
                StatusCode::BAD_REQUEST,
                "Bad filter",
                &e.0,
            )?);
        }
    };
    let mailings = state
        .store
        .find_mailings(session.user.id, filter, query.before, MAILINGS_PER_PAGE)
        .await?;
    let next = (mailings.len() == MAILINGS_PER_PAGE as usize)
        .then(|| mailings.last())
        .flatten()
        .map(|last| {
            let mut link = format!("/mailings?before={}", last.id);
            if let Some(s) = filter.state {
                link.push_str(&format!("&state={s}"));
            }
            if let Some(c) = filter.channel {
                link.push_str(&format!("&channel={c}"));
            }
            link
        });
    Ok(state
        .pages
        .mailings(&session, &mailings, filter, next.as_deref())?
        .into_response())
}
