//! The tenant's status webhooks in the console: add (the signing secret shown once), list,
//! remove, and each one's delivery history with the receiver's response codes. Through the
//! same use case and store functions as the API and `blast webhook …`.

use super::pages::{Confirmation, time};
use super::session::{SignedIn, csrf_matches};
use super::{ConsoleError, ConsoleState, Csrf, PageResult, not_found_among};
use crate::store::{ConsoleSession, StoreError, WEBHOOK_DELIVERIES_LISTED, Webhook};
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
        .route("/settings/webhooks", get(webhooks_page).post(add))
        .route("/settings/webhooks/{id}", get(history))
        .route(
            "/settings/webhooks/{id}/remove",
            get(confirm_remove).post(remove),
        )
}

/// What the webhooks page shows besides the list: a webhook just added (its secret shown
/// this once), or the form's error and what was typed.
#[derive(Default)]
struct Outcome<'a> {
    added: Option<&'a Webhook>,
    error: Option<&'a str>,
    url: &'a str,
}

async fn render(
    state: &ConsoleState,
    session: &ConsoleSession,
    status: StatusCode,
    outcome: Outcome<'_>,
) -> PageResult {
    let webhooks = state.store.webhooks(session.user.id).await?;
    let rows: Vec<minijinja::Value> = webhooks
        .iter()
        .map(|w| context! { id => w.id, url => w.url.as_str(), created => time(w.created_at) })
        .collect();
    let page = state.pages.page(
        session,
        "webhooks.html",
        context! {
            title => "Webhooks",
            webhooks => rows,
            added => outcome.added.map(|w| context! {
                id => w.id,
                url => w.url.as_str(),
                secret => w.secret.as_deref(),
            }),
            error => outcome.error,
            url => outcome.url,
            max => state.settings.webhooks.max_per_tenant,
        },
    )?;
    // A page with a secret on it is never kept by the browser or a proxy.
    Ok((status, [(header::CACHE_CONTROL, "no-store")], page).into_response())
}

async fn webhooks_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
) -> PageResult {
    render(&state, &session, StatusCode::OK, Outcome::default()).await
}

#[derive(Deserialize)]
struct NewWebhook {
    csrf: String,
    #[serde(default)]
    url: String,
}

/// Register a URL, checked as the API checks it, and show its secret this once.
async fn add(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Form(form): Form<NewWebhook>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let url = form.url.trim();
    match crate::app::webhooks::add_webhook(
        &state.store,
        session.user.id,
        url,
        &state.settings.webhooks,
    )
    .await
    {
        Ok(webhook) => {
            let added = Outcome {
                added: Some(&webhook),
                ..Outcome::default()
            };
            render(&state, &session, StatusCode::OK, added).await
        }
        Err(StoreError::Invalid(e)) => {
            let outcome = Outcome {
                added: None,
                error: Some(&e.0),
                url,
            };
            render(&state, &session, StatusCode::BAD_REQUEST, outcome).await
        }
        Err(StoreError::Conflict(why)) => {
            let outcome = Outcome {
                added: None,
                error: Some(&why),
                url,
            };
            render(&state, &session, StatusCode::CONFLICT, outcome).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The tenant's own webhook `{id}`; None for another's or none.
async fn own_webhook(
    state: &ConsoleState,
    session: &ConsoleSession,
    id: &str,
) -> Result<Option<Webhook>, ConsoleError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    Ok(state
        .store
        .webhooks(session.user.id)
        .await?
        .into_iter()
        .find(|w| w.id == id))
}

/// A webhook's latest events, newest first: what each was, how its posting went.
async fn history(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let Some(webhook) = own_webhook(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "webhook");
    };
    let deliveries = match state
        .store
        .webhook_deliveries(session.user.id, webhook.id, WEBHOOK_DELIVERIES_LISTED)
        .await
    {
        Ok(deliveries) => deliveries,
        // Removed meanwhile.
        Err(StoreError::NotFound(_)) => return not_found_among(&state, &session, "webhook"),
        Err(e) => return Err(e.into()),
    };
    let rows: Vec<minijinja::Value> = deliveries
        .iter()
        .map(|d| {
            let p = &d.payload;
            // What the event says, in a few words (the payload's shapes: store::webhooks).
            let about = match p["type"].as_str() {
                Some("messages") => format!(
                    "{} messages of mailing {}",
                    p["messages"].as_array().map_or(0, Vec::len),
                    p["mailing_id"]
                ),
                Some("mailing") => format!(
                    "mailing {} {}",
                    p["mailing_id"],
                    p["state"].as_str().unwrap_or_default()
                ),
                Some("notification") => format!(
                    "notification {} {}",
                    p["notification_id"],
                    p["state"].as_str().unwrap_or_default()
                ),
                _ => String::new(),
            };
            context! {
                id => d.id,
                event => p["type"].as_str().unwrap_or_default(),
                about => about,
                state => d.state.as_str(),
                attempts => d.attempts,
                status => d.response_status,
                created => time(d.created_at),
                delivered => d.delivered_at.map(time),
                error => d.last_error.as_deref(),
            }
        })
        .collect();
    Ok(state
        .pages
        .page(
            &session,
            "webhook.html",
            context! {
                title => format!("Webhook {}", webhook.id),
                webhook => context! { id => webhook.id, url => webhook.url.as_str() },
                deliveries => rows,
                listed => WEBHOOK_DELIVERIES_LISTED,
            },
        )?
        .into_response())
}

async fn confirm_remove(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let Some(webhook) = own_webhook(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "webhook");
    };
    Ok(state
        .pages
        .confirm_at(
            &session,
            &Confirmation {
                title: &format!("Remove webhook {}", webhook.id),
                question: &format!(
                    "Remove the webhook to {}? Events still owed to it are dropped, and no more are posted there.",
                    webhook.url
                ),
                label: "Remove",
                action: &format!("/settings/webhooks/{}/remove", webhook.id),
                back: "/settings/webhooks",
            },
        )?
        .into_response())
}

async fn remove(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let Some(webhook) = own_webhook(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "webhook");
    };
    match state
        .store
        .remove_webhook(session.user.id, webhook.id)
        .await
    {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/settings/webhooks").into_response())
}
