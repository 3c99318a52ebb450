//! What the end-to-end benchmarks share: the audience they import, the mailing they send, and
//! the in-process worker.
// Each benchmark is its own crate and uses a part of this module.
#![allow(dead_code)]

use blast::domain::{AudienceFilter, ChannelKind, Phone};
use blast::settings::Settings;
use blast::store::{Mailing, NewClient, NewMailing, Store, StoreError};
use blast::worker::{self, Tenancy, WorkerError};
use std::time::Instant;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The worker role in this process; it stops when the returned sender fires (or is dropped).
pub fn start_worker(
    store: &Store,
    settings: Settings,
) -> (oneshot::Sender<()>, JoinHandle<Result<(), WorkerError>>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run(
        store.clone(),
        settings,
        Tenancy::Exclusive,
        async move {
            let _ = stop_rx.await;
        },
    ));
    (stop_tx, worker)
}

/// Import `n` clients tagged `bench` for `tenant`; returns how long the import took, in seconds.
pub async fn import_audience(
    store: &Store,
    tenant: blast::ids::TenantId,
    n: usize,
) -> Result<f64, StoreError> {
    let clients: Vec<NewClient> = (0..n)
        .map(|i| NewClient {
            phone: format!("79{:09}", i).parse::<Phone>().ok(),
            name: format!("client {i}"),
            timezone: "UTC".into(),
            tags: vec!["bench".into()],
            ..NewClient::default()
        })
        .collect();
    let t = Instant::now();
    store.import_clients(tenant, &clients, |_| {}).await?;
    Ok(t.elapsed().as_secs_f64())
}

/// A templated SMS mailing to every `bench` client, starting at `now`, open for an hour.
pub async fn create_mailing(
    store: &Store,
    tenant: blast::ids::TenantId,
    now: i64,
) -> Result<Mailing, StoreError> {
    blast::app::mailings::create(
        store,
        tenant,
        NewMailing {
            filter: AudienceFilter {
                tags: vec!["bench".into()],
                operator_codes: vec![],
            },
            ..NewMailing::new(
                ChannelKind::Sms,
                "Hello {{ name }}, your code is {{ id }}",
                now,
                now + 3_600_000,
            )
        },
        blast::template::TextLimits::with_default_budget(1000),
    )
    .await
}
