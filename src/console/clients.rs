//! The console's clients pages: search by phone, name or email, filter by tag and operator,
//! a page at a time; delete one behind a confirmation; export what the filter selects as the
//! CSV `blast client import` reads back. The same store queries as the API's list.

use super::pages::Confirmation;
use super::session::{SignedIn, csrf_matches};
use super::{ConsoleState, Csrf, PageResult, bad_request, not_found_among};
use crate::domain::{Client, parse_operator_code, parse_tag};
use crate::ids::{ClientId, TenantId};
use crate::store::{ClientQuery, ConsoleSession, Store, StoreError};
use axum::Form;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;
use std::collections::BTreeSet;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/clients", get(clients_page))
        .route("/clients/export.csv", get(export))
        .route("/clients/import", get(import_page).post(import))
        .route("/clients/{id}/delete", get(confirm_delete).post(delete))
        .route("/clients/{id}/edit", get(edit_page).post(edit))
}

/// Clients a page lists.
const PER_PAGE: u32 = 50;

/// Clients an export reads at a time.
const EXPORT_BATCH: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ClientFilter {
    q: String,
    tag: String,
    operator: String,
    after: Option<i64>,
}

impl ClientFilter {
    /// The store's query for this filter, or what is wrong with it.
    fn query(&self, limit: u32) -> Result<ClientQuery, crate::domain::InvalidInput> {
        let given = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        Ok(ClientQuery {
            tag: given(&self.tag).as_deref().map(parse_tag).transpose()?,
            operator_code: given(&self.operator)
                .as_deref()
                .map(parse_operator_code)
                .transpose()?,
            search: given(&self.q),
            after_id: self.after,
            limit,
        })
    }

    /// The filter as a query string (without the page), for links.
    fn params(&self) -> String {
        let Ok(mut url) = reqwest::Url::parse("http://console/clients") else {
            return String::new();
        };
        for (name, value) in [
            ("q", &self.q),
            ("tag", &self.tag),
            ("operator", &self.operator),
        ] {
            if !value.trim().is_empty() {
                url.query_pairs_mut().append_pair(name, value.trim());
            }
        }
        url.query().unwrap_or_default().to_owned()
    }
}

async fn clients_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Query(filter): Query<ClientFilter>,
) -> PageResult {
    let query = match filter.query(PER_PAGE) {
        Ok(query) => query,
        Err(e) => return bad_request(&state, &session, &e.0),
    };
    let clients = state.store.list_clients(session.user.id, &query).await?;
    let params = filter.params();
    let next = (clients.len() == PER_PAGE as usize)
        .then(|| clients.last())
        .flatten()
        .map(|last| {
            let sep = if params.is_empty() { "" } else { "&" };
            format!("/clients?{params}{sep}after={}", last.id.0)
        });
    let rows: Vec<minijinja::Value> = clients
        .iter()
        .map(|c| {
            context! {
                id => c.id.0,
                phone => c.phone.as_deref().unwrap_or(""),
                name => c.name.as_str(),
                email => c.email.as_deref().unwrap_or(""),
                tags => c.tags.join(", "),
                operator => c.operator_code.as_str(),
            }
        })
        .collect();
    let page = state.pages.page(
        &session,
        "clients.html",
        context! {
            title => "Clients",
            clients => rows,
            q => filter.q.as_str(),
            tag => filter.tag.as_str(),
            operator => filter.operator.as_str(),
            export => if params.is_empty() { "/clients/export.csv".to_owned() } else { format!("/clients/export.csv?{params}") },
            next => next,
        },
    )?;
    Ok(page.into_response())
}

/// Every client the filter selects, as CSV with the columns `blast client import` reads: the
/// known fields, then one column per attribute any of them has. Read a batch at a time, twice
/// (the attribute names first), and written as it is read.
async fn export(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Query(filter): Query<ClientFilter>,
) -> PageResult {
    let query = match filter.query(EXPORT_BATCH) {
        Ok(query) => query,
        Err(e) => return bad_request(&state, &session, &e.0),
    };
    let store = state.store.clone();
    let tenant = session.user.id;
    let mut attributes = BTreeSet::new();
    let mut first = query.clone();
    first.after_id = None;
    each_batch(&store, tenant, first.clone(), |batch| {
        for c in batch {
            attributes.extend(c.attributes.keys().cloned());
        }
    })
    .await?;
    let attributes: Vec<String> = attributes.into_iter().collect();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::spawn(async move {
        let header = csv_line(
            [
                "phone",
                "name",
                "email",
                "telegram_chat_id",
                "timezone",
                "tags",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(attributes.iter().cloned()),
        );
        if sender.send(Ok(header)).await.is_err() {
            return;
        }
        let mut query = first;
        loop {
            let batch = match store.list_clients(tenant, &query).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "a client export stopped");
                    let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let mut chunk = String::new();
            for c in &batch {
                chunk.push_str(&client_line(c, &attributes));
            }
            if sender.send(Ok(chunk)).await.is_err() {
                return;
            }
            match batch.last() {
                Some(last) if batch.len() == EXPORT_BATCH as usize => {
                    query.after_id = Some(last.id.0);
                }
                _ => return,
            }
        }
    });
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let body = Body::from_stream(chunks);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"clients.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// Call `each` with every batch of clients `query` selects, from its start.
async fn each_batch(
    store: &Store,
    tenant: TenantId,
    mut query: ClientQuery,
    mut each: impl FnMut(&[Client]),
) -> Result<(), StoreError> {
    loop {
        let batch = store.list_clients(tenant, &query).await?;
        each(&batch);
        match batch.last() {
            Some(last) if batch.len() == query.limit as usize => query.after_id = Some(last.id.0),
            _ => return Ok(()),
        }
    }
}

/// One CSV line of `fields`, quoted where they need it.
fn csv_line(fields: impl Iterator<Item = String>) -> String {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    let record: Vec<String> = fields.collect();
    // Writing to memory cannot fail.
    let _ = writer.write_record(&record);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn client_line(c: &Client, attributes: &[String]) -> String {
    csv_line(
        [
            c.phone.clone().unwrap_or_default(),
            c.name.clone(),
            c.email.clone().unwrap_or_default(),
            c.telegram_chat_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            c.timezone.clone(),
            c.tags.join(";"),
        ]
        .into_iter()
        .chain(
            attributes
                .iter()
                .map(|a| c.attributes.get(a).cloned().unwrap_or_default()),
        ),
    )
}

/// The tenant's own client `{id}`; None for another's or none.
async fn own_client(
    state: &ConsoleState,
    session: &ConsoleSession,
    id: &str,
) -> Result<Option<Client>, super::ConsoleError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    match state.store.client(session.user.id, ClientId(id)).await {
        Ok(client) => Ok(Some(client)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn confirm_delete(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let Some(client) = own_client(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "client");
    };
    let named = match (&client.phone, client.name.is_empty()) {
        (Some(phone), false) => format!("{} ({phone})", client.name),
        (Some(phone), true) => phone.clone(),
        (None, _) => format!("client {}", client.id),
    };
    Ok(state
        .pages
        .confirm_at(
            &session,
            &Confirmation {
                title: &format!("Delete {named}"),
                question: &format!(
                    "Delete {named}? Their messages go with them; that cannot be undone."
                ),
                label: "Delete",
                action: &format!("/clients/{}/delete", client.id),
                back: "/clients",
            },
        )?
        .into_response())
}

async fn delete(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<Csrf>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let Some(client) = own_client(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "client");
    };
    match state.store.delete_client(session.user.id, client.id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/clients").into_response())
}

/// The import page: a CSV file, its upload's progress, then what was imported and each bad
/// row's line and reason.
async fn import_page(State(state): State<ConsoleState>, SignedIn(session): SignedIn) -> PageResult {
    Ok(state
        .pages
        .page(
            &session,
            "import.html",
            context! {
                title => "Import clients",
                limit_mb => state.settings.api.import_body_limit_bytes / 1_000_000,
            },
        )?
        .into_response())
}

#[derive(Deserialize)]
struct ImportQuery {
    #[serde(default)]
    skip_invalid: bool,
}

/// The CSV body the import page's script uploads, imported as the API imports it (the same
/// limits and answer). The body is the file itself, so the session's CSRF token comes in the
/// `X-CSRF-Token` header.
async fn import(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !csrf_matches(&session, token) {
        return Ok(StatusCode::FORBIDDEN.into_response());
    }
    Ok((state.api.import_clients)(session.user.id, headers, query.skip_invalid, body).await)
}

/// The client form's fields as the browser posts them.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct ClientForm {
    #[serde(skip_serializing)]
    csrf: String,
    phone: String,
    name: String,
    email: String,
    telegram_chat_id: String,
    timezone: String,
    /// Separated by commas or spaces.
    tags: String,
    /// One `KEY=VALUE` a line.
    attributes: String,
}

impl ClientForm {
    fn of(c: &Client) -> ClientForm {
        ClientForm {
            csrf: String::new(),
            phone: c.phone.clone().unwrap_or_default(),
            name: c.name.clone(),
            email: c.email.clone().unwrap_or_default(),
            telegram_chat_id: c
                .telegram_chat_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            timezone: c.timezone.clone(),
            tags: c.tags.join(", "),
            attributes: c
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The API's patch that makes `current` what the form says: every field set, attributes
    /// left out of the form removed.
    fn to_patch(
        &self,
        current: &Client,
    ) -> Result<crate::store::ClientPatch, crate::domain::InvalidInput> {
        use crate::domain::invalid;
        let mut attributes = std::collections::BTreeMap::new();
        for key in current.attributes.keys() {
            attributes.insert(key.clone(), None);
        }
        for line in self
            .attributes
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (key, value) = line.split_once('=').ok_or_else(|| {
                invalid(format!("attribute {line:?}: write KEY=VALUE, one a line"))
            })?;
            attributes.insert(key.trim().to_owned(), Some(value.trim().to_owned()));
        }
        let optional = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        let telegram_chat_id = match optional(&self.telegram_chat_id) {
            Some(id) => Some(
                id.parse::<i64>()
                    .map_err(|_| invalid(format!("Telegram chat id {id:?}: a whole number")))?,
            ),
            None => None,
        };
        crate::wire::clients::ClientPatchInput {
            phone: optional(&self.phone),
            name: Some(self.name.trim().to_owned()),
            email: Some(optional(&self.email)),
            telegram_chat_id: Some(telegram_chat_id),
            timezone: optional(&self.timezone),
            tags: Some(
                self.tags
                    .split([',', ' '])
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            add_tags: Vec::new(),
            remove_tags: Vec::new(),
            attributes,
        }
        .into_patch()
    }
}

async fn render_edit(
    state: &ConsoleState,
    session: &ConsoleSession,
    status: StatusCode,
    id: ClientId,
    form: &ClientForm,
    error: Option<&str>,
) -> PageResult {
    let page = state.pages.page(
        session,
        "client.html",
        context! {
            title => format!("Client {id}"),
            id => id.0,
            f => minijinja::Value::from_serialize(form),
            error => error,
        },
    )?;
    Ok((status, page).into_response())
}

async fn edit_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let Some(client) = own_client(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "client");
    };
    let form = ClientForm::of(&client);
    render_edit(&state, &session, StatusCode::OK, client.id, &form, None).await
}

/// Save the client as the API's PATCH does; an error is shown above the form, kept as typed.
async fn edit(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ClientForm>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let Some(client) = own_client(&state, &session, &id).await? else {
        return not_found_among(&state, &session, "client");
    };
    let saved = match form.to_patch(&client) {
        Ok(patch) => {
            state
                .store
                .update_client(session.user.id, client.id, patch)
                .await
        }
        Err(e) => Err(StoreError::Invalid(e)),
    };
    match saved {
        Ok(_) => Ok(Redirect::to("/clients").into_response()),
        Err(StoreError::Invalid(e)) => {
            render_edit(
                &state,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                client.id,
                &form,
                Some(&e.0),
            )
            .await
        }
        Err(StoreError::Conflict(why)) => {
            render_edit(
                &state,
                &session,
                StatusCode::CONFLICT,
                client.id,
                &form,
                Some(&why),
            )
            .await
        }
        Err(StoreError::NotFound(_)) => not_found_among(&state, &session, "client"),
        Err(e) => Err(e.into()),
    }
}
