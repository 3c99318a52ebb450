//! Message rows as the delivery engine moves them: claim for a job, mark sending, write the
//! outcomes of a batch in one transaction, and recover rows whose job or worker was lost.

use super::{Client, Result, Store};
use crate::domain::MessageState;
use crate::ids::{MailingId, MessageId};
use crate::now_ms;
use sqlx::Row;

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Try again at `at` (unix ms).
    Retry {
        at: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    /// The window closed; `last_error` is set when an attempt was made and failed.
    Expired {
        last_error: Option<String>,
    },
    Cancelled,
    /// Not attempted (the worker is shutting down): back to `pending` as it was.
    Release,
    /// Deliberately not sent (a duplicate of a message sent recently).
    Skipped {
        reason: String,
    },
    /// Outside the recipient's local hours: back to `pending` until `at`, no attempt counted.
    Defer {
        at: i64,
    },
    /// The channel was unavailable: `failed_temporary` until `at` with the error recorded,
    /// no attempt counted.
    Wait {
        at: i64,
        error: String,
    },
    /// Cut off mid-send on a channel that cannot resend safely.
    Unknown {
        error: String,
    },
}

impl Outcome {
    /// A short name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
            Outcome::Expired { .. } => "expired",
            Outcome::Cancelled => "cancelled",
            Outcome::Release => "released",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Defer { .. } => "deferred",
            Outcome::Wait { .. } => "waiting",
            Outcome::Unknown { .. } => "unknown",
        }
    }
}

/// A row handed to a channel, with the client it goes to.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub message_id: MessageId,
    /// Attempts made before this one.
    pub attempts: i64,
    pub client: Client,
    /// The client used its unsubscribe link (after this mailing was materialized, perhaps).
    pub email_opted_out: bool,
    /// Telegram told us the client blocked the bot (perhaps during this mailing).
    pub telegram_blocked: bool,
    /// The client was deleted while its row was being materialized (PostgreSQL has no foreign
    /// key on messages, see migrations/postgres/0005): `client` holds only its id.
    pub client_deleted: bool,
}

/// Rows the pump claimed for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedBatch {
    pub claim: i64,
    pub message_ids: Vec<MessageId>,
}

/// How far back the reconciler looks for cancelled mailings with open rows.
const CANCEL_SWEEP_WINDOW_MS: i64 = 24 * 3600 * 1000;

fn ids_json(ids: &[MessageId]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Reserve `key` for message `message_id` until `expires_at`. False when another message
    /// holds it unexpired and may still be sent: this one is a duplicate. The same message may
    /// take it again (a retry), and a holder that will never be sent (failed for good,
    /// expired, cancelled, or deleted) gives it up.
    pub async fn reserve_dedup_key(
        &self,
        key: &str,
        message_id: MessageId,
        expires_at: i64,
    ) -> Result<bool> {
        let now = now_ms();
        let holder: Option<MessageId> = sqlx::query(
            "INSERT INTO dedup_keys (key, message_id, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET message_id = excluded.message_id, expires_at = excluded.expires_at
               WHERE dedup_keys.expires_at <= $4
                  OR dedup_keys.message_id = excluded.message_id
                  OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = dedup_keys.message_id
                                 AND m.state NOT IN ('failed_permanent', 'expired', 'cancelled'))
             RETURNING message_id",
        )
        .bind(key)
        .bind(message_id)
        .bind(expires_at)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.get(0));
        Ok(holder == Some(message_id))
    }

    /// Whether message `id` exists and may still be sent (or was): a deduplication key it
    /// holds is still its own.
    pub async fn message_may_still_send(&self, id: MessageId) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM messages WHERE id = $1
               AND state NOT IN ('failed_permanent', 'expired', 'cancelled')",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Forget expired deduplication keys.
    pub async fn purge_dedup_keys(&self) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM dedup_keys WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Claim up to `limit` due rows of a mailing: they become `queued` under a new claim. The
    /// caller then enqueues their job; if that fails it calls [`Store::release_claim`], and if
    /// it dies first the reconciler takes the rows back after their lease.
    ///
    /// Retries come first. Fresh rows are taken in (next_attempt_at, id) order from `cursor`,
    /// the key of the last fresh row this caller claimed, which the call advances. Without it
    /// every claim would walk from the start of the mailing's range over the index entries of
    /// every row claimed before (they stay until vacuum): on PostgreSQL a claim in a
    /// 1,000,000-row mailing grew to 12 ms and the mailing slowed as it went. When the scan
    /// from the cursor comes up short, the rest is looked for from the start, so a row that
    /// went back to `pending` behind the cursor (recovered by the reconciler) is found then.
    pub async fn claim_due(
        &self,
        mailing_id: i64,
        limit: u32,
        now: i64,
        cursor: &mut Option<(i64, i64)>,
    ) -> Result<Option<ClaimedBatch>> {
        let mut tx = self.write_tx().await?;
        let claim: i64 = rand::random::<i64>().abs();
        let retries = format!(
            "UPDATE messages SET state = 'queued', claim = $1, updated_at = $2
             WHERE id IN (SELECT id FROM messages
                          WHERE mailing_id = $3 AND state = 'failed_temporary'
                            AND next_attempt_at <= $2
                          ORDER BY next_attempt_at LIMIT $4 {skip_locked})
               -- Checked again on the row itself: on PostgreSQL two pumps may pick the same
               -- rows, and the second then skips what the first claimed.
               AND state = 'failed_temporary'
             RETURNING id",
            skip_locked = self.dialect.skip_locked()
        );
        let mut ids: Vec<MessageId> = sqlx::query(sqlx::AssertSqlSafe(retries))
            .bind(claim)
            .bind(now)
            .bind(mailing_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut passes = if cursor.is_some() { 2 } else { 1 };
        while passes > 0 && ids.len() < limit as usize {
            passes -= 1;
            let (after_at, after_id) = cursor.unwrap_or((i64::MIN, i64::MIN));
            let wanted = limit as usize - ids.len();
            let sql = format!(
                "UPDATE messages SET state = 'queued', claim = $1, updated_at = $2
                 WHERE id IN (SELECT id FROM messages
                              WHERE mailing_id = $3 AND state = 'pending'
                                AND next_attempt_at <= $2
                                AND (next_attempt_at, id) > ($5, $6)
                              ORDER BY next_attempt_at, id LIMIT $4 {skip_locked})
                   AND state = 'pending'
                 RETURNING id, next_attempt_at",
                skip_locked = self.dialect.skip_locked()
            );
            let fresh = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(claim)
                .bind(now)
                .bind(mailing_id)
                .bind(wanted as i64)
                .bind(after_at)
                .bind(after_id)
                .fetch_all(&mut *tx)
                .await?;
            let keys: Vec<(i64, i64)> = fresh.iter().map(|r| (r.get(1), r.get(0))).collect();
            *cursor = if keys.len() < wanted {
                None // short: the next pass (or claim) looks from the start
            } else {
                keys.iter().max().copied()
            };
            ids.extend(keys.iter().map(|(_, id)| MessageId(*id)));
        }
        tx.commit().await?;
        if ids.is_empty() {
            return Ok(None);
        }
        ids.sort_unstable();
        Ok(Some(ClaimedBatch {
            claim,
            message_ids: ids,
        }))
    }

    /// Put the rows of a claim whose job could not be enqueued back to `pending`.
    pub async fn release_claim(&self, claim: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET state = 'pending', claim = NULL, updated_at = $1
             WHERE claim = $2 AND state = 'queued'",
        )
        .bind(now_ms())
        .bind(claim)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Load the rows of a job that still carry its claim and start their lease. With
    /// `mark_all_sending` they move from `queued` to `sending` together (channels that can
    /// resend safely); otherwise they stay `queued` and each is marked by
    /// [`Store::mark_sending`] just before its send.
    /// Rows whose claim changed (re-queued since) or that were settled are left out.
    pub async fn begin_sending(
        &self,
        claim: i64,
        ids: &[MessageId],
        mark_all_sending: bool,
    ) -> Result<Vec<DeliveryRow>> {
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        // Either way the lease starts now: the job may have waited in the queue for a while.
        let set_state = if mark_all_sending {
            "state = 'sending', "
        } else {
            ""
        };
        let sql = format!(
            "UPDATE messages SET {set_state}updated_at = $1
             WHERE claim = $2 AND state = 'queued' AND id IN ({})",
            self.dialect.json_ints("$3")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(claim)
            .bind(ids_json(ids))
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT s.id, s.attempts, s.client_id, c.phone,
                    COALESCE(c.operator_code, ''), COALESCE(c.name, ''), c.email,
                    c.telegram_chat_id, COALESCE(c.timezone, 'UTC'), COALESCE(c.attributes, '{{}}'),
                    (SELECT string_agg(t.name, ',') FROM client_tags ct JOIN tags t ON t.id = ct.tag_id
                     WHERE ct.client_id = c.id),
                    c.email_opted_out_at, c.telegram_blocked_at,
                    CASE WHEN c.id IS NULL THEN 1 ELSE 0 END
             FROM messages s LEFT JOIN clients c ON c.id = s.client_id
             WHERE s.claim = $1 AND s.state IN ('queued', 'sending')
               AND s.id IN ({})
             ORDER BY s.id",
            self.dialect.json_ints("$2")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(claim)
            .bind(ids_json(ids))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                let attributes: String = r.get(9);
                let tags: Option<String> = r.get(10);
                DeliveryRow {
                    message_id: r.get(0),
                    attempts: r.get(1),
                    client: Client {
                        id: r.get(2),
                        phone: r.get(3),
                        operator_code: r.get(4),
                        name: r.get(5),
                        email: r.get(6),
                        telegram_chat_id: r.get(7),
                        timezone: r.get(8),
                        tags: tags
                            .map(|t| t.split(',').map(str::to_owned).collect())
                            .unwrap_or_default(),
                        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                    },
                    email_opted_out: r.get::<Option<i64>, _>(11).is_some(),
                    telegram_blocked: r.get::<Option<i64>, _>(12).is_some(),
                    client_deleted: r.get::<i64, _>(13) == 1,
                }
            })
            .collect())
    }

    /// Mark rows `sending` just before their requests go out, in one statement. Returns the
    /// ids marked: a row missing from it no longer carries `claim` (the reconciler took it
    /// back) and must not be sent.
    pub async fn mark_sending(&self, claim: i64, ids: &[MessageId]) -> Result<Vec<MessageId>> {
        let sql = format!(
            "UPDATE messages SET state = 'sending', updated_at = $1
             WHERE claim = $2 AND state = 'queued' AND id IN ({})
             RETURNING id",
            self.dialect.json_ints("$3")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(claim)
            .bind(ids_json(ids))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Write the outcomes collected so far for one batch and, with `renew_lease`, renew the
    /// lease of the rows of the batch still in flight, in one transaction. A row is only touched
    /// while it still carries `claim`, except `Sent`, which is the truth whatever else happened
    /// meanwhile. A retry or a release in a mailing cancelled meanwhile becomes `cancelled`.
    /// Final outcomes are owed to the tenant's webhooks, in the same transaction.
    pub async fn flush_batch(
        &self,
        mailing_id: MailingId,
        claim: i64,
        outcomes: &[(MessageId, Outcome)],
        renew_lease: bool,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        // The common outcome, every row of it in one statement.
        let sent: Vec<MessageId> = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Sent)
            .map(|(id, _)| *id)
            .collect();
        if !sent.is_empty() {
            let sql = format!(
                "UPDATE messages SET state = 'sent', attempts = attempts + 1, sent_at = $1,
                        last_error = NULL, claim = NULL, updated_at = $1
                 WHERE id IN ({}) AND state != 'sent'",
                self.dialect.json_ints("$2")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(ids_json(&sent))
                .execute(&mut *tx)
                .await?;
        }
        for (id, outcome) in outcomes {
            let (state, tried, next_at, error) = match outcome {
                Outcome::Sent => continue,
                Outcome::Retry { at, error } => {
                    (MessageState::FailedTemporary, 1, *at, Some(error))
                }
                Outcome::Failed { error } => (MessageState::FailedPermanent, 1, now, Some(error)),
                Outcome::Unknown { error } => (MessageState::Unknown, 1, now, Some(error)),
                Outcome::Expired { last_error } => (
                    MessageState::Expired,
                    i64::from(last_error.is_some()),
                    now,
                    last_error.as_ref(),
                ),
                Outcome::Cancelled => (MessageState::Cancelled, 0, now, None),
                Outcome::Release => (MessageState::Pending, 0, now, None),
                Outcome::Skipped { reason } => (MessageState::Skipped, 0, now, Some(reason)),
                Outcome::Defer { at } => (MessageState::Pending, 0, *at, None),
                Outcome::Wait { at, error } => (MessageState::FailedTemporary, 0, *at, Some(error)),
            };
            sqlx::query(
                "UPDATE messages SET
                        state = CASE WHEN $1 IN ('failed_temporary', 'pending')
                                       AND (SELECT state FROM mailings WHERE id = messages.mailing_id) = 'cancelled'
                                     THEN 'cancelled' ELSE $1 END,
                        attempts = attempts + $2, next_attempt_at = $3,
                        last_error = COALESCE($4, last_error), claim = NULL, updated_at = $5
                 WHERE id = $6 AND claim = $7 AND state IN ('queued', 'sending')",
            )
            .bind(state.as_str())
            .bind(tried)
            .bind(next_at)
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(claim)
            .execute(&mut *tx)
            .await?;
        }
        let finals: Vec<super::webhooks::MessageEvent> = outcomes
            .iter()
            .filter_map(|(id, outcome)| {
                let (state, error) = match outcome {
                    Outcome::Sent => (MessageState::Sent, None),
                    Outcome::Failed { error } => (MessageState::FailedPermanent, Some(error)),
                    Outcome::Unknown { error } => (MessageState::Unknown, Some(error)),
                    Outcome::Expired { last_error } => (MessageState::Expired, last_error.as_ref()),
                    Outcome::Cancelled => (MessageState::Cancelled, None),
                    Outcome::Skipped { reason } => (MessageState::Skipped, Some(reason)),
                    _ => return None,
                };
                Some(super::webhooks::MessageEvent {
                    message_id: *id,
                    state: state.as_str(),
                    error: error.map(String::as_str),
                })
            })
            .collect();
        super::webhooks::enqueue_message_events(&mut tx, mailing_id, &finals, now).await?;
        if renew_lease {
            sqlx::query(
                "UPDATE messages SET updated_at = $1 WHERE claim = $2 AND state IN ('queued', 'sending')",
            )
            .bind(now)
            .bind(claim)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Recover rows whose job or worker was lost: `queued` rows held longer than `queued_lease`
    /// ms and `sending` rows held longer than `sending_lease` ms go back to `pending` (the SMS
    /// channel is idempotent by message id, so a resend cannot duplicate). `sending` rows of
    /// channels in `unsafe_to_resend` become `unknown` instead. Returns how many rows moved.
    /// Put back every row queued at or before `now`: the queue lost their jobs. A job that
    /// did survive (pushed after the loss) finds its rows no longer queued under its claim
    /// and sends nothing, so this never sends a message twice.
    pub async fn release_queued(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET state = 'pending', claim = NULL, updated_at = $1
             WHERE state = 'queued' AND updated_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn recover_lost_rows(
        &self,
        now: i64,
        queued_lease: i64,
        sending_lease: i64,
        unsafe_to_resend: &[&str],
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let unsafe_json = serde_json::to_string(unsafe_to_resend).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "UPDATE messages SET state = 'unknown', claim = NULL, updated_at = $1,
                    last_error = 'worker lost mid-send; not resent because the channel cannot deduplicate'
             WHERE state = 'sending' AND updated_at <= $1 - $2
               AND mailing_id IN (SELECT id FROM mailings WHERE channel IN ({}))",
            self.dialect.json_texts("$3")
        );
        let unknown = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(sending_lease)
            .bind(&unsafe_json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Rows of a cancelled mailing that nobody holds, or whose holder is gone, are settled
        // as cancelled (after the pass above: a lost send that may have arrived stays
        // `unknown`, not `cancelled`) (a transient failure or a shutdown can leave them open after the cancel).
        let cancelled = sqlx::query(
            "UPDATE messages SET state = 'cancelled', claim = NULL, updated_at = $1
             WHERE mailing_id IN (SELECT id FROM mailings WHERE state = 'cancelled' AND finished_at >= $1 - $4)
               AND (state IN ('pending', 'failed_temporary')
                    OR (state = 'queued' AND updated_at <= $1 - $2)
                    OR (state = 'sending' AND updated_at <= $1 - $3))",
        )
        .bind(now)
        .bind(queued_lease)
        .bind(sending_lease)
        .bind(CANCEL_SWEEP_WINDOW_MS.max(queued_lease).max(sending_lease))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let requeued = sqlx::query(
            "UPDATE messages SET state = 'pending', claim = NULL, updated_at = $1
             WHERE (state = 'queued' AND updated_at <= $1 - $2)
                OR (state = 'sending' AND updated_at <= $1 - $3)",
        )
        .bind(now)
        .bind(queued_lease)
        .bind(sending_lease)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(cancelled + unknown + requeued)
    }
}
