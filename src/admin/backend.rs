//! Where tenant commands act: the local database, or a remote blast through its HTTP API
//! (`--server URL --token TOKEN`). Both give the same answers, so each command prints alike.

use super::{AdminError, Result};
use crate::app::bots::BotRegistrationError;
use crate::app::import::{ImportOutcome, RowError};
use crate::domain::MessageState;
use crate::domain::invalid;
use crate::ids::{ClientId, MailingId};
use crate::settings::{NotificationSettings, Secret, TelegramSettings};
use crate::store::{
    Client, ClientPatch, ClientQuery, ImportReport, Mailing, MailingPreview, MailingStats,
    MessageRow, NewClient, NewMailing, NewNotification, NewPushSubscription, Notification,
    NotificationPreferences, RegisteredBot, StateCounts, Store, StoredPushSubscription, Webhook,
    WebhookDelivery,
};
use crate::wire::Page;
use crate::wire::clients::{ClientInput, ClientPatchInput, ImportResult};
use crate::wire::mailings::{MailingInput, MailingView};
use crate::wire::notifications::NotificationInput;
use crate::wire::registrations::{BotInput, PushSubscriptionInput, WebhookInput};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A remote blast API and the token to act with.
#[derive(Debug, Clone)]
pub struct RemoteApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// The error of an API answer that is not a success.
fn remote_error(status: reqwest::StatusCode, bytes: &[u8]) -> AdminError {
    let message = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    // 408 and 429 are the server's passing trouble, not a mistake in the command.
    let usage = status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
    AdminError::Remote {
        message: format!("{message} ({status})"),
        usage,
    }
}

impl RemoteApi {
    pub fn new(base: &str, token: &str) -> Result<RemoteApi> {
        let parsed = reqwest::Url::parse(base).map_err(|e| {
            invalid(format!(
                "invalid --server {base:?}: {e}; expected e.g. http://host:8080"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "invalid --server {base:?}: use http:// or https://"
            ))
            .into());
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| AdminError::Remote {
                message: format!("cannot build the HTTP client: {e}"),
                usage: false,
            })?;
        Ok(RemoteApi {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<RemoteBody>,
    ) -> Result<T> {
        self.call_with(method, path, query, body, &[]).await
    }

    /// [`RemoteApi::call`] with extra request headers (an `Idempotency-Key`).
    async fn call_with<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<RemoteBody>,
        headers: &[(&str, &str)],
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req = match body {
            Some(RemoteBody::Json(v)) => req.json(&v),
            None => req,
        };
        let response = req.send().await.map_err(|e| AdminError::Remote {
            message: format!("cannot reach {}: {e}", self.base),
            usage: false,
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| AdminError::Remote {
            message: format!("reading the answer of {}: {e}", self.base),
            usage: false,
        })?;
        if status.is_success() {
            let text = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(text).map_err(|e| AdminError::Remote {
                message: format!("unexpected answer from {}: {e}", self.base),
                usage: false,
            });
        }
        Err(remote_error(status, &bytes))
    }

    /// Upload a CSV client list as it is read (`POST /api/v1/clients/import`); the server
    /// validates it. `progress` hears the bytes sent so far.
    async fn import_csv(
        &self,
        file: std::fs::File,
        skip_invalid: bool,
        progress: impl Fn(u64),
    ) -> Result<ImportOutcome> {
        use futures::StreamExt;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let body =
            tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)).map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                chunk
            });
        let request = self
            .http
            .post(format!("{}/api/v1/clients/import", self.base))
            .query(&[("skip_invalid", skip_invalid.to_string())])
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            // A large file over a slow link takes longer than the client's usual timeout.
            .timeout(std::time::Duration::from_secs(6 * 3600))
            .body(reqwest::Body::wrap_stream(body))
            .send();
        tokio::pin!(request);
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(200));
        let response = loop {
            tokio::select! {
                response = &mut request => break response,
                _ = ticker.tick() => progress(sent.load(Ordering::Relaxed)),
            }
        }
        .map_err(|e| AdminError::Remote {
            message: format!("cannot send the import to {}: {e}", self.base),
            usage: false,
        })?;
        progress(sent.load(Ordering::Relaxed));
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| AdminError::Remote {
            message: format!("reading the answer of {}: {e}", self.base),
            usage: false,
        })?;
        if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::UNPROCESSABLE_ENTITY
        {
            return Err(remote_error(status, &bytes));
        }
        // A 422 is a whole-file refusal (no header) or the row report.
        let result: ImportResult =
            serde_json::from_slice(&bytes).map_err(|_| remote_error(status, &bytes))?;
        Ok(ImportOutcome {
            imported: result.imported,
            report: ImportReport {
                inserted: result.inserted,
                updated: result.updated,
            },
            committed: status == reqwest::StatusCode::OK,
            error_count: result.error_count,
            errors: result
                .errors
                .into_iter()
                .map(|e| RowError {
                    line: e.line,
                    message: e.message,
                })
                .collect(),
        })
    }

    /// `DELETE path`: the answer has no body worth reading.
    async fn delete(&self, path: &str) -> Result<()> {
        self.call::<Value>(reqwest::Method::DELETE, path, &[], None)
            .await
            .map(drop)
    }

    /// `POST /api/v1/mailings/{id}/{action}` (pause, resume, cancel): the mailing after it.
    async fn mailing_action(&self, id: MailingId, action: &str) -> Result<Mailing> {
        let view: MailingView = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/mailings/{id}/{action}"),
                &[],
                None,
            )
            .await?;
        Ok(view.mailing)
    }

    /// Up to `limit` items of a list endpoint, page after page.
    async fn collect<T: DeserializeOwned>(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        limit: usize,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        query.push(("limit", PAGE.min(limit).to_string()));
        loop {
            let page: Page<T> = self.call(reqwest::Method::GET, path, &query, None).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(next) if out.len() < limit => {
                    query.retain(|(k, _)| *k != "cursor");
                    query.push(("cursor", next));
                }
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// Items asked for per request: within any server's `api.max_page_size` but the smallest.
const PAGE: usize = 100;

enum RemoteBody {
    Json(Value),
}

/// A request body as JSON.
fn to_json(body: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(body).map_err(|e| AdminError::Remote {
        message: format!("cannot encode the request: {e}"),
        usage: false,
    })
}

/// The place a tenant command acts on.
pub enum Backend {
    Local {
        store: Store,
        tenant: crate::ids::TenantId,
    },
    Remote(RemoteApi),
}

impl Backend {
    pub async fn add_client(&self, client: NewClient) -> Result<Client> {
        match self {
            Backend::Local { store, tenant } => Ok(store.add_client(*tenant, client).await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::POST,
                    "/api/v1/clients",
                    &[],
                    Some(RemoteBody::Json(to_json(&ClientInput::from_new_client(
                        &client,
                    ))?)),
                )
                .await
            }
        }
    }

    pub async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<Client>> {
        match self {
            Backend::Local { store, tenant } => Ok(store.list_clients(*tenant, query).await?),
            Backend::Remote(api) => {
                let mut params = Vec::new();
                if let Some(tag) = &query.tag {
                    params.push(("tag", tag.clone()));
                }
                if let Some(op) = &query.operator_code {
                    params.push(("operator_code", op.clone()));
                }
                if let Some(after) = query.after_id {
                    params.push(("cursor", after.to_string()));
                }
                api.collect("/api/v1/clients", params, query.limit as usize)
                    .await
            }
        }
    }

    pub async fn client(&self, id: ClientId) -> Result<Client> {
        match self {
            Backend::Local { store, tenant } => Ok(store.client(*tenant, id).await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::GET,
                    &format!("/api/v1/clients/{id}"),
                    &[],
                    None,
                )
                .await
            }
        }
    }

    pub async fn update_client(&self, id: ClientId, patch: ClientPatch) -> Result<Client> {
        match self {
            Backend::Local { store, tenant } => Ok(store.update_client(*tenant, id, patch).await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/clients/{id}"),
                    &[],
                    Some(RemoteBody::Json(to_json(&ClientPatchInput::from_patch(
                        &patch,
                    ))?)),
                )
                .await
            }
        }
    }

    /// A token a client's app opens its in-app inbox with: made here with `ttl_secs`, or by
    /// the server with its own `inapp.token_ttl_secs`.
    pub async fn inbox_token(
        &self,
        id: ClientId,
        ttl_secs: u64,
    ) -> Result<crate::app::inbox::InboxToken> {
        match self {
            Backend::Local { store, tenant } => {
                let signer = crate::app::inbox::tokens(store).await?;
                Ok(crate::app::inbox::token(store, &signer, *tenant, id, ttl_secs).await?)
            }
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::POST,
                    &format!("/api/v1/clients/{id}/inbox-token"),
                    &[],
                    None,
                )
                .await
            }
        }
    }

    pub async fn delete_client(&self, id: ClientId) -> Result<()> {
        match self {
            Backend::Local { store, tenant } => Ok(store.delete_client(*tenant, id).await?),
            Backend::Remote(api) => api.delete(&format!("/api/v1/clients/{id}")).await,
        }
    }

    /// Import a CSV client list: streamed into the local store, or uploaded as it is read.
    /// `progress` hears the bytes of the file done so far.
    /// `max_errors` bounds the local report; a server applies its own.
    pub async fn import_csv(
        &self,
        file: std::fs::File,
        skip_invalid: bool,
        max_errors: usize,
        progress: impl Fn(u64),
    ) -> Result<ImportOutcome> {
        match self {
            Backend::Local { store, tenant } => Ok(crate::app::import::import_local_csv(
                store,
                *tenant,
                file,
                skip_invalid,
                max_errors,
                progress,
            )
            .await?),
            Backend::Remote(api) => api.import_csv(file, skip_invalid, progress).await,
        }
    }

    pub async fn create_mailing(
        &self,
        new: NewMailing,
        limits: crate::template::TextLimits,
    ) -> Result<Mailing> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(crate::app::mailings::create(store, *tenant, new, limits).await?)
            }
            Backend::Remote(api) => {
                let view: MailingView = api
                    .call(
                        reqwest::Method::POST,
                        "/api/v1/mailings",
                        &[],
                        Some(RemoteBody::Json(to_json(&MailingInput::from_new_mailing(
                            &new,
                        )?)?)),
                    )
                    .await?;
                Ok(view.mailing)
            }
        }
    }

    pub async fn list_mailings(&self, limit: u32) -> Result<Vec<Mailing>> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(store.list_mailings(*tenant, None, limit).await?)
            }
            Backend::Remote(api) => {
                api.collect("/api/v1/mailings", Vec::new(), limit as usize)
                    .await
            }
        }
    }

    /// A mailing with its message counts per state.
    pub async fn mailing(&self, id: MailingId) -> Result<(Mailing, StateCounts)> {
        match self {
            Backend::Local { store, tenant } => {
                let mailing = store.mailing(*tenant, id).await?;
                let counts = store.mailing_counts(id).await?;
                Ok((mailing, counts))
            }
            Backend::Remote(api) => {
                let view: MailingView = api
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/v1/mailings/{id}"),
                        &[],
                        None,
                    )
                    .await?;
                Ok((view.mailing, view.counts))
            }
        }
    }

    pub async fn cancel_mailing(&self, id: MailingId) -> Result<()> {
        match self {
            Backend::Local { store, tenant } => store
                .cancel_mailing(*tenant, id)
                .await
                .map(drop)
                .map_err(Into::into),
            Backend::Remote(api) => api
                .call::<Value>(
                    reqwest::Method::POST,
                    &format!("/api/v1/mailings/{id}/cancel"),
                    &[],
                    None,
                )
                .await
                .map(drop),
        }
    }

    /// Pause a running or scheduled mailing: queued messages wait until it is resumed.
    pub async fn pause_mailing(&self, id: MailingId) -> Result<Mailing> {
        match self {
            Backend::Local { store, tenant } => Ok(store.pause_mailing(*tenant, id).await?),
            Backend::Remote(api) => api.mailing_action(id, "pause").await,
        }
    }

    pub async fn resume_mailing(&self, id: MailingId) -> Result<Mailing> {
        match self {
            Backend::Local { store, tenant } => Ok(store.resume_mailing(*tenant, id).await?),
            Backend::Remote(api) => api.mailing_action(id, "resume").await,
        }
    }

    /// Queue a mailing's permanently failed messages again; the answer is how many.
    pub async fn retry_failed(&self, id: MailingId) -> Result<u64> {
        match self {
            Backend::Local { store, tenant } => Ok(store.retry_failed(*tenant, id).await?),
            Backend::Remote(api) => {
                #[derive(Deserialize)]
                struct Retried {
                    retried: u64,
                }
                let answer: Retried = api
                    .call(
                        reqwest::Method::POST,
                        &format!("/api/v1/mailings/{id}/retry-failed"),
                        &[],
                        None,
                    )
                    .await?;
                Ok(answer.retried)
            }
        }
    }

    /// One page of a mailing's messages after id `after`, optionally in one state.
    pub async fn mailing_messages(
        &self,
        id: MailingId,
        state: Option<MessageState>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRow>> {
        match self {
            Backend::Local { store, tenant } => Ok(store
                .list_messages(*tenant, id, state, after, limit)
                .await?),
            Backend::Remote(api) => {
                let mut params = Vec::new();
                if let Some(state) = state {
                    params.push(("state", state.as_str().to_owned()));
                }
                if let Some(after) = after {
                    params.push(("cursor", after.to_string()));
                }
                api.collect(
                    &format!("/api/v1/mailings/{id}/messages"),
                    params,
                    limit as usize,
                )
                .await
            }
        }
    }

    /// What a mailing would do if it started now: audience, duration, a rendered sample.
    pub async fn preview_mailing(
        &self,
        new: NewMailing,
        settings: &crate::settings::Settings,
    ) -> Result<MailingPreview> {
        match self {
            Backend::Local { store, tenant } => Ok(store
                .preview_mailing(
                    *tenant,
                    &new,
                    settings.text_limits(new.channel),
                    settings.send_rate_per_second(new.channel),
                )
                .await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::POST,
                    "/api/v1/mailings/preview",
                    &[],
                    Some(RemoteBody::Json(to_json(&MailingInput::from_new_mailing(
                        &new,
                    )?)?)),
                )
                .await
            }
        }
    }

    /// Replace a mailing that has not started yet.
    pub async fn update_mailing(
        &self,
        id: MailingId,
        new: NewMailing,
        limits: crate::template::TextLimits,
    ) -> Result<Mailing> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(crate::app::mailings::update(store, *tenant, id, new, limits).await?)
            }
            Backend::Remote(api) => {
                let view: MailingView = api
                    .call(
                        reqwest::Method::PUT,
                        &format!("/api/v1/mailings/{id}"),
                        &[],
                        Some(RemoteBody::Json(to_json(&MailingInput::from_new_mailing(
                            &new,
                        )?)?)),
                    )
                    .await?;
                Ok(view.mailing)
            }
        }
    }

    /// Delete a mailing that is not running, with its messages.
    pub async fn delete_mailing(&self, id: MailingId) -> Result<()> {
        match self {
            Backend::Local { store, tenant } => Ok(store.delete_mailing(*tenant, id).await?),
            Backend::Remote(api) => api.delete(&format!("/api/v1/mailings/{id}")).await,
        }
    }

    /// A notification: where it stands, the channels tried, its events.
    pub async fn notification(&self, id: i64) -> Result<Notification> {
        match self {
            Backend::Local { store, tenant } => Ok(store.notification(*tenant, id).await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::GET,
                    &format!("/api/v1/notifications/{id}"),
                    &[],
                    None,
                )
                .await
            }
        }
    }

    /// A client's channel order and quiet hours (the configured defaults if it set none).
    pub async fn preferences(
        &self,
        client: ClientId,
        defaults: &NotificationSettings,
    ) -> Result<NotificationPreferences> {
        match self {
            Backend::Local { store, tenant } => Ok(crate::app::notifications::preferences(
                store, *tenant, client, defaults,
            )
            .await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::GET,
                    &format!("/api/v1/clients/{client}/notification-preferences"),
                    &[],
                    None,
                )
                .await
            }
        }
    }

    pub async fn set_preferences(
        &self,
        client: ClientId,
        preferences: &NotificationPreferences,
    ) -> Result<NotificationPreferences> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(
                    crate::app::notifications::set_preferences(store, *tenant, client, preferences)
                        .await?,
                )
            }
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::PUT,
                    &format!("/api/v1/clients/{client}/notification-preferences"),
                    &[],
                    Some(RemoteBody::Json(to_json(preferences)?)),
                )
                .await
            }
        }
    }

    /// Store a browser's push subscription for a client.
    pub async fn add_push_subscription(
        &self,
        client: ClientId,
        new: &NewPushSubscription,
        settings: &crate::settings::WebPushSettings,
    ) -> Result<StoredPushSubscription> {
        match self {
            Backend::Local { store, tenant } => Ok(crate::app::push::add_push_subscription(
                store, *tenant, client, new, settings,
            )
            .await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::POST,
                    &format!("/api/v1/clients/{client}/push-subscriptions"),
                    &[],
                    Some(RemoteBody::Json(to_json(
                        &PushSubscriptionInput::from_new_subscription(new),
                    )?)),
                )
                .await
            }
        }
    }

    pub async fn push_subscriptions(
        &self,
        client: ClientId,
    ) -> Result<Vec<StoredPushSubscription>> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(store.list_push_subscriptions(*tenant, client).await?)
            }
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::GET,
                    &format!("/api/v1/clients/{client}/push-subscriptions"),
                    &[],
                    None,
                )
                .await
            }
        }
    }

    pub async fn remove_push_subscription(&self, id: i64) -> Result<()> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(store.remove_push_subscription(*tenant, id).await?)
            }
            Backend::Remote(api) => {
                api.delete(&format!("/api/v1/push-subscriptions/{id}"))
                    .await
            }
        }
    }

    /// Register a webhook URL; the answer carries its signing secret, shown this once.
    pub async fn add_webhook(
        &self,
        url: &str,
        settings: &crate::settings::WebhookSettings,
    ) -> Result<Webhook> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(crate::app::webhooks::add_webhook(store, *tenant, url, settings).await?)
            }
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::POST,
                    "/api/v1/webhooks",
                    &[],
                    Some(RemoteBody::Json(to_json(&WebhookInput {
                        url: url.to_string(),
                    })?)),
                )
                .await
            }
        }
    }

    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        match self {
            Backend::Local { store, tenant } => Ok(store.webhooks(*tenant).await?),
            Backend::Remote(api) => {
                api.call(reqwest::Method::GET, "/api/v1/webhooks", &[], None)
                    .await
            }
        }
    }

    pub async fn remove_webhook(&self, id: i64) -> Result<()> {
        match self {
            Backend::Local { store, tenant } => Ok(store.remove_webhook(*tenant, id).await?),
            Backend::Remote(api) => api.delete(&format!("/api/v1/webhooks/{id}")).await,
        }
    }

    /// The latest events of a webhook, newest first, as the API lists them.
    pub async fn webhook_deliveries(&self, id: i64) -> Result<Vec<WebhookDelivery>> {
        match self {
            Backend::Local { store, tenant } => Ok(store
                .webhook_deliveries(*tenant, id, crate::store::WEBHOOK_DELIVERIES_LISTED)
                .await?),
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::GET,
                    &format!("/api/v1/webhooks/{id}/deliveries"),
                    &[],
                    None,
                )
                .await
            }
        }
    }

    /// Register a bot; locally its token is first checked with Telegram (`getMe` at
    /// `telegram.api_url`), as the API does for a remote server.
    pub async fn add_telegram_bot(
        &self,
        name: &str,
        token: &Secret,
        telegram: &TelegramSettings,
    ) -> Result<RegisteredBot> {
        match self {
            Backend::Local { store, tenant } => {
                crate::app::bots::register_bot(store, *tenant, name, token, telegram)
                    .await
                    .map_err(|e| match e {
                        BotRegistrationError::Store(e) => AdminError::from(e),
                        BotRegistrationError::Refused(reason) => {
                            AdminError::Invalid(invalid(reason))
                        }
                        BotRegistrationError::Unreachable(e) => AdminError::Delivery(e),
                    })
            }
            Backend::Remote(api) => {
                api.call(
                    reqwest::Method::POST,
                    "/api/v1/telegram-bots",
                    &[],
                    Some(RemoteBody::Json(to_json(&BotInput {
                        name: name.to_string(),
                        token: token.expose().to_string(),
                    })?)),
                )
                .await
            }
        }
    }

    pub async fn telegram_bots(&self) -> Result<Vec<RegisteredBot>> {
        match self {
            Backend::Local { store, tenant } => Ok(store.telegram_bots(*tenant).await?),
            Backend::Remote(api) => {
                api.call(reqwest::Method::GET, "/api/v1/telegram-bots", &[], None)
                    .await
            }
        }
    }

    pub async fn remove_telegram_bot(&self, name: &str) -> Result<()> {
        match self {
            Backend::Local { store, tenant } => {
                Ok(store.remove_telegram_bot(*tenant, name).await?)
            }
            Backend::Remote(api) => api.delete(&format!("/api/v1/telegram-bots/{name}")).await,
        }
    }

    /// Notify one client; the answer is the notification (an earlier one when the
    /// idempotency key was used before).
    pub async fn notify(
        &self,
        new: NewNotification,
        settings: &NotificationSettings,
    ) -> Result<Notification> {
        match self {
            Backend::Local { store, tenant } => Ok(crate::app::notifications::notify(
                store, *tenant, new, settings,
            )
            .await?
            .0),
            Backend::Remote(api) => {
                let body = to_json(&NotificationInput::from_new_notification(&new))?;
                let key = new.idempotency_key.as_deref();
                let headers: Vec<(&str, &str)> =
                    key.map(|k| ("idempotency-key", k)).into_iter().collect();
                api.call_with(
                    reqwest::Method::POST,
                    "/api/v1/notifications",
                    &[],
                    Some(RemoteBody::Json(body)),
                    &headers,
                )
                .await
            }
        }
    }

    /// Counts per mailing and state; `day` is YYYY-MM-DD (UTC).
    pub async fn stats(&self, day: Option<&str>) -> Result<Vec<MailingStats>> {
        match self {
            Backend::Local { store, tenant } => {
                let range = day.map(crate::report::utc_day_range).transpose()?;
                Ok(store.stats(*tenant, range).await?)
            }
            Backend::Remote(api) => {
                let params = day.map(|d| vec![("day", d.to_owned())]).unwrap_or_default();
                let mut out: Vec<MailingStats> =
                    api.collect("/api/v1/stats", params, usize::MAX).await?;
                out.sort_by_key(|s| s.mailing_id);
                Ok(out)
            }
        }
    }
}

/// Commands that manage users and tokens work on the local database only.
pub fn local_only(what: &str) -> AdminError {
    invalid(format!(
        "{what} works on the server's own database: run it there, without --server"
    ))
    .into()
}
