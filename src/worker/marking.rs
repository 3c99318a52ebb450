//! Marking rows `sending` at the last moment, in small groups.
//!
//! On a channel that must never send a message twice (SMS with `sms.resend_unacknowledged =
//! false`, and every channel without an idempotency key), a row is marked `sending` before its
//! request goes out, and a crash turns such rows into `unknown`, never sent again. Marking each
//! row only once it holds its slot and its rate token keeps `unknown` to the requests really in
//! flight (at most the lanes' in-flight slots); marking together the rows that become ready at
//! the same moment (one UPDATE while the next group gathers) keeps that to a few writes.

use crate::ids::MessageId;
use crate::store::Store;
use std::collections::HashSet;
use tokio::sync::{mpsc, oneshot};

/// The most rows one statement marks.
const MAX_GROUP: usize = 256;

/// What became of one row's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// It is `sending`: its request may go out.
    Marked,
    /// It no longer carries the batch's claim (taken back meanwhile): it must not be sent.
    NotOurs,
    /// The store could not be written: not marked, so not to be sent now.
    Failed,
}

/// Marks the rows of one batch (one claim). Cheap to clone; the marking task ends when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct Marker {
    requests: mpsc::Sender<(MessageId, oneshot::Sender<Mark>)>,
    /// Ends the marking task with the last clone: a batch that is dropped (its sends aborted)
    /// marks nothing more.
    _task: std::sync::Arc<tokio_util::task::AbortOnDropHandle<()>>,
}

impl Marker {
    pub fn start(store: Store, claim: i64) -> Marker {
        let (requests, rx) = mpsc::channel(MAX_GROUP);
        let task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(run(store, claim, rx)));
        Marker {
            requests,
            _task: std::sync::Arc::new(task),
        }
    }

    /// Mark `message_id` `sending`, together with whatever other rows are ready now.
    pub async fn mark(&self, message_id: MessageId) -> Mark {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((message_id, reply)).await.is_err() {
            return Mark::Failed;
        }
        answer.await.unwrap_or(Mark::Failed)
    }
}

async fn run(
    store: Store,
    claim: i64,
    mut requests: mpsc::Receiver<(MessageId, oneshot::Sender<Mark>)>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while requests.recv_many(&mut group, MAX_GROUP).await > 0 {
        // A send that gave up waiting (aborted) is not marked: it will not go out.
        group.retain(|(_, reply)| !reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let ids: Vec<MessageId> = group.iter().map(|(id, _)| *id).collect();
        let marked: Option<HashSet<MessageId>> = match store.mark_sending(claim, &ids).await {
            Ok(marked) => Some(marked.into_iter().collect()),
            Err(e) => {
                tracing::warn!(error = %e, rows = ids.len(), "cannot mark rows sending; they go back to pending");
                None
            }
        };
        metrics::histogram!("blast_mark_group_size").record(ids.len() as f64);
        for (id, reply) in group.drain(..) {
            let mark = match &marked {
                Some(marked) if marked.contains(&id) => Mark::Marked,
                Some(_) => Mark::NotOurs,
                None => Mark::Failed,
            };
            // A send that was aborted meanwhile no longer listens; its row, if marked, is
            // settled like any send cut off.
            let _ = reply.send(mark);
        }
    }
}
