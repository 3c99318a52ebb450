//! The daily statistics email. Every worker process runs an apalis-cron worker on
//! `stats.schedule` in `stats.timezone`; at each tick the process that claims the day in
//! `cron_runs` first builds the previous day's report and mails it, and the others find it
//! taken. A day whose email failed (the SMTP server was down), whose sender died, or whose
//! tick nobody saw (every worker down at that hour) is claimed again at the next tick: each
//! tick goes over the past week from the job's first run there and claims every day not done.

use crate::channels::{DeliveryError, EmailChannel};
use crate::report::{DailyReport, previous_day};
use crate::store::{CronClaim, Store, StoreError};
use apalis::prelude::{BoxDynError, Data, WorkerBuilder};
use apalis_cron::{CronScheduler, Tick};
use futures::FutureExt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The job's name in `cron_runs`.
pub const JOB: &str = "daily-stats";
/// Failed days older than this are not tried again.
const RETRY_DAYS: u64 = 7;
/// A run claimed longer ago than this whose process went silent may be taken over.
const RUN_LEASE_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum DailyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot send the daily statistics email: {0}")]
    Email(#[from] DeliveryError),
}

/// What the daily job needs.
#[derive(Debug)]
pub struct DailyStats {
    pub store: Store,
    pub email: Arc<EmailChannel>,
    pub recipients: Vec<String>,
    pub timezone: String,
    /// This process, as named in `cron_runs`.
    pub instance: String,
}

/// What one day's run came to in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayRun {
    Sent,
    /// Another process has it (done, or running now).
    Taken,
}

impl DailyStats {
    /// Build the report of `day` and mail it, once per cluster: only when the day is claimed.
    pub async fn run_day(&self, day: chrono::NaiveDate) -> Result<DayRun, DailyError> {
        let key = day.format("%Y-%m-%d").to_string();
        let claim = self
            .store
            .claim_cron_run(JOB, &key, &self.instance, RUN_LEASE_MS)
            .await?;
        if claim == CronClaim::Taken {
            return Ok(DayRun::Taken);
        }
        let sent = self.send_report(day).await;
        let error = sent.as_ref().err().map(ToString::to_string);
        self.store
            .finish_cron_run(JOB, &key, &self.instance, error.as_deref())
            .await?;
        sent.map(|()| DayRun::Sent)
    }

    /// Build and mail the report of `day` (no claim: `blast stats --email` by hand).
    pub async fn send_report(&self, day: chrono::NaiveDate) -> Result<(), DailyError> {
        let report = DailyReport::build(&self.store, day, &self.timezone).await?;
        self.email
            .send_report(
                &self.recipients,
                &report.subject(),
                &report.to_text(),
                &report.to_html(),
            )
            .await?;
        Ok(())
    }

    /// One tick at `now_ms`: the previous local day, then every earlier day of the past week
    /// that is not done, from the first day the job ran (so a first deploy does not mail a
    /// week of reports). The claim decides whether a day is free.
    pub async fn on_tick(&self, now_ms: i64) -> Result<(), DailyError> {
        let yesterday = previous_day(now_ms, &self.timezone).map_err(StoreError::Invalid)?;
        let since = yesterday - chrono::Days::new(RETRY_DAYS);
        let known = self
            .store
            .cron_days(JOB, &since.format("%Y-%m-%d").to_string())
            .await?;
        let mut days = vec![yesterday];
        let first = known
            .first()
            .and_then(|(day, _)| crate::report::parse_day(day).ok());
        if let Some(first) = first {
            let done = |day: &chrono::NaiveDate| {
                let key = day.format("%Y-%m-%d").to_string();
                known.iter().any(|(d, state)| *d == key && state == "done")
            };
            days.extend(
                first
                    .iter_days()
                    .take_while(|day| *day < yesterday)
                    .filter(|day| !done(day)),
            );
        }
        let mut first_error = None;
        for day in days {
            match self.run_day(day).await {
                Ok(DayRun::Sent) => tracing::info!(%day, "daily statistics email sent"),
                Ok(DayRun::Taken) => {}
                Err(e) => {
                    tracing::warn!(%day, error = %e, "daily statistics email failed; it is tried again at the next tick");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Why the daily job cannot be scheduled (the configuration check rules both out at load).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("stats.schedule {schedule:?} is not a cron expression: {source}")]
    Cron {
        schedule: String,
        source: cron::error::Error,
    },
    #[error("stats.timezone {0:?} is not a time zone")]
    TimeZone(String),
}

/// Run the daily job on `schedule` (6 fields, seconds first) until `token` fires.
pub async fn run(
    daily: Arc<DailyStats>,
    schedule: &str,
    token: CancellationToken,
) -> Result<(), ScheduleError> {
    let schedule = cron::Schedule::from_str(schedule).map_err(|source| ScheduleError::Cron {
        schedule: schedule.to_owned(),
        source,
    })?;
    let tz: chrono_tz::Tz = daily
        .timezone
        .parse()
        .map_err(|_| ScheduleError::TimeZone(daily.timezone.clone()))?;
    let name = format!("{}-daily-stats", daily.instance);
    for generation in 0u64.. {
        let stop = token
            .clone()
            .cancelled_owned()
            .map(Ok::<(), std::io::Error>);
        let result = WorkerBuilder::new(format!("{name}-{generation}"))
            .backend(CronScheduler::new(schedule.clone()).with_timezone(tz))
            .data(daily.clone())
            .build(tick)
            .run_until(stop)
            .await;
        if token.is_cancelled() {
            return Ok(());
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "the daily statistics scheduler failed; restarting");
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    Ok(())
}

async fn tick(tick: Tick<chrono_tz::Tz>, daily: Data<Arc<DailyStats>>) -> Result<(), BoxDynError> {
    let now_ms = i64::try_from(tick.get_timestamp())
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    // Errors are logged and retried at the next tick; an error returned here would only make
    // apalis log it a second time.
    let _ = daily.on_tick(now_ms).await;
    Ok(())
}
