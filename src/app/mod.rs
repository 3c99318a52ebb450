//! Use cases that the HTTP API and the CLI both call, above the store: what one request asks,
//! whoever asks it: the checks that need more than SQL (a DNS lookup for an address blast
//! will call) happen here, and the store only keeps what passed.

pub mod bots;
pub mod import;
pub mod inbox;
pub mod mailings;
pub mod notifications;
pub mod progress;
pub mod push;
pub mod webhooks;
