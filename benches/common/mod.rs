//! What the end-to-end benchmarks share beyond the test kit's fixtures: the audience they
//! import and the mailing they send.
// Each benchmark is its own crate and uses a part of this module.
#![allow(dead_code)]

use blast::app::import::{ImportError, stream_import};
use blast::domain::ChannelKind;
use blast::ids::TenantId;
use blast::store::{Mailing, Store, StoreError};
use blast_testkit::fixtures;
use std::time::Instant;

/// Import `n` clients tagged `bench` for `tenant` the way `blast client import` does: streamed
/// in batches through the import use case, never all in memory. Returns how long it took, in
/// seconds.
pub async fn import_audience(
    store: &Store,
    tenant: TenantId,
    n: usize,
) -> Result<f64, ImportError> {
    let t = Instant::now();
    let rows = move || {
        Ok((0..n).map(|i| {
            Ok(Ok((
                i as u64 + 1,
                fixtures::numbered_client("79", "client ", i, "bench"),
            )))
        }))
    };
    let outcome = stream_import(store, tenant, false, 1000, rows, |_| {}).await?;
    if outcome.imported != n as u64 || !outcome.committed {
        return Err(ImportError::Invalid(blast::domain::invalid(format!(
            "imported {} of {n} clients",
            outcome.imported
        ))));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// A templated SMS mailing to every `bench` client, starting at `now`, open for an hour.
pub async fn create_mailing(
    store: &Store,
    tenant: TenantId,
    now: i64,
) -> Result<Mailing, StoreError> {
    blast::app::mailings::create(
        store,
        tenant,
        fixtures::mailing_to_tag(
            ChannelKind::Sms,
            "Hello {{ name }}, your code is {{ id }}",
            "bench",
            now,
            now + 3_600_000,
        ),
        blast::template::TextLimits::with_default_budget(1000),
    )
    .await
}
