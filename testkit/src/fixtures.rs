//! What tests and benchmarks both build blast's values with: a numbered audience, a mailing
//! to one tag, and the worker role running in this process.

use blast::domain::{AudienceFilter, ChannelKind, Phone};
use blast::settings::Settings;
use blast::store::{NewClient, NewMailing, Store};
use blast::worker::{self, Tenancy, WorkerError};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `n` clients with phones `{phone_prefix}100000000`.. (11 digits in all), named
/// "{name_prefix}{i}", in UTC, tagged `tag`.
pub fn numbered_clients(
    phone_prefix: &str,
    name_prefix: &str,
    n: usize,
    tag: &str,
) -> Vec<NewClient> {
    (0..n)
        .map(|i| numbered_client(phone_prefix, name_prefix, i, tag))
        .collect()
}

/// The `i`th client of [`numbered_clients`], for a caller that streams them.
pub fn numbered_client(phone_prefix: &str, name_prefix: &str, i: usize, tag: &str) -> NewClient {
    NewClient {
        phone: format!("{phone_prefix}{:09}", 100_000_000 + i)
            .parse::<Phone>()
            .ok(),
        name: format!("{name_prefix}{i}"),
        timezone: "UTC".into(),
        tags: vec![tag.to_owned()],
        ..NewClient::default()
    }
}

/// A mailing of `text` on `channel` to every client tagged `tag`, open from `start_at` to
/// `end_at` (Unix ms).
pub fn mailing_to_tag(
    channel: ChannelKind,
    text: &str,
    tag: &str,
    start_at: i64,
    end_at: i64,
) -> NewMailing {
    NewMailing {
        filter: AudienceFilter {
            tags: vec![tag.into()],
            operator_codes: vec![],
        },
        ..NewMailing::new(channel, text, start_at, end_at)
    }
}

/// A worker running in this process until `stop`.
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), WorkerError>>,
}

impl RunningWorker {
    pub fn start(store: &Store, settings: Settings) -> RunningWorker {
        RunningWorker::start_with(store, settings, Tenancy::Exclusive)
    }

    /// One of several workers on the same database (as processes on many hosts would be).
    pub fn start_shared(store: &Store, settings: Settings) -> RunningWorker {
        RunningWorker::start_with(store, settings, Tenancy::Shared)
    }

    fn start_with(store: &Store, settings: Settings, tenancy: Tenancy) -> RunningWorker {
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker::run(store.clone(), settings, tenancy, async move {
            let _ = rx.await;
        }));
        RunningWorker {
            stop: Some(tx),
            handle,
        }
    }

    /// Stop the worker and wait for it: its own result, inside why its task may not have
    /// joined.
    pub async fn join(mut self) -> Result<Result<(), WorkerError>, tokio::task::JoinError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await
    }

    /// Stop the worker and wait for it; panics unless it ends cleanly within 30 s.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.handle)
            .await
            .expect("worker stops within 30 s")
            .expect("worker task joins")
            .expect("worker ends cleanly");
    }
}
