//! Halt notices: the moment a mailing is paused or cancelled, every worker rereads which
//! mailings are halted, so its running batches stop within milliseconds instead of at the next
//! periodic check (`worker.cancel_check_interval_ms`, which stays as the fallback).
//!
//! Within one process (`blast up`, embedded) the store's own signal carries the notice; between
//! processes, Redis pub/sub on `{redis.key_prefix}:halts`. A notice only says "look again": the
//! halted set is always read from the database, so a lost notice costs the periodic wait and a
//! repeated one a query, never a wrong send.

use crate::queue::Queue;
use crate::store::{Result, Store};
use std::future::Future;
use tokio_util::sync::CancellationToken;

fn channel(prefix: &str) -> String {
    format!("{prefix}:halts")
}

/// Tell the workers of other processes that a mailing was paused or cancelled (the store has
/// told this process already). Best effort: when Redis cannot take it, the workers' periodic
/// check still stops the mailing.
pub async fn announce(queue: &Queue, mailing_id: crate::ids::MailingId) {
    let Queue::Redis(redis) = queue else {
        return;
    };
    let published: std::result::Result<i64, _> = redis::cmd("PUBLISH")
        .arg(channel(&redis.prefix))
        .arg(mailing_id.0)
        .query_async(&mut redis.conn.clone())
        .await;
    if let Err(e) = published {
        tracing::warn!(error = %e, mailing = mailing_id.0, "cannot announce a halted mailing; workers see it at their next check");
    }
}

/// Call `look_again` each time a mailing may have been halted: in this process or, on Redis,
/// in any other. Runs until `stop`.
pub async fn listen<F, Fut>(store: Store, queue: Queue, stop: CancellationToken, look_again: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut here = store.halts_changed();
    // One slot: notices that arrive while the set is being read fold into one more read.
    let (tx, mut elsewhere) = tokio::sync::mpsc::channel::<()>(1);
    let subscriber = match &queue {
        Queue::Redis(redis) => Some(tokio::spawn(crate::queue::follow(
            redis.client.clone(),
            channel(&redis.prefix),
            stop.clone(),
            // Every message, and every subscription made after a gap (what was announced
            // meanwhile was missed), is one more look.
            move |heard| {
                if !matches!(heard, crate::queue::Heard::Renewed) {
                    let _ = tx.try_send(());
                }
            },
        ))),
        Queue::Sqlite(_) => None,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = here.changed() => if changed.is_err() { break },
            Some(()) = elsewhere.recv() => {}
        }
        if let Err(e) = look_again().await {
            tracing::warn!(error = %e, "cannot read the halted mailings; the periodic check retries");
        }
    }
    if let Some(subscriber) = subscriber {
        subscriber.abort();
    }
}
