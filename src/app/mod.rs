//! Use cases that the HTTP API and the CLI both call, above the store: what one request asks,
//! whoever asks it.

pub mod import;
