//! What the daily statistics report reads (every tenant's mailings over a time range), and the
//! `cron_runs` table that makes a cluster-wide job run once per day, however many processes tick.

use super::{Result, Store};
use crate::domain::{ChannelKind, MailingState, MessageState};
use crate::ids::TenantId;
use crate::now_ms;
use sqlx::Row;

/// One mailing's messages whose state changed inside the report's range, by state.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportCounts {
    pub mailing_id: i64,
    pub tenant: String,
    pub channel: ChannelKind,
    pub mailing_state: MailingState,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub state: MessageState,
    pub count: i64,
}

/// How often one error text was the last error of a mailing's messages inside the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    pub mailing_id: i64,
    pub error: String,
    pub count: i64,
}

/// How many of a channel's messages reached one outcome in one hour of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyOutcome {
    pub channel: ChannelKind,
    /// Hours since the start of the range.
    pub hour: i64,
    /// sent, failed_permanent or expired
    pub state: MessageState,
    pub count: i64,
}

/// Whether this process may run a cluster-wide job for one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronClaim {
    /// Yours: run it, then call [`Store::finish_cron_run`].
    Claimed { attempts: i64 },
    /// Done already, or another process is running it now.
    Taken,
}

impl Store {
    /// Per mailing and state, the messages whose state last changed in `[from, to)`.
    pub async fn report_counts(
        &self,
        from: i64,
        to: i64,
        tenant: Option<TenantId>,
    ) -> Result<Vec<ReportCounts>> {
        let rows = sqlx::query(
            "SELECT m.id, u.name, m.channel, m.state, m.started_at, m.finished_at, s.state, COUNT(*)
             FROM messages s JOIN mailings m ON m.id = s.mailing_id JOIN users u ON u.id = m.tenant_id
             WHERE s.updated_at >= $1 AND s.updated_at < $2 AND ($3 = 0 OR m.tenant_id = $3)
             GROUP BY m.id, u.name, m.channel, m.state, m.started_at, m.finished_at, s.state
             ORDER BY m.id, s.state",
        )
        .bind(from)
        .bind(to)
        .bind(tenant.map_or(0, |t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportCounts {
                    mailing_id: r.get(0),
                    tenant: r.get(1),
                    channel: r.get::<String, _>(2).parse()?,
                    mailing_state: r.get::<String, _>(3).parse()?,
                    started_at: r.get(4),
                    finished_at: r.get(5),
                    state: r.get::<String, _>(6).parse()?,
                    count: r.get(7),
                })
            })
            .collect()
    }

    /// The most frequent last errors per mailing among messages that changed in `[from, to)`
    /// (of `tenant`'s mailings when given), at most `per_mailing` each, most frequent first.
    pub async fn report_errors(
        &self,
        from: i64,
        to: i64,
        per_mailing: usize,
        tenant: Option<TenantId>,
    ) -> Result<Vec<ReportError>> {
        let rows = sqlx::query(
            "SELECT s.mailing_id, s.last_error, COUNT(*) AS n
             FROM messages s JOIN mailings m ON m.id = s.mailing_id
             WHERE s.updated_at >= $1 AND s.updated_at < $2 AND s.last_error IS NOT NULL
               AND s.state IN ('failed_permanent', 'expired', 'unknown')
               AND ($3 = 0 OR m.tenant_id = $3)
             GROUP BY s.mailing_id, s.last_error ORDER BY s.mailing_id, n DESC, s.last_error",
        )
        .bind(from)
        .bind(to)
        .bind(tenant.map_or(0, |t| t.0))
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<ReportError> = Vec::new();
        let mut taken = 0;
        for r in rows {
            let mailing_id: i64 = r.get(0);
            if out.last().is_none_or(|e| e.mailing_id != mailing_id) {
                taken = 0;
            }
            if taken < per_mailing {
                taken += 1;
                out.push(ReportError {
                    mailing_id,
                    error: r.get(1),
                    count: r.get(2),
                });
            }
        }
        Ok(out)
    }

    /// `tenant_id`'s messages sent since `since`, per minute (the minute's start, Unix ms),
    /// oldest first; minutes without a send are left out.
    pub async fn sends_per_minute(
        &self,
        tenant_id: TenantId,
        since: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT s.updated_at / 60000 AS minute, COUNT(*) FROM messages s
             JOIN mailings m ON m.id = s.mailing_id
             WHERE s.state = 'sent' AND s.updated_at >= $2 AND m.tenant_id = $1
             GROUP BY s.updated_at / 60000 ORDER BY minute",
        )
        .bind(tenant_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>(0) * 60_000, r.get(1)))
            .collect())
    }

    /// The most frequent last errors of `tenant_id`'s messages that failed for good, expired or
    /// may have been delivered since `since`: at most `limit`, most frequent first.
    pub async fn top_errors(
        &self,
        tenant_id: TenantId,
        (since, until): (i64, i64),
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT s.last_error, COUNT(*) AS n FROM messages s
             JOIN mailings m ON m.id = s.mailing_id
             WHERE s.state IN ('failed_permanent', 'expired', 'unknown') AND s.updated_at >= $2
               AND s.updated_at < $4 AND s.last_error IS NOT NULL AND m.tenant_id = $1
             GROUP BY s.last_error ORDER BY n DESC, s.last_error LIMIT $3",
        )
        .bind(tenant_id)
        .bind(since)
        .bind(i64::from(limit))
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// `tenant_id`'s messages sent, failed for good and expired in `[from, to)`, per channel and
    /// hour of the range (0 is its first hour); hours without any are left out.
    pub async fn outcomes_per_hour(
        &self,
        tenant_id: TenantId,
        from: i64,
        to: i64,
    ) -> Result<Vec<HourlyOutcome>> {
        let rows = sqlx::query(
            "SELECT m.channel, (s.updated_at - $2) / 3600000 AS hour, s.state, COUNT(*)
             FROM messages s JOIN mailings m ON m.id = s.mailing_id
             WHERE m.tenant_id = $1 AND s.updated_at >= $2 AND s.updated_at < $3
               AND s.state IN ('sent', 'failed_permanent', 'expired')
             GROUP BY 1, 2, 3 ORDER BY 1, 2",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HourlyOutcome {
                    channel: r.get::<String, _>(0).parse()?,
                    hour: r.get(1),
                    state: r.get::<String, _>(2).parse()?,
                    count: r.get(3),
                })
            })
            .collect()
    }

    /// Claim `job` for `day` for `instance`: free when never run, failed before, or running
    /// longer than `lease_ms` (its process died). One statement, so two processes that tick
    /// together cannot both win.
    pub async fn claim_cron_run(
        &self,
        job: &str,
        day: &str,
        instance: &str,
        lease_ms: i64,
    ) -> Result<CronClaim> {
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO cron_runs (job, day, state, instance, attempts, updated_at)
             VALUES ($1, $2, 'running', $3, 1, $4)
             ON CONFLICT (job, day) DO UPDATE
               SET state = 'running', instance = $3, attempts = cron_runs.attempts + 1, updated_at = $4
             WHERE cron_runs.state = 'failed'
                OR (cron_runs.state = 'running' AND cron_runs.updated_at <= $5)
             RETURNING attempts",
        )
        .bind(job)
        .bind(day)
        .bind(instance)
        .bind(now)
        .bind(now - lease_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => CronClaim::Claimed { attempts: r.get(0) },
            None => CronClaim::Taken,
        })
    }

    /// Record how a claimed run ended: `error` None means done, otherwise failed (and free
    /// to be claimed again on a later tick).
    pub async fn finish_cron_run(
        &self,
        job: &str,
        day: &str,
        instance: &str,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE cron_runs SET state = $1, last_error = $2, updated_at = $3
             WHERE job = $4 AND day = $5 AND instance = $6 AND state = 'running'",
        )
        .bind(if error.is_some() { "failed" } else { "done" })
        .bind(error)
        .bind(now_ms())
        .bind(job)
        .bind(day)
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The days of `job` since `since_day` that have a run, with its state, oldest first.
    pub async fn cron_days(&self, job: &str, since_day: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query(
            "SELECT day, state FROM cron_runs WHERE job = $1 AND day >= $2 ORDER BY day",
        )
        .bind(job)
        .bind(since_day)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }

    /// The state of `job` on `day` ("running", "done", "failed"), if it ever ran.
    pub async fn cron_run_state(&self, job: &str, day: &str) -> Result<Option<(String, i64)>> {
        Ok(
            sqlx::query("SELECT state, attempts FROM cron_runs WHERE job = $1 AND day = $2")
                .bind(job)
                .bind(day)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| (r.get(0), r.get(1))),
        )
    }
}
