//! blast: a bulk-messaging and notification daemon.
//!
//! The layers, top to bottom (see ARCHITECTURE.md): `admin` (what the CLI does) and the worker
//! roles on top of `store` (the database, the truth) and `queue` (apalis, carrying work tokens),
//! with `channels` at the edge talking to providers.

pub mod admin;
pub mod api;
pub mod app;
pub mod bot;
pub mod channels;
pub mod console;
pub mod dedup;
pub mod domain;
pub mod halts;
pub mod ids;
pub mod inbox;
#[cfg(test)]
mod layers;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod queue;
pub mod report;
pub mod secret;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod telegram;
pub mod telemetry;
pub mod template;
pub mod unsubscribe;
pub mod vapid;
pub mod wire;
pub mod worker;

pub use blast_jobs as jobs;

/// Milliseconds since the Unix epoch: the unit of every timestamp in the store.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
