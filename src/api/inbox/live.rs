//! One app's live inbox, over a WebSocket (`GET /api/v1/inbox/ws`) or an event stream
//! (`GET /api/v1/inbox/events`): first every item after the last id the app saw (oldest
//! first), then `{"type":"ready","unread":…}`, then each new item as it is stored, as
//! `{"type":"item","item":{…}}`.
//!
//! Over a socket the app acknowledges what it shows with `{"type":"ack","ids":[…]}` (the
//! items become `delivered`) and may mark them read with `{"type":"read","ids":[…]}`. Pings go
//! out every `inapp.heartbeat_secs`. Close codes: 4001 the token ran out, 4008 the socket fell
//! too far behind, 4009 a newer socket of the client replaced it, 1001 the server is stopping
//! (an event stream sends them as a last `{"type":"close","code","reason"}`). After any of
//! them the app connects again with the last id it saw and misses nothing.

use super::AppState;
use crate::channels::inapp::InboxClaims;
use crate::inbox::{Hub, LetGo};
use crate::store::{InboxItem, InboxMark, StoreError};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::response::sse::Event;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;

/// Items read per query while a socket catches up.
const CATCH_UP_PAGE: u32 = 200;
/// The largest frame an app may send.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
/// A socket's read buffer: an app's frames are small.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long a new socket waits for its hub to listen before it catches up anyway.
const HUB_LISTENING_WAIT: Duration = Duration::from_secs(5);
/// Ids of the items a socket sent that it remembers, so an item that comes both from the
/// catch-up and live goes out once.
const SENT_REMEMBERED: usize = 1024;
/// Events written ahead of an event stream's body.
const STREAM_BUFFER: usize = 16;
/// A frame the app does not take within this long (it stopped reading but keeps the
/// connection) ends the connection: nothing else waits on it.
const SEND_WITHIN: Duration = Duration::from_secs(10);

/// Where the frames go.
pub enum Outlet {
    /// Boxed: one per connection, and far larger than a stream's sender.
    Socket(Box<WebSocket>),
    /// The events of a server-sent event stream, which its body reads.
    Stream(mpsc::Sender<Event>),
}

/// An event stream's body: the events its task writes.
pub struct EventStream(mpsc::Receiver<Event>);

impl futures::Stream for EventStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|event| event.map(Ok))
    }
}

/// The app went away (or its connection broke).
struct Gone;

/// What the app sent.
enum Heard {
    Text(String),
    /// A pong, or a ping the library answers.
    Other,
    Gone,
}

impl Outlet {
    /// An event stream's outlet and the body that reads it.
    pub fn stream() -> (Outlet, EventStream) {
        let (events, body) = mpsc::channel(STREAM_BUFFER);
        (Outlet::Stream(events), EventStream(body))
    }

    /// Send one frame; an item's carries its id (an event stream's `Last-Event-ID`).
    async fn send(&mut self, frame: &serde_json::Value, item_id: Option<i64>) -> Result<(), Gone> {
        tokio::time::timeout(SEND_WITHIN, self.send_now(frame, item_id))
            .await
            .map_err(|_| Gone)?
    }

    async fn send_now(
        &mut self,
        frame: &serde_json::Value,
        item_id: Option<i64>,
    ) -> Result<(), Gone> {
        match self {
            Outlet::Socket(socket) => socket
                .send(Message::Text(frame.to_string().into()))
                .await
                .map_err(|_| Gone),
            Outlet::Stream(events) => {
                let kind = frame["type"].as_str().unwrap_or("message");
                let mut event = Event::default().event(kind).data(frame.to_string());
                if let Some(id) = item_id {
                    event = event.id(id.to_string());
                }
                events.send(event).await.map_err(|_| Gone)
            }
        }
    }

    async fn ping(&mut self) -> Result<(), Gone> {
        tokio::time::timeout(SEND_WITHIN, self.ping_now())
            .await
            .map_err(|_| Gone)?
    }

    async fn ping_now(&mut self) -> Result<(), Gone> {
        match self {
            Outlet::Socket(socket) => socket
                .send(Message::Ping(Default::default()))
                .await
                .map_err(|_| Gone),
            Outlet::Stream(events) => events
                .send(Event::default().comment("ping"))
                .await
                .map_err(|_| Gone),
        }
    }

    /// The next thing the app sent; an event stream only hears it leave.
    async fn heard(&mut self) -> Heard {
        match self {
            Outlet::Socket(socket) => match socket.recv().await {
                Some(Ok(Message::Text(text))) => Heard::Text(text.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Heard::Gone,
                Some(Ok(_)) => Heard::Other,
            },
            Outlet::Stream(events) => {
                events.closed().await;
                Heard::Gone
            }
        }
    }

    /// Whether the app answers pings, so that its silence means it is gone.
    fn answers_pings(&self) -> bool {
        matches!(self, Outlet::Socket(_))
    }

    async fn close(&mut self, Closing(code, reason): Closing) {
        match self {
            Outlet::Socket(socket) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                let _ = tokio::time::timeout(SEND_WITHIN, socket.send(Message::Close(Some(frame))))
                    .await;
            }
            Outlet::Stream(_) => {
                let frame = serde_json::json!({"type": "close", "code": code, "reason": reason});
                let _ = self.send(&frame, None).await;
            }
        }
    }
}

/// What an app sends over its socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromApp {
    Ack { ids: Vec<i64> },
    Read { ids: Vec<i64> },
}

/// How the server ends a live inbox: a close code and its reason.
struct Closing(u16, &'static str);

/// Why serving ended: the app left, or the server ends it.
enum Ended {
    Gone,
    Closing(Closing),
}

impl From<Gone> for Ended {
    fn from(Gone: Gone) -> Ended {
        Ended::Gone
    }
}

/// The items a live inbox sent: the highest id (where a catch-up starts), and the latest ids.
struct SentIds {
    last: i64,
    recent: std::collections::BTreeSet<i64>,
}

impl SentIds {
    fn after(after: i64) -> SentIds {
        SentIds {
            last: after,
            recent: Default::default(),
        }
    }

    /// Remember `id`; false when it was sent already.
    fn insert(&mut self, id: i64) -> bool {
        if !self.recent.insert(id) {
            return false;
        }
        if self.recent.len() > SENT_REMEMBERED {
            self.recent.pop_first();
        }
        self.last = self.last.max(id);
        true
    }
}

/// One app's live inbox.
pub struct Live {
    state: AppState,
    claims: InboxClaims,
    outlet: Outlet,
    sent: SentIds,
}

impl Live {
    pub fn new(state: AppState, claims: InboxClaims, outlet: Outlet) -> Live {
        Live {
            state,
            claims,
            outlet,
            sent: SentIds::after(0),
        }
    }

    /// Serve the app from the items after `after` (None: from now on) until it leaves or the
    /// server ends it.
    pub async fn run(mut self, hub: Hub, after: Option<i64>) {
        metrics::gauge!("blast_inbox_connections").increment(1.0);
        if let Err(Ended::Closing(closing)) = self.serve(hub, after).await {
            self.outlet.close(closing).await;
        }
        metrics::gauge!("blast_inbox_connections").decrement(1.0);
    }

    async fn send_item(&mut self, item: &InboxItem) -> Result<(), Gone> {
        if self.sent.insert(item.id) {
            let frame = serde_json::json!({"type": "item", "item": item});
            self.outlet.send(&frame, Some(item.id)).await?;
        }
        Ok(())
    }

    /// Send every item after `after` (oldest first) that was not sent yet.
    async fn catch_up(&mut self, after: i64) -> Result<(), Ended> {
        let (tenant_id, client_id) = (self.claims.tenant_id, self.claims.client_id);
        let mut after = after;
        loop {
            let page = self
                .state
                .store
                .inbox_items_after(tenant_id, client_id, after, CATCH_UP_PAGE)
                .await
                .map_err(|e| unreadable(&e))?;
            for item in &page {
                self.send_item(item).await?;
            }
            match page.last() {
                Some(last) if page.len() == CATCH_UP_PAGE as usize => after = last.id,
                _ => return Ok(()),
            }
        }
    }

    async fn serve(&mut self, hub: Hub, after: Option<i64>) -> Result<(), Ended> {
        let (tenant_id, client_id) = (self.claims.tenant_id, self.claims.client_id);
        // In the hub before the catch-up reads the store: an item stored in between comes
        // both ways, and is sent once.
        let mut live = hub.subscribe(tenant_id, client_id);
        let mut gaps = hub.gaps();
        // Until the hub listens (its Redis subscription is made), an item could slip between
        // it and the catch-up. Without Redis it does not wait long: the app catches up later.
        let _ = tokio::time::timeout(HUB_LISTENING_WAIT, gaps.wait_for(|n| *n > 0)).await;
        gaps.mark_unchanged();
        let store = self.state.store.clone();
        match after {
            Some(after) => {
                self.sent = SentIds::after(after);
                self.catch_up(after).await?;
            }
            // The app wants what comes from now on: that comes live, the hub listening.
            None => {
                let newest = store
                    .inbox_newest_id(tenant_id, client_id)
                    .await
                    .map_err(|e| unreadable(&e))?;
                self.sent = SentIds::after(newest);
            }
        }
        let unread = store
            .inbox_unread(tenant_id, client_id)
            .await
            .map_err(|e| unreadable(&e))?;
        let ready = serde_json::json!({"type": "ready", "unread": unread});
        self.outlet.send(&ready, None).await?;

        let every = Duration::from_secs(self.state.settings.inapp.heartbeat_secs.max(1));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut heard_at = tokio::time::Instant::now();
        let left = u64::try_from(self.claims.expires_at - super::now_secs()).unwrap_or(0);
        let expiry = tokio::time::sleep(Duration::from_secs(left));
        tokio::pin!(expiry);
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                // In this order: a gap is caught up before the items that came after it.
                biased;
                () = shutdown.cancelled() => return closing(1001, "the server is stopping"),
                () = &mut expiry => return closing(4001, "the inbox token expired"),
                // The hub may have missed items (Redis came back): read them from the inbox.
                // Before the items after the gap (`biased`): those must not move the last id
                // sent past what was missed.
                Ok(()) = gaps.changed() => self.catch_up(self.sent.last).await?,
                item = live.items.recv() => match item {
                    Some(item) => self.send_item(&item).await?,
                    None => {
                        let why = live.let_go().unwrap_or(LetGo::TooSlow);
                        let code = match why {
                            LetGo::Superseded => 4009,
                            LetGo::TooSlow => 4008,
                        };
                        return closing(code, why.reason());
                    }
                },
                _ = heartbeat.tick() => {
                    if self.outlet.answers_pings() && heard_at.elapsed() > every * 2 {
                        return closing(1001, "no answer to the heartbeat");
                    }
                    self.outlet.ping().await?;
                }
                heard = self.outlet.heard() => {
                    heard_at = tokio::time::Instant::now();
                    match heard {
                        Heard::Text(text) => self.answer(&text).await?,
                        Heard::Other => {}
                        Heard::Gone => return Err(Ended::Gone),
                    }
                }
            }
        }
    }

    /// Act on one frame of the app; a frame it cannot act on is answered with an error frame.
    async fn answer(&mut self, text: &str) -> Result<(), Gone> {
        let problem = match serde_json::from_str::<FromApp>(text) {
            Err(e) => Some(format!(
                "not a frame blast takes ({{\"type\":\"ack\"|\"read\",\"ids\":[…]}}): {e}"
            )),
            Ok(frame) => {
                let (ids, mark) = match &frame {
                    FromApp::Ack { ids } => (ids, InboxMark::Delivered),
                    FromApp::Read { ids } => (ids, InboxMark::Read),
                };
                // Ids of another client's items change nothing.
                let marked = self
                    .state
                    .store
                    .mark_inbox(
                        self.claims.tenant_id,
                        self.claims.client_id,
                        Some(&ids[..]),
                        mark,
                    )
                    .await;
                match marked {
                    // As over REST: an id of another client (or archived) changes nothing.
                    Ok(_) | Err(StoreError::NotFound(_)) => None,
                    Err(StoreError::Invalid(e)) => Some(e.to_string()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot mark inbox items");
                        Some("cannot mark the items now; send the frame again".into())
                    }
                }
            }
        };
        match problem {
            Some(message) => {
                let frame = serde_json::json!({"type": "error", "message": message});
                self.outlet.send(&frame, None).await
            }
            None => Ok(()),
        }
    }
}

fn closing(code: u16, reason: &'static str) -> Result<(), Ended> {
    Err(Ended::Closing(Closing(code, reason)))
}

fn unreadable(e: &StoreError) -> Ended {
    tracing::warn!(error = %e, "cannot read an inbox for a live connection");
    Ended::Closing(Closing(1011, "cannot read the inbox; connect again"))
}
