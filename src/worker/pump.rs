//! The pump: keeps each lane's queue topped up to its watermark with jobs for due rows.
//!
//! The queue never holds more than `queue_watermark` jobs per lane, so it stays small however
//! large a mailing is; the backlog waits as rows in the database.

use crate::jobs::{DeliverBatch, Job, Lane};
use crate::now_ms;
use crate::queue::Queue;
use crate::store::{Result, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where this process's claims of each mailing's fresh rows continue from (see
/// [`Store::claim_due`]). Only a hint: losing it costs one scan from the start.
#[derive(Debug, Clone, Default)]
pub struct ClaimCursors(Arc<Mutex<HashMap<i64, (i64, i64)>>>);

impl ClaimCursors {
    fn get(&self, mailing_id: i64) -> Option<(i64, i64)> {
        self.0.lock().ok()?.get(&mailing_id).copied()
    }

    fn set(&self, mailing_id: i64, cursor: Option<(i64, i64)>) {
        if let Ok(mut cursors) = self.0.lock() {
            match cursor {
                Some(key) => cursors.insert(mailing_id, key),
                None => cursors.remove(&mailing_id),
            };
        }
    }

    /// Forget the mailings that are no longer running.
    fn retain(&self, running: &[i64]) {
        if let Ok(mut cursors) = self.0.lock() {
            cursors.retain(|id, _| running.contains(id));
        }
    }
}

/// One pass: for every lane, enqueue batches round-robin across that lane's running mailings
/// until the lane is at its watermark or nothing is due. Returns the number of jobs pushed.
pub async fn pump_once(
    store: &Store,
    queue: &Queue,
    cursors: &ClaimCursors,
    batch_size: u32,
    watermark: u32,
) -> Result<u32> {
    let now = now_ms();
    let running = store.running_mailings().await?;
    cursors.retain(&running.iter().map(|(id, _, _)| *id).collect::<Vec<_>>());
    let mut pushed = 0;
    for lane in Lane::ALL {
        let mut mailings: Vec<i64> = running
            .iter()
            .filter(|(_, l, end_at)| *l == lane && *end_at > now)
            .map(|(id, _, _)| *id)
            .collect();
        let depth = queue.depth(lane).await?;
        metrics::gauge!("blast_queue_depth", "lane" => lane.as_str()).set(f64::from(depth));
        let mut room = watermark.saturating_sub(depth);
        while room > 0 && !mailings.is_empty() {
            let mut exhausted = Vec::new();
            for &mailing_id in &mailings {
                if room == 0 {
                    break;
                }
                if enqueue_batch(store, queue, cursors, lane, mailing_id, batch_size, now).await? {
                    room -= 1;
                    pushed += 1;
                } else {
                    exhausted.push(mailing_id);
                }
            }
            mailings.retain(|id| !exhausted.contains(id));
        }
    }
    Ok(pushed)
}

/// Claim one batch of due rows, then enqueue its job. False when nothing was due. The claim
/// commits first: a job never names rows that are not claimed for it. If the push fails the
/// rows are released at once; if this process dies in between, the reconciler takes them back
/// after their lease.
async fn enqueue_batch(
    store: &Store,
    queue: &Queue,
    cursors: &ClaimCursors,
    lane: Lane,
    mailing_id: i64,
    batch_size: u32,
    now: i64,
) -> Result<bool> {
    let mut cursor = cursors.get(mailing_id);
    let claimed = store
        .claim_due(mailing_id, batch_size, now, &mut cursor)
        .await?;
    cursors.set(mailing_id, cursor);
    let Some(claimed) = claimed else {
        return Ok(false);
    };
    let claim = claimed.claim;
    let job = Job::DeliverBatchV1(DeliverBatch {
        mailing_id,
        lane,
        claim: claimed.claim,
        // The job carries the ids as plain numbers (blast-jobs knows no blast types).
        message_ids: claimed.message_ids.iter().map(|id| id.0).collect(),
    });
    if let Err(e) = queue.push(lane, &job).await {
        store.release_claim(claim).await?;
        return Err(e);
    }
    Ok(true)
}
