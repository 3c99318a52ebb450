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
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one subscription is kept before it is made again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(60);

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
        Queue::Redis(redis) => Some(tokio::spawn(subscribe(
            redis.client.clone(),
            channel(&redis.prefix),
            tx,
            stop.clone(),
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

/// Keep a subscription to `channel`, connecting again (with backoff) whenever it is lost, and
/// pass each message on. Every new subscription also counts as a notice: what was announced
/// while it was down has been missed.
async fn subscribe(
    client: redis::Client,
    channel: String,
    notices: tokio::sync::mpsc::Sender<()>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(mut pubsub)) => {
                let since = tokio::time::Instant::now();
                let _ = notices.try_send(());
                let mut messages = pubsub.on_message();
                // Subscribed afresh now and then: a connection that died without a word (a
                // dropped NAT entry) costs at most that long, not every notice until restart.
                let renew = tokio::time::sleep(RESUBSCRIBE_EVERY);
                tokio::pin!(renew);
                let ended = loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = &mut renew => break false,
                        message = messages.next() => match message {
                            Some(_) => { let _ = notices.try_send(()); }
                            None => break true,
                        },
                    }
                };
                // A subscription that lived a while was a good one; one that ended at once
                // keeps backing off.
                if since.elapsed() > Duration::from_secs(5) {
                    failures = 0;
                } else {
                    failures += 1;
                }
                if ended {
                    tracing::warn!("the halt-notice subscription ended; subscribing again");
                } else {
                    continue;
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot subscribe to halt notices; retrying");
            }
            Err(_) => {
                failures += 1;
                tracing::warn!("subscribing to halt notices timed out; retrying");
            }
        }
        let pause = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
