//! What the end-to-end benchmarks share: the audience they import and the mailing they send.

use blast::domain::{AudienceFilter, ChannelKind, Phone, Priority};
use blast::store::{Mailing, NewClient, NewMailing, Store, StoreError};
use std::time::Instant;

/// Import `n` clients tagged `bench` for `tenant`; returns how long the import took, in seconds.
pub async fn import_audience(store: &Store, tenant: i64, n: usize) -> Result<f64, StoreError> {
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
pub async fn create_mailing(store: &Store, tenant: i64, now: i64) -> Result<Mailing, StoreError> {
    store
        .create_mailing(
            tenant,
            NewMailing {
                channel: ChannelKind::Sms,
                text: "Hello {{ name }}, your code is {{ id }}".into(),
                filter: AudienceFilter {
                    tags: vec!["bench".into()],
                    operator_codes: vec![],
                },
                priority: Priority::Medium,
                start_at: now,
                end_at: now + 3_600_000,
                local_hours: None,
                subject: None,
                html: None,
                telegram: None,
                upload: None,
            },
            1000,
        )
        .await
}
