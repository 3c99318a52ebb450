//! The tenant's Telegram bots in the console: register (the token checked with Telegram's
//! `getMe` first, through the same use case as the API and `blast bot add`), list, remove.
//! A token goes in and never comes back out.

use super::pages::{Confirmation, time};
use super::session::{SignedIn, csrf_matches};
use super::{ConsoleState, Csrf, PageResult, not_found_among};
use crate::app::bots::{BotRegistrationError, register_bot};
use crate::settings::Secret;
use crate::store::{ConsoleSession, StoreError};
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/settings/bots", get(bots_page).post(add))
        .route(
            "/settings/bots/{name}/remove",
            get(confirm_remove).post(remove),
        )
}

/// What the form said wrong, beside which field, and the name typed (never the token).
#[derive(Default)]
struct FormErrors<'a> {
    name: Option<&'a str>,
    token: Option<&'a str>,
    general: Option<&'a str>,
    typed_name: &'a str,
}

async fn render(
    state: &ConsoleState,
    session: &ConsoleSession,
    status: StatusCode,
    errors: FormErrors<'_>,
) -> PageResult {
    let bots = state.store.telegram_bots(session.user.id).await?;
    let rows: Vec<minijinja::Value> = bots
        .iter()
        .map(|b| {
            context! {
                name => b.name.as_str(),
                bot_id => b.bot_id.as_str(),
                created => time(b.created_at),
            }
        })
        .collect();
    let page = state.pages.page(
        session,
        "bots.html",
        context! {
            title => "Telegram bots",
            bots => rows,
            name_error => errors.name,
            token_error => errors.token,
            error => errors.general,
            name => errors.typed_name,
        },
    )?;
    Ok((status, page).into_response())
}

async fn bots_page(State(state): State<ConsoleState>, SignedIn(session): SignedIn) -> PageResult {
    render(&state, &session, StatusCode::OK, FormErrors::default()).await
}

#[derive(Deserialize)]
struct NewBot {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
}

async fn add(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Form(form): Form<NewBot>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let name = form.name.trim();
    let token = Secret::new(form.token.trim());
    let refused = match register_bot(
        &state.store,
        session.user.id,
        name,
        &token,
        &state.settings.telegram,
    )
    .await
    {
        Ok(_) => return Ok(Redirect::to("/settings/bots").into_response()),
        Err(BotRegistrationError::Store(e))
            if !matches!(e, StoreError::Invalid(_) | StoreError::Conflict(_)) =>
        {
            return Err(e.into());
        }
        Err(e) => e,
    };
    let (status, message) = match &refused {
        BotRegistrationError::Store(StoreError::Invalid(e)) => {
            (StatusCode::BAD_REQUEST, e.0.clone())
        }
        BotRegistrationError::Store(StoreError::Conflict(why)) => {
            (StatusCode::CONFLICT, why.clone())
        }
        BotRegistrationError::Store(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        BotRegistrationError::Refused(reason) => (StatusCode::BAD_REQUEST, reason.clone()),
        BotRegistrationError::Unreachable(e) => (
            StatusCode::BAD_GATEWAY,
            format!(
                "Telegram cannot be asked about the token now ({e}); nothing was saved. Try again later."
            ),
        ),
    };
    // A name that breaks the rule or is taken is the name's error; the rest is the token's.
    let about_name = matches!(
        &refused,
        BotRegistrationError::Store(StoreError::Invalid(e)) if e.0.starts_with("bot name")
    ) || matches!(
        &refused,
        BotRegistrationError::Store(StoreError::Conflict(_))
    );
    let errors = match (&refused, about_name) {
        (BotRegistrationError::Unreachable(_), _) => FormErrors {
            general: Some(&message),
            typed_name: name,
            ..FormErrors::default()
        },
        (_, true) => FormErrors {
            name: Some(&message),
            typed_name: name,
            ..FormErrors::default()
        },
        (_, false) => FormErrors {
            token: Some(&message),
            typed_name: name,
            ..FormErrors::default()
        },
    };
    render(&state, &session, status, errors).await
}

async fn confirm_remove(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
) -> PageResult {
    if !own_bot(&state, &session, &name).await? {
        return not_found_among(&state, &session, "bot");
    }
    Ok(state
        .pages
        .confirm_at(
            &session,
            &Confirmation {
                title: &format!("Remove bot {name}"),
                question: &format!(
                    "Remove the bot {name}? Mailings can no longer name it; its token is forgotten."
                ),
                label: "Remove",
                action: &format!("/settings/bots/{name}/remove"),
                back: "/settings/bots",
            },
        )?
        .into_response())
}

async fn remove(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
    Form(form): Form<Csrf>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    match state
        .store
        .remove_telegram_bot(session.user.id, &name)
        .await
    {
        Ok(()) => Ok(Redirect::to("/settings/bots").into_response()),
        Err(StoreError::NotFound(_)) => not_found_among(&state, &session, "bot"),
        Err(StoreError::Conflict(why)) => {
            Ok(state
                .pages
                .notice(&session, StatusCode::CONFLICT, "Not now", &why)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether the tenant has a bot of that name.
async fn own_bot(
    state: &ConsoleState,
    session: &ConsoleSession,
    name: &str,
) -> Result<bool, super::ConsoleError> {
    Ok(state
        .store
        .telegram_bots(session.user.id)
        .await?
        .iter()
        .any(|b| b.name == name))
}
