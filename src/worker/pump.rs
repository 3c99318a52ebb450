//! The pump: keeps each lane's queue topped up to its watermark with jobs for due rows.
//!
//! The queue never holds more than `queue_watermark` jobs per lane, so it stays small however
//! large a mailing is; the backlog waits as rows in the database.

use crate::jobs::{DeliverBatch, Job, Lane};
use crate::now_ms;
use crate::queue;
use crate::store::{Result, Store};

/// One pass: for every lane, enqueue batches round-robin across that lane's running mailings
/// until the lane is at its watermark or nothing is due. Returns the number of jobs pushed.
pub async fn pump_once(store: &Store, batch_size: u32, watermark: u32) -> Result<u32> {
    let now = now_ms();
    let running = store.running_mailings().await?;
    let mut pushed = 0;
    for lane in Lane::ALL {
        let mut mailings: Vec<i64> = running
            .iter()
            .filter(|(_, l, end_at)| *l == lane && *end_at > now)
            .map(|(id, _, _)| *id)
            .collect();
        let depth = queue::depth(store.pool(), lane).await?;
        metrics::gauge!("blast_queue_depth", "lane" => lane.as_str()).set(f64::from(depth));
        let mut room = watermark.saturating_sub(depth);
        while room > 0 && !mailings.is_empty() {
            let mut exhausted = Vec::new();
            for &mailing_id in &mailings {
                if room == 0 {
                    break;
                }
                if enqueue_batch(store, lane, mailing_id, batch_size, now).await? {
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

/// Claim one batch of due rows and enqueue its job, atomically. False when nothing was due.
async fn enqueue_batch(
    store: &Store,
    lane: Lane,
    mailing_id: i64,
    batch_size: u32,
    now: i64,
) -> Result<bool> {
    let mut tx = store.write_tx().await?;
    let Some(claimed) = Store::claim_due(&mut tx, mailing_id, batch_size, now).await? else {
        return Ok(false);
    };
    let job = Job::DeliverBatchV1(DeliverBatch {
        mailing_id,
        lane,
        claim: claimed.claim,
        message_ids: claimed.message_ids,
    });
    queue::push_in_tx(&mut tx, lane, &job).await?;
    tx.commit().await?;
    Ok(true)
}
