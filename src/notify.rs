//! What a notification says on each channel: one event as it is, several coalesced events as
//! one digest. Pure functions, shared by the dispatcher (the texts of a try's mailing) and the
//! worker (the web push payload).

use crate::domain::{ChannelKind, InvalidInput, invalid};
use serde::{Deserialize, Serialize};

/// Longest title of one event.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body of one event (a push payload must stay under 4 KB encrypted).
pub const MAX_BODY_CHARS: usize = 1000;
/// Largest `data` of one event, as JSON.
pub const MAX_DATA_BYTES: usize = 1024;
/// A digest lists this many events and counts the rest.
const DIGEST_LINES: usize = 10;
/// ... each cut to this many characters, so a digest stays a push.
const DIGEST_LINE_CHARS: usize = 160;
/// A web push payload larger than this drops the digest's event list (the app can fetch the
/// notification from the API by its id).
const MAX_PUSH_PAYLOAD_BYTES: usize = 3000;

/// One event of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub title: String,
    pub body: String,
    /// Free JSON for the receiving app (a web push carries it).
    #[serde(default)]
    pub data: serde_json::Value,
    /// Where the event leads (an http(s) URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Event {
    /// Check an event before it is stored.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let title = self.title.trim();
        if title.is_empty() {
            return Err(invalid("the notification has no title"));
        }
        if title.contains('\n') {
            return Err(invalid("the title must be one line"));
        }
        let chars = title.chars().count();
        if chars > MAX_TITLE_CHARS {
            return Err(invalid(format!(
                "the title has {chars} characters; the limit is {MAX_TITLE_CHARS}"
            )));
        }
        let chars = self.body.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(invalid(format!(
                "the body has {chars} characters; the limit is {MAX_BODY_CHARS}"
            )));
        }
        let data = serde_json::to_string(&self.data).unwrap_or_default();
        if data.len() > MAX_DATA_BYTES {
            return Err(invalid(format!(
                "data has {} bytes as JSON; the limit is {MAX_DATA_BYTES}",
                data.len()
            )));
        }
        if let Some(link) = &self.link {
            match reqwest::Url::parse(link) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => return Err(invalid(format!("the link {link:?} is not an http(s) URL"))),
            }
        }
        Ok(())
    }
}

/// A notification's message: its single event, or a digest of several.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    pub title: String,
    pub body: String,
    pub link: Option<String>,
}

/// Compose what the events of one notification say, in the order they came.
pub fn compose(events: &[Event]) -> Composed {
    match events {
        [one] => Composed {
            title: one.title.clone(),
            body: one.body.clone(),
            link: one.link.clone(),
        },
        many => {
            let mut lines: Vec<String> = many
                .iter()
                .take(DIGEST_LINES)
                .map(|e| {
                    let line = match e.body.trim() {
                        "" => format!("• {}", e.title),
                        body => format!("• {}: {}", e.title, first_line(body)),
                    };
                    shortened(&line, DIGEST_LINE_CHARS)
                })
                .collect();
            if many.len() > DIGEST_LINES {
                lines.push(format!("… and {} more", many.len() - DIGEST_LINES));
            }
            // One link would be a guess about which event matters; only a shared one stays.
            let link = many
                .first()
                .and_then(|e| e.link.clone())
                .filter(|link| many.iter().all(|e| e.link.as_ref() == Some(link)));
            Composed {
                title: format!("{} new notifications", many.len()),
                body: lines.join("\n"),
                link,
            }
        }
    }
}

/// `text` cut to `max` characters, marked with an ellipsis where cut.
fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

impl Composed {
    /// The text a try on `channel` sends (an email's plain-text body; its subject is the
    /// title).
    pub fn text_for(&self, channel: ChannelKind) -> String {
        let link = self
            .link
            .as_deref()
            .map(|l| format!("\n\n{l}"))
            .unwrap_or_default();
        match channel {
            // A title of its own beside the text: the body and the link.
            ChannelKind::Email | ChannelKind::InApp => format!("{}{link}", self.body),
            ChannelKind::WebPush => self.body.clone(),
            ChannelKind::Telegram => match self.body.trim() {
                "" => format!("{}{link}", self.title),
                body => format!("{}\n\n{body}{link}", self.title),
            },
            // A short plain-text channel (SMS, the log file): one line.
            _ => {
                let link = self
                    .link
                    .as_deref()
                    .map(|l| format!(" {l}"))
                    .unwrap_or_default();
                match self.body.trim() {
                    "" => format!("{}{link}", self.title),
                    body => format!("{}: {body}{link}", self.title),
                }
            }
        }
    }
}

/// The JSON a web push of notification `id` carries: what a service worker needs to show it
/// (`title`, `body`, `link`) and, for the app, the events' `data` (a digest lists its events
/// while they fit in a push).
pub fn push_payload(id: i64, events: &[Event]) -> Vec<u8> {
    let composed = compose(events);
    let mut payload = serde_json::json!({
        "notification_id": id,
        "title": composed.title,
        "body": composed.body,
        "link": composed.link,
    });
    match events {
        [one] => payload["data"] = one.data.clone(),
        many => payload["events"] = serde_json::json!(many),
    }
    let bytes = serde_json::to_vec(&payload).unwrap_or_default();
    if bytes.len() <= MAX_PUSH_PAYLOAD_BYTES {
        return bytes;
    }
    if let Some(map) = payload.as_object_mut() {
        map.remove("events");
        map.remove("data");
        map.insert("truncated".into(), serde_json::Value::Bool(true));
    }
    // Characters are not bytes (an emoji is four, a control character six as JSON): shorten
    // the body until the payload fits.
    let mut body: Vec<char> = composed.body.chars().collect();
    loop {
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        if bytes.len() <= MAX_PUSH_PAYLOAD_BYTES || body.is_empty() {
            return bytes;
        }
        body.truncate(body.len() * 3 / 4);
        let mut text: String = body.iter().collect();
        text.push('…');
        payload["body"] = serde_json::Value::String(text);
    }
}

/// `[notifications]`: one event to one client over its preferred channels in order. The
/// section lives here, with what a notification says, because the dispatcher reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// A notification not delivered on any channel this long after it was made expires.
    pub expire_after_secs: u64,
    /// The channel order of a client with no preferences of its own.
    pub default_channels: Vec<ChannelKind>,
    /// The longest coalescing window a notification may ask for, in minutes.
    pub max_coalesce_minutes: u32,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            expire_after_secs: 24 * 3600,
            default_channels: vec![
                ChannelKind::WebPush,
                ChannelKind::Telegram,
                ChannelKind::Email,
            ],
            max_coalesce_minutes: 24 * 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(title: &str, body: &str, link: Option<&str>) -> Event {
        Event {
            title: title.into(),
            body: body.into(),
            data: serde_json::json!({"t": title}),
            link: link.map(Into::into),
        }
    }

    #[test]
    fn one_event_is_itself_and_several_make_a_digest() {
        let one = compose(&[event(
            "Order shipped",
            "It is on its way",
            Some("https://x.test/o/1"),
        )]);
        assert_eq!(one.title, "Order shipped");
        assert_eq!(
            one.text_for(ChannelKind::Telegram),
            "Order shipped\n\nIt is on its way\n\nhttps://x.test/o/1"
        );
        let events: Vec<Event> = (1..=12)
            .map(|i| {
                event(
                    &format!("E{i}"),
                    &format!("body {i}\nmore"),
                    Some("https://x.test/a"),
                )
            })
            .collect();
        let digest = compose(&events);
        assert_eq!(digest.title, "12 new notifications");
        assert!(digest.body.starts_with("• E1: body 1\n• E2: body 2"));
        assert!(digest.body.ends_with("… and 2 more"));
        assert_eq!(digest.link.as_deref(), Some("https://x.test/a"));
        let mixed = compose(&[
            event("a", "", Some("https://x.test/1")),
            event("b", "", None),
        ]);
        assert_eq!(mixed.link, None);
        assert_eq!(mixed.body, "• a\n• b");
    }

    #[test]
    fn push_payloads_stay_small() {
        let payload: serde_json::Value =
            serde_json::from_slice(&push_payload(7, &[event("t", "b", None)])).expect("json");
        assert_eq!(payload["notification_id"], 7);
        assert_eq!(payload["data"], serde_json::json!({"t": "t"}));
        let big: Vec<Event> = (0..40)
            .map(|_| event(&"x".repeat(150), &"y".repeat(900), None))
            .collect();
        let bytes = push_payload(8, &big);
        assert!(bytes.len() <= MAX_PUSH_PAYLOAD_BYTES, "{}", bytes.len());
        let payload: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(payload["truncated"], true);
        assert_eq!(payload["title"], "40 new notifications");
        let wide = event("t", &"\u{1F600}\u{0001}".repeat(MAX_BODY_CHARS / 2), None);
        let bytes = push_payload(9, &[wide]);
        assert!(bytes.len() <= MAX_PUSH_PAYLOAD_BYTES, "{}", bytes.len());
    }

    #[test]
    fn events_are_checked() {
        assert!(event("", "b", None).validate().is_err());
        assert!(event("a\nb", "b", None).validate().is_err());
        assert!(
            event("t", "b", Some("javascript:alert(1)"))
                .validate()
                .is_err()
        );
        assert!(
            event("t", &"b".repeat(MAX_BODY_CHARS + 1), None)
                .validate()
                .is_err()
        );
        assert!(event("t", "b", Some("https://x.test")).validate().is_ok());
    }
}
