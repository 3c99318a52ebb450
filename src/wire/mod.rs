//! The JSON of the HTTP API: one set of request and response types for the API's handlers
//! and for the remote CLI client (`blast --server`), so that the two cannot drift apart.
//!
//! Each request type converts both ways: from the JSON into the domain value a use case takes
//! (the API), and from that value into the JSON (the CLI talking to a remote blast).

pub mod clients;
pub mod mailings;
pub mod notifications;
pub mod registrations;
pub mod rules;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of a list, with the cursor of the next page (absent on the last page).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of at most `limit` items: a full one names the last item's id (`id`) as the
    /// cursor of the next.
    pub fn new(items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Page<T> {
        let next_cursor = (items.len() == limit as usize)
            .then(|| items.last().map(|last| id(last).to_string()))
            .flatten();
        Page { items, next_cursor }
    }
}
