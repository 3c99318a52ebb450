//! A notification as the API takes it (`POST /api/v1/notifications`).

use super::rules::PriorityName;
use crate::domain::Priority;
use crate::notify::Event;
use crate::store::NewNotification;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One event for one client.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationInput {
    pub client_id: crate::ids::ClientId,
    /// One line, at most 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// At most 1000 characters.
    #[serde(default)]
    pub body: String,
    /// Free JSON for the receiving app (a web push carries it), at most 1 KB.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Where the event leads: an http(s) URL.
    pub link: Option<String>,
    /// high (default), medium or low.
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<Priority>,
    /// Deliver even in the client's quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// Hold it this many minutes, and send the events that arrive meanwhile for the same
    /// client and `coalesce_key` with it as one digest.
    #[serde(default)]
    pub coalesce_minutes: u32,
    /// Which events coalesce together (default: all of the client's coalescing events).
    pub coalesce_key: Option<String>,
}

impl NotificationInput {
    /// The notification asked for; the idempotency key travels in a header.
    pub fn into_new_notification(self, idempotency_key: Option<String>) -> NewNotification {
        NewNotification {
            client_id: self.client_id,
            event: Event {
                title: self.title,
                body: self.body,
                data: self.data,
                link: self.link,
            },
            priority: self.priority.unwrap_or(Priority::High),
            urgent: self.urgent,
            coalesce_minutes: self.coalesce_minutes,
            coalesce_key: self.coalesce_key,
            idempotency_key,
        }
    }

    /// `new` as sent to a remote blast (its idempotency key goes in the header).
    pub fn from_new_notification(new: &NewNotification) -> NotificationInput {
        NotificationInput {
            client_id: new.client_id,
            title: new.event.title.clone(),
            body: new.event.body.clone(),
            data: new.event.data.clone(),
            link: new.event.link.clone(),
            priority: Some(new.priority),
            urgent: new.urgent,
            coalesce_minutes: new.coalesce_minutes,
            coalesce_key: new.coalesce_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_crosses_the_wire_unchanged() {
        let new = NewNotification {
            client_id: crate::ids::ClientId(7),
            event: Event {
                title: "Order shipped".into(),
                body: "On its way".into(),
                data: serde_json::json!({"order": 12}),
                link: Some("https://shop.example/o/12".into()),
            },
            priority: Priority::Low,
            urgent: true,
            coalesce_minutes: 5,
            coalesce_key: Some("orders".into()),
            idempotency_key: Some("k-1".into()),
        };
        let json =
            serde_json::to_string(&NotificationInput::from_new_notification(&new)).expect("json");
        let back: NotificationInput = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.into_new_notification(Some("k-1".into())), new);
    }
}
