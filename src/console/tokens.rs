//! The tenant's API tokens in the console: create (shown once), list with last use, revoke.
//! The same store functions as `blast token …`; a revoke also empties this process's cache of
//! checked tokens, so the API refuses the token at once here (other processes within
//! `api.token_cache_secs`).

use super::pages::{Confirmation, time};
use super::session::{SignedIn, csrf_matches};
use super::{ConsoleState, Csrf, PageResult, not_found_among};
use crate::store::{ConsoleSession, StoreError};
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/settings/tokens", get(tokens_page).post(create))
        .route(
            "/settings/tokens/{id}/revoke",
            get(confirm_revoke).post(revoke),
        )
}

/// How long a new token may work, as the form offers it: (days, label); 0 is until revoked.
const LIFETIMES: [(u32, &str); 5] = [
    (0, "until revoked"),
    (1, "1 day"),
    (30, "30 days"),
    (90, "90 days"),
    (365, "a year"),
];

/// The tokens page, with a token just made (shown this once) or the form's error.
async fn render(
    state: &ConsoleState,
    session: &ConsoleSession,
    status: StatusCode,
    created: Option<&str>,
    error: Option<&str>,
) -> PageResult {
    let tokens = state.store.tokens(&session.user).await?;
    let rows: Vec<minijinja::Value> = tokens
        .iter()
        .map(|t| {
            context! {
                id => t.id,
                label => t.label.as_str(),
                created => time(t.created_at),
                last_used => t.last_used_at.map(time),
                expires => t.expires_at.map(time),
            }
        })
        .collect();
    let page = state.pages.page(
        session,
        "tokens.html",
        context! {
            title => "API tokens",
            tokens => rows,
            created => created,
            error => error,
            lifetimes => LIFETIMES.iter().map(|(days, label)| context! { days => days, label => label }).collect::<Vec<_>>(),
            max_label => crate::store::MAX_TOKEN_LABEL,
        },
    )?;
    // A page with a token on it is never kept by the browser or a proxy.
    Ok((status, [(header::CACHE_CONTROL, "no-store")], page).into_response())
}

async fn tokens_page(State(state): State<ConsoleState>, SignedIn(session): SignedIn) -> PageResult {
    render(&state, &session, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
struct NewToken {
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    days: String,
}

/// Make a token and show it, this once.
async fn create(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Form(form): Form<NewToken>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let days = match form.days.as_str() {
        "" => Some(0),
        given => given.parse::<u32>().ok(),
    };
    let Some(days) = days.filter(|days| LIFETIMES.iter().any(|(offered, _)| offered == days))
    else {
        let error = "Choose how long the token works from the list.";
        return render(&state, &session, StatusCode::BAD_REQUEST, None, Some(error)).await;
    };
    let ttl_ms = (days > 0).then(|| i64::from(days) * 86_400_000);
    match state
        .store
        .create_token_with_ttl(&session.user, form.label.trim(), ttl_ms)
        .await
    {
        Ok(token) => render(&state, &session, StatusCode::OK, Some(&token), None).await,
        Err(StoreError::Invalid(e)) => {
            render(&state, &session, StatusCode::BAD_REQUEST, None, Some(&e.0)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The tenant's own token `{id}`: its label, or None for another's or none.
async fn own_token(
    state: &ConsoleState,
    session: &ConsoleSession,
    id: &str,
) -> Result<Option<(i64, String)>, super::ConsoleError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    Ok(state
        .store
        .tokens(&session.user)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| (t.id, t.label)))
}

async fn confirm_revoke(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let Some((id, label)) = own_token(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "token");
    };
    let named = if label.is_empty() {
        format!("token {id}")
    } else {
        format!("token {id} ({label})")
    };
    Ok(state
        .pages
        .confirm_at(
            &session,
            &Confirmation {
                title: &format!("Revoke {named}"),
                question: &format!(
                    "Revoke {named}? Whatever uses it is refused from now on; that cannot be undone."
                ),
                label: "Revoke",
                action: &format!("/settings/tokens/{id}/revoke"),
                back: "/settings/tokens",
            },
        )?
        .into_response())
}

async fn revoke(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let Some((id, _)) = own_token(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "token");
    };
    match state.store.revoke_token(&session.user, id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    (state.api.forget_tokens)();
    Ok(Redirect::to("/settings/tokens").into_response())
}
