//! /api/v1/clients: a tenant's clients, one at a time or in bulk.

use super::auth::Tenant;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use super::{AppState, Page, upload};
use crate::app::import;
use crate::domain::{parse_operator_code, parse_tag};
use crate::ids::ClientId;
use crate::store::{Client, ClientPatch, ClientQuery};
use crate::wire::clients::{ClientInput, ClientPatchInput, ImportResult, RowErrorView};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClientListQuery {
    /// Only clients with this tag.
    pub tag: Option<String>,
    /// Only clients of this operator code.
    pub operator_code: Option<String>,
    /// Only clients whose phone, name or email contains this (any case; a phone by its digits).
    pub q: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

pub(super) fn parse_cursor(cursor: Option<&str>) -> ApiResult<Option<i64>> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid cursor"))
        })
        .transpose()
}

pub(super) fn page_limit(state: &AppState, limit: Option<u32>) -> ApiResult<u32> {
    let max = state.settings.api.max_page_size;
    match limit.unwrap_or(50) {
        0 => Err(ApiError::invalid("limit must be at least 1")),
        n if n > max => Err(ApiError::invalid(format!("limit must be at most {max}"))),
        n => Ok(n),
    }
}

/// List clients, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", params(ClientListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Client>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiQuery(q): ApiQuery<ClientListQuery>,
) -> ApiResult<Json<Page<Client>>> {
    let limit = page_limit(&state, q.limit)?;
    let query = ClientQuery {
        tag: q.tag.as_deref().map(parse_tag).transpose()?,
        operator_code: q
            .operator_code
            .as_deref()
            .map(parse_operator_code)
            .transpose()?,
        after_id: parse_cursor(q.cursor.as_deref())?,
        limit,
        search: q.q.filter(|q| !q.trim().is_empty()),
    };
    let items = state.store.list_clients(user.id, &query).await?;
    Ok(Json(Page::new(items, limit, |c| c.id.0)))
}

/// Add a client.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body = ClientInput,
    security(("bearer" = [])),
    responses((status = 201, body = Client), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiJson(input): ApiJson<ClientInput>,
) -> ApiResult<(StatusCode, Json<Client>)> {
    let client = state
        .store
        .add_client(user.id, input.into_new_client()?)
        .await?;
    Ok((StatusCode::CREATED, Json(client)))
}

#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Client), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<Json<Client>> {
    Ok(Json(state.store.client(user.id, id).await?))
}

/// Replace a client: fields, tags and attributes as given.
#[utoipa::path(put, path = "/api/v1/clients/{id}", tag = "clients", request_body = ClientInput,
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Client), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<ClientId>,
    ApiJson(input): ApiJson<ClientInput>,
) -> ApiResult<Json<Client>> {
    let new = input.into_new_client()?;
    let current = state.store.client(user.id, id).await?;
    let mut attributes: BTreeMap<String, Option<String>> = current
        .attributes
        .keys()
        .map(|k| (k.clone(), None))
        .collect();
    attributes.extend(new.attributes.into_iter().map(|(k, v)| (k, Some(v))));
    let patch = ClientPatch {
        phone: new.phone,
        name: Some(new.name),
        email: Some(new.email),
        telegram_chat_id: Some(new.telegram_chat_id),
        timezone: Some(new.timezone),
        tags: Some(new.tags),
        add_tags: Vec::new(),
        remove_tags: Vec::new(),
        attributes,
    };
    Ok(Json(state.store.update_client(user.id, id, patch).await?))
}

/// Change some fields of a client.
#[utoipa::path(patch, path = "/api/v1/clients/{id}", tag = "clients", request_body = ClientPatchInput,
    security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Client), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<ClientId>,
    ApiJson(input): ApiJson<ClientPatchInput>,
) -> ApiResult<Json<Client>> {
    let patch = input.into_patch()?;
    Ok(Json(state.store.update_client(user.id, id, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/clients/{id}", tag = "clients", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiPath(id): ApiPath<ClientId>,
) -> ApiResult<StatusCode> {
    state.store.delete_client(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Import the valid rows and report the others, instead of importing nothing.
    #[serde(default)]
    pub skip_invalid: bool,
}

/// A refused import: the report of its bad rows, or the whole file refused (no header row,
/// not CSV) in the one error shape.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the document's alternatives; the handler answers either body itself
pub enum ImportRefusal {
    Rows(ImportResult),
    File(ErrorBody),
}

/// Bulk import: CSV (`text/csv`, a header row with `phone`, like `blast client import`) or JSON
/// lines (`application/x-ndjson`, one client object a line). All rows or none, unless
/// `skip_invalid`; each bad row is reported with its line number.
#[utoipa::path(post, path = "/api/v1/clients/import", tag = "clients", params(ImportQuery),
    request_body(content = String, content_type = "text/csv"), security(("bearer" = [])),
    responses((status = 200, body = ImportResult), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ImportRefusal)))]
pub async fn import_clients(
    State(state): State<AppState>,
    Tenant(user): Tenant,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    held: Option<axum::Extension<super::idempotency::HeldImportSlot>>,
    body: Body,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    let held = held.map(|axum::Extension(slot)| slot);
    import_body(&state, user.id, &headers, q.skip_invalid, held, body).await
}

/// Import a request body of clients for `tenant` (CSV or JSON lines, by its Content-Type),
/// with the API's limits: a slot of the tenant's concurrent imports (unless the caller holds
/// one), the body spooled to disk within `api.import_body_limit_bytes` and the upload
/// timeouts, at most `api.import_max_errors` row errors reported. The API's handler and the
/// console's import page both come here.
pub async fn import_body(
    state: &AppState,
    tenant: crate::ids::TenantId,
    headers: &HeaderMap,
    skip_invalid: bool,
    held: Option<super::idempotency::HeldImportSlot>,
    body: Body,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_csv = match content_type.as_str() {
        "text/csv" => true,
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send text/csv or application/x-ndjson",
            ));
        }
    };
    let api = &state.settings.api;
    let _slot = match held {
        Some(held) => held,
        None => super::idempotency::HeldImportSlot(std::sync::Arc::new(state.import_slot(tenant)?)),
    };
    // The whole body is on disk before the import takes a database connection: a slow
    // upload holds a file, not the pool.
    let limit = api.import_body_limit_bytes;
    let spooled = upload::spool(body, upload::UploadRules::of(api, limit)).await?;
    let reader = spooled.file;
    let (store, skip, max_errors) = (&state.store, skip_invalid, api.import_max_errors);
    let outcome = if is_csv {
        import::stream_import(
            store,
            tenant,
            skip,
            max_errors,
            move || import::csv_rows(reader),
            |_| {},
        )
        .await
    } else {
        import::stream_import(
            store,
            tenant,
            skip,
            max_errors,
            move || Ok(json_lines(reader)),
            |_| {},
        )
        .await
    }
    .map_err(|e| match e {
        import::ImportError::Invalid(e) => ApiError::invalid(e.to_string()),
        import::ImportError::Store(e) => e.into(),
        import::ImportError::Read(e) => {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    let status = if outcome.committed {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((
        status,
        Json(ImportResult {
            imported: outcome.imported,
            inserted: outcome.report.inserted,
            updated: outcome.report.updated,
            error_count: outcome.error_count,
            errors: outcome
                .errors
                .into_iter()
                .map(|e| RowErrorView {
                    line: e.line,
                    message: e.message,
                })
                .collect(),
        }),
    ))
}

/// The clients of a JSON-lines body, one object a line; blank lines are passed over.
fn json_lines(
    reader: impl std::io::Read,
) -> impl Iterator<Item = std::io::Result<import::RowResult>> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(reader);
    let mut line_no = 0u64;
    let mut line = Vec::new();
    std::iter::from_fn(move || {
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = serde_json::from_slice::<ClientInput>(&line)
                .map_err(|e| e.to_string())
                .and_then(|input| input.into_new_client().map_err(|e| e.0));
            return Some(Ok(parsed.map(|client| (line_no, client)).map_err(
                |message| import::RowError {
                    line: line_no,
                    message,
                },
            )));
        }
    })
}
