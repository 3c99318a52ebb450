//! The in-app inbox's live side: the worker's [`Poster`] stores an item and announces it; each
//! API process's [`Hub`] hands it to the sockets its client holds there.
//!
//! Within one process (`blast up`, embedded) the store's own signal carries the item; between
//! processes, Redis pub/sub on `{redis.key_prefix}:inbox`. The announcement is only the fast
//! path: the item is stored first, and an app that missed it (no socket open, a socket dropped
//! as too slow, Redis down) catches up from the inbox when it connects.

use crate::channels::DeliveryError;
use crate::channels::inapp::{Inbox, NewItem};
use crate::ids::{ClientId, TenantId};
use crate::queue::{Heard, Queue};
use crate::store::{InboxItem, InboxNotice, Store, StoreError};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn channel(prefix: &str) -> String {
    format!("{prefix}:inbox")
}

/// What the worker's `inapp` channel puts items into: the store, then the sockets of every
/// API process.
#[derive(Debug, Clone)]
pub struct Poster {
    store: Store,
    queue: Queue,
}

impl Poster {
    pub fn new(store: Store, queue: Queue) -> Poster {
        Poster { store, queue }
    }

    /// Tell the API processes about `notice` over Redis (in one process, the store told its
    /// listeners already). Best effort: an app that missed it catches up from the inbox.
    async fn announce(&self, notice: &InboxNotice) {
        let Queue::Redis(redis) = &self.queue else {
            return;
        };
        let Ok(payload) = serde_json::to_vec(notice) else {
            return;
        };
        let published: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(channel(&redis.prefix))
            .arg(payload)
            .query_async(&mut redis.conn.clone())
            .await;
        if let Err(e) = published {
            tracing::warn!(error = %e, item = notice.item.id, "cannot announce an inbox item; its app sees it when it reconnects");
        }
    }
}

impl Inbox for Poster {
    fn put<'a>(&'a self, item: NewItem<'a>) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let stored = self.store.put_inbox_item(item).await.map_err(|e| match e {
                StoreError::NotFound(_) => DeliveryError::permanent("the client was deleted"),
                e => DeliveryError::transient(format!("cannot store the item: {e}")),
            })?;
            if let Some(notice) = stored {
                self.announce(&notice).await;
            }
            Ok(())
        })
    }
}

/// Why the hub let go of a socket: told to the app in the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// It fell `send_buffer` items behind.
    TooSlow,
    /// The client opened more than `max_sockets_per_client`; this was the oldest.
    Superseded,
}

impl LetGo {
    pub fn reason(self) -> &'static str {
        match self {
            LetGo::TooSlow => "too slow: reconnect and catch up",
            LetGo::Superseded => "replaced by a newer connection of this client",
        }
    }
}

type Key = (TenantId, ClientId);

#[derive(Debug)]
struct Socket {
    id: u64,
    items: mpsc::Sender<InboxItem>,
    let_go: Arc<Mutex<Option<LetGo>>>,
}

impl Socket {
    fn drop_for(self, why: LetGo) {
        if let Ok(mut slot) = self.let_go.lock() {
            *slot = Some(why);
        }
    }
}

#[derive(Debug)]
struct HubInner {
    sockets: Mutex<HashMap<Key, Vec<Socket>>>,
    /// The times the hub may have missed items: each Redis subscription made after a time
    /// without one, each time it fell behind this process's store. Sockets catch up from the
    /// inbox when it moves.
    gaps: tokio::sync::watch::Sender<u64>,
    next_id: AtomicU64,
    per_client: usize,
    buffer: usize,
}

/// The sockets one API process holds, by client.
#[derive(Debug, Clone)]
pub struct Hub(Arc<HubInner>);

/// One socket's place in the hub: the items for it, in order. Leaves the hub when dropped.
#[derive(Debug)]
pub struct Subscription {
    hub: Hub,
    key: Key,
    id: u64,
    pub items: mpsc::Receiver<InboxItem>,
    let_go: Arc<Mutex<Option<LetGo>>>,
}

impl Subscription {
    /// Why the hub let go of it, once its items ended.
    pub fn let_go(&self) -> Option<LetGo> {
        self.let_go.lock().ok().and_then(|slot| *slot)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut sockets = self.hub.sockets();
        if let Some(list) = sockets.get_mut(&self.key) {
            list.retain(|s| s.id != self.id);
            if list.is_empty() {
                sockets.remove(&self.key);
            }
        }
    }
}

impl Hub {
    /// A hub holding at most `per_client` sockets per client, each `buffer` items behind at
    /// most, fed from this process's store (SQLite) or Redis until `stop`.
    pub fn start(
        store: &Store,
        queue: &Queue,
        per_client: usize,
        buffer: usize,
        stop: CancellationToken,
    ) -> Hub {
        let hub = Hub::new(per_client, buffer);
        match queue {
            Queue::Redis(redis) => {
                let hub = hub.clone();
                tokio::spawn(crate::queue::follow(
                    redis.client.clone(),
                    channel(&redis.prefix),
                    stop,
                    move |heard| match heard {
                        Heard::Message(payload) => {
                            if let Ok(notice) = serde_json::from_slice(&payload) {
                                hub.dispatch(notice);
                            }
                        }
                        // Renewed without a gap: nothing was missed.
                        Heard::Renewed => {}
                        Heard::Resumed => hub.gap(),
                    },
                ));
            }
            Queue::Sqlite(_) => {
                let mut stored = store.inbox_items_stored();
                // Listening from now on: nothing was missed before.
                hub.gap();
                let hub = hub.clone();
                tokio::spawn(async move {
                    loop {
                        let notice = tokio::select! {
                            () = stop.cancelled() => break,
                            notice = stored.recv() => notice,
                        };
                        match notice {
                            Ok(notice) => hub.dispatch(notice),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(
                                    missed = n,
                                    "the inbox hub fell behind; its sockets catch up from the inbox"
                                );
                                hub.gap();
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        }
                    }
                });
            }
        }
        hub
    }

    /// A hub not fed by anything yet.
    fn new(per_client: usize, buffer: usize) -> Hub {
        Hub(Arc::new(HubInner {
            sockets: Mutex::default(),
            next_id: AtomicU64::new(1),
            gaps: tokio::sync::watch::channel(0).0,
            per_client: per_client.max(1),
            buffer: buffer.max(1),
        }))
    }

    /// The hub may have missed items: every socket catches up.
    fn gap(&self) {
        self.0.gaps.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Moves each time the hub may have missed items; 0 until it first listens.
    pub fn gaps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.gaps.subscribe()
    }

    fn sockets(&self) -> MutexGuard<'_, HashMap<Key, Vec<Socket>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.0
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more socket of `tenant_id`'s client `client_id`; the client's oldest
    /// goes when it would hold more than allowed.
    pub fn subscribe(&self, tenant_id: TenantId, client_id: ClientId) -> Subscription {
        let (tx, rx) = mpsc::channel(self.0.buffer);
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let let_go = Arc::new(Mutex::new(None));
        let key = (tenant_id, client_id);
        let mut sockets = self.sockets();
        let list = sockets.entry(key).or_default();
        while list.len() >= self.0.per_client {
            list.remove(0).drop_for(LetGo::Superseded);
        }
        list.push(Socket {
            id,
            items: tx,
            let_go: let_go.clone(),
        });
        drop(sockets);
        Subscription {
            hub: self.clone(),
            key,
            id,
            items: rx,
            let_go,
        }
    }

    /// Hand a stored item to its client's sockets here; one that cannot take it is let go.
    fn dispatch(&self, notice: InboxNotice) {
        let key = (notice.tenant_id, notice.client_id);
        let mut sockets = self.sockets();
        let Some(list) = sockets.get_mut(&key) else {
            return;
        };
        let mut slow = Vec::new();
        for (at, socket) in list.iter().enumerate() {
            if socket.items.try_send(notice.item.clone()).is_err() {
                slow.push(at);
            }
        }
        for at in slow.into_iter().rev() {
            list.remove(at).drop_for(LetGo::TooSlow);
        }
        if list.is_empty() {
            sockets.remove(&key);
        }
    }

    /// Sockets held now.
    pub fn sockets_open(&self) -> usize {
        self.sockets().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(tenant: i64, client: i64, id: i64) -> InboxNotice {
        InboxNotice {
            tenant_id: TenantId(tenant),
            client_id: ClientId(client),
            item: InboxItem {
                id,
                mailing_id: crate::ids::MailingId(1),
                message_id: crate::ids::MessageId(id),
                title: None,
                text: format!("item {id}"),
                created_at: 0,
                state: "sent".into(),
                delivered_at: None,
                read_at: None,
            },
        }
    }

    #[test]
    fn items_go_to_their_clients_sockets_and_a_full_socket_is_let_go() {
        let hub = Hub::new(5, 2);
        let mut anna = hub.subscribe(TenantId(1), ClientId(1));
        let mut same_id_other_tenant = hub.subscribe(TenantId(2), ClientId(1));
        hub.dispatch(notice(1, 1, 10));
        assert_eq!(anna.items.try_recv().map(|i| i.id), Ok(10));
        assert!(same_id_other_tenant.items.try_recv().is_err());
        // Anna's app stops reading: two items fill its buffer, the third lets it go.
        for id in 11..=13 {
            hub.dispatch(notice(1, 1, id));
        }
        assert_eq!(anna.items.try_recv().map(|i| i.id), Ok(11));
        assert_eq!(anna.items.try_recv().map(|i| i.id), Ok(12));
        assert!(matches!(
            anna.items.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(anna.let_go(), Some(LetGo::TooSlow));
        assert_eq!(hub.sockets_open(), 1);
        drop(same_id_other_tenant);
        assert_eq!(hub.sockets_open(), 0);
    }

    #[test]
    fn a_client_past_its_cap_loses_its_oldest_socket() {
        let hub = Hub::new(2, 8);
        let mut oldest = hub.subscribe(TenantId(1), ClientId(1));
        let mut middle = hub.subscribe(TenantId(1), ClientId(1));
        let mut newest = hub.subscribe(TenantId(1), ClientId(1));
        assert_eq!(oldest.let_go(), Some(LetGo::Superseded));
        assert!(matches!(
            oldest.items.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        hub.dispatch(notice(1, 1, 1));
        assert_eq!(middle.items.try_recv().map(|i| i.id), Ok(1));
        assert_eq!(newest.items.try_recv().map(|i| i.id), Ok(1));
        assert_eq!(hub.sockets_open(), 2);
    }
}
