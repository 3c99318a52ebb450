//! The HTTP API: a thin axum layer over the store. `blast serve` runs it alone, `blast up`
//! beside the worker. Every route is documented in the OpenAPI document at `/openapi.json`
//! (generated from the handlers) and browsable at `/docs`.

mod auth;
mod bots;
mod clients;
mod docs;
mod document;
pub mod error;
mod idempotency;
mod inbox;
mod mailings;
mod notifications;
pub(crate) mod ops;
mod server;
mod unsubscribe;
mod upload;
mod webhooks;

use crate::settings::Settings;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub settings: Settings,
    /// Password attempts per client address and user name.
    pub login_limiter: DefaultKeyedRateLimiter<(IpAddr, String)>,
    /// `api.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Login and registration attempts per client address.
    pub address_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Recently checked bearer tokens.
    pub tokens: auth::TokenCache,
    /// Fires when the server shuts down: long-lived streams end.
    pub shutdown: CancellationToken,
    /// The job queues, opened on first use (readiness checks them).
    pub queue: tokio::sync::OnceCell<crate::queue::Queue>,
    /// Checks unsubscribe links; its secret is read from the store on first use.
    pub unsubscribe: tokio::sync::OnceCell<crate::unsubscribe::UnsubscribeKeys>,
    /// Imports running per tenant (`api.max_concurrent_imports_per_tenant`).
    pub imports: Arc<upload::TenantSlots>,
    /// Live event streams per tenant (`api.max_event_streams_per_tenant`).
    pub event_streams: Arc<upload::TenantSlots>,
    /// Makes and checks inbox tokens; its secret is read from the store on first use.
    pub inbox_tokens: tokio::sync::OnceCell<crate::channels::inapp::InboxTokens>,
    /// The inbox sockets of this process, started with the first.
    pub inbox_hub: tokio::sync::OnceCell<crate::inbox::Hub>,
    /// Live inbox connections (sockets, event streams): a stopping server waits for them to
    /// say goodbye (they end when `shutdown` fires).
    pub live_connections: tokio_util::task::TaskTracker,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// One of `tenant`'s import slots (`api.max_concurrent_imports_per_tenant`), or a 429.
    pub fn import_slot(
        &self,
        tenant: crate::ids::TenantId,
    ) -> Result<upload::Slot, error::ApiError> {
        self.imports.take(
            tenant,
            self.settings.api.max_concurrent_imports_per_tenant,
            "imports",
        )
    }

    /// The job queues, opened on first use.
    pub async fn queue(&self) -> Result<&crate::queue::Queue, crate::store::StoreError> {
        self.queue
            .get_or_try_init(|| crate::queue::Queue::open(&self.store, &self.settings.redis))
            .await
    }

    /// After pausing or cancelling `mailing_id`: tell the workers of other processes at once.
    pub async fn announce_halt(&self, mailing_id: crate::ids::MailingId) {
        match self.queue().await {
            Ok(queue) => crate::halts::announce(queue, mailing_id).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the queue to tell the workers; they see the change at their next check")
            }
        }
    }

    pub fn new(store: Store, settings: Settings, shutdown: CancellationToken) -> AppState {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        AppState(Arc::new(Inner {
            login_limiter: RateLimiter::keyed(per_minute(settings.api.login_attempts_per_minute)),
            address_limiter: RateLimiter::keyed(per_minute(
                settings.api.auth_attempts_per_minute_per_ip,
            )),
            tokens: auth::TokenCache::new(settings.api.token_cache_secs),
            trusted_proxies: settings
                .api
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::settings::parse_proxy(p))
                .collect(),
            store,
            settings,
            shutdown,
            queue: tokio::sync::OnceCell::new(),
            unsubscribe: tokio::sync::OnceCell::new(),
            imports: Arc::default(),
            event_streams: Arc::default(),
            inbox_tokens: tokio::sync::OnceCell::new(),
            inbox_hub: tokio::sync::OnceCell::new(),
            live_connections: tokio_util::task::TaskTracker::new(),
        }))
    }
}

use crate::wire::Page;

#[derive(OpenApi)]
#[openapi(
    info(title = "blast", description = "Bulk messaging and notifications"),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "clients"), (name = "mailings"), (name = "telegram"), (name = "notifications"), (name = "inbox"), (name = "webhooks"), (name = "stats"), (name = "operations"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and the OpenAPI document it was built from.
pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let import_limit = state.settings.api.import_body_limit_bytes;
    let body_limit = state.settings.api.body_limit_bytes;
    let with_import_limit =
        |r: MethodRouter<AppState>| r.layer(DefaultBodyLimit::max(import_limit));
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::register))
        .routes(routes!(clients::list, clients::create))
        .routes(routes!(
            clients::get,
            clients::replace,
            clients::patch,
            clients::delete
        ))
        .routes(routes!(clients::import_clients).map(with_import_limit))
        // A mailing may carry a Telegram media file inline.
        .routes(routes!(mailings::list, mailings::create).map(with_import_limit))
        .routes(routes!(mailings::preview))
        .routes(routes!(mailings::get, mailings::replace, mailings::delete))
        .routes(routes!(mailings::cancel))
        .routes(routes!(mailings::pause))
        .routes(routes!(mailings::resume))
        .routes(routes!(mailings::retry_failed))
        .routes(routes!(mailings::stats))
        .routes(routes!(mailings::messages))
        .routes(routes!(mailings::events))
        .routes(routes!(mailings::all_stats))
        .routes(routes!(bots::list, bots::create))
        .routes(routes!(bots::delete))
        .routes(routes!(notifications::create))
        .routes(routes!(notifications::get))
        .routes(routes!(
            notifications::get_preferences,
            notifications::put_preferences
        ))
        .routes(routes!(
            notifications::subscribe,
            notifications::subscriptions
        ))
        .routes(routes!(notifications::unsubscribe))
        .routes(routes!(inbox::token))
        .routes(routes!(inbox::items))
        .routes(routes!(inbox::unread))
        .routes(routes!(inbox::read))
        .routes(routes!(inbox::mark_unread))
        .routes(routes!(inbox::archive))
        .routes(routes!(inbox::read_all))
        .routes(routes!(inbox::ack))
        .routes(routes!(inbox::socket))
        .routes(routes!(inbox::events))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(unsubscribe::confirm_page, unsubscribe::unsubscribe))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .split_for_parts();
    let mut api = api;
    document::add_common_responses(&mut api, state.settings.api.max_page_size);
    let document = api.clone();
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json(document) }
            }),
        )
        .merge(docs::routes());
    let router = if state.settings.console.enabled {
        let (halts, streams, logins, tokens, imports) = (
            state.clone(),
            state.clone(),
            state.clone(),
            state.clone(),
            state.clone(),
        );
        let from_api = crate::console::FromApi {
            announce_halt: Arc::new(move |id| {
                let api = halts.clone();
                Box::pin(async move { api.announce_halt(id).await })
            }),
            stream_slot: Arc::new(move |tenant| {
                let max = streams.settings.api.max_event_streams_per_tenant;
                let slot = streams
                    .event_streams
                    .take(tenant, max, "event streams")
                    .ok()?;
                Some(Box::new(slot) as Box<dyn Send + Sync>)
            }),
            shutdown: state.shutdown.clone(),
            check_sign_in: Arc::new(move |peer, headers, username| {
                auth::check_login(&logins, peer, headers, username).map_err(|e| {
                    let limited = e.status == axum::http::StatusCode::TOO_MANY_REQUESTS;
                    crate::console::SignInRefused {
                        limited,
                        message: e.message,
                    }
                })
            }),
            forget_tokens: Arc::new(move || tokens.tokens.forget_all()),
            import_clients: Arc::new(move |tenant, headers, skip_invalid, body| {
                let state = imports.clone();
                Box::pin(async move {
                    use axum::response::IntoResponse;
                    clients::import_body(&state, tenant, &headers, skip_invalid, None, body)
                        .await
                        .into_response()
                })
            }),
        };
        router.merge(crate::console::routes(
            state.store.clone(),
            state.settings.clone(),
            from_api,
        ))
    } else {
        router
    };
    let router = router
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        // A body that stops arriving ends the request (408) instead of holding it open. It
        // wraps the idempotency layer too, which spools keyed bodies before the handler.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(state.settings.api.body_read_timeout_secs.max(1)),
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state);
    (router, api)
}

/// How long a stopping server waits for its live inbox connections to close.
const LIVE_GOODBYE: std::time::Duration = std::time::Duration::from_secs(15);

/// Serve the API on `listener` until `shutdown` completes; requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let state = AppState::new(store.clone(), settings.clone(), stop.clone());
    let (router, _) = router(state.clone());
    let live_connections = state.live_connections.clone();
    crate::metrics::handle();
    let upkeep = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
        let max_age = i64::try_from(settings.api.idempotency_ttl_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        loop {
            ticker.tick().await;
            crate::metrics::handle().run_upkeep();
            state.login_limiter.retain_recent();
            state.address_limiter.retain_recent();
            if let Err(e) = store.purge_idempotency_keys(max_age).await {
                tracing::warn!(error = %e, "cannot purge old idempotency keys");
            }
        }
    });
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "API listening");
    }
    let header_timeout =
        std::time::Duration::from_secs(settings.api.header_read_timeout_secs.max(1));
    server::serve_http1(listener, router, header_timeout, stop).await;
    // The shutdown token told every live inbox connection to close; wait for their goodbyes.
    live_connections.close();
    if tokio::time::timeout(LIVE_GOODBYE, live_connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("inbox connections did not close in time; leaving them");
    }
    upkeep.abort();
    Ok(())
}
