//! `[worker]` and `[retry]`: how a worker process claims, sends, flushes and recovers, and
//! how far apart its retries are.

use super::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Message rows per queue job.
    pub batch_size: u32,
    /// At most this many jobs wait in each lane's queue; the pump tops it up to this.
    pub queue_watermark: u32,
    /// Jobs one worker process runs at once per lane.
    pub jobs_in_flight: u32,
    /// How often the pump looks for due rows, in milliseconds.
    pub pump_interval_ms: u64,
    /// How often the scheduler starts and finishes mailings, in milliseconds.
    pub schedule_interval_ms: u64,
    /// How often the reconciler looks for lost work, in milliseconds.
    pub reconcile_interval_ms: u64,
    /// A row queued longer than this without being picked up is re-queued, in seconds.
    pub queued_lease_secs: u64,
    /// A row left `sending` longer than this (its worker died) is recovered, in seconds.
    pub sending_lease_secs: u64,
    /// How often the worker rereads the paused and cancelled mailings, in milliseconds: the
    /// fallback for a lost notice (notices stop running batches at once, see `halts`).
    pub cancel_check_interval_ms: u64,
    /// A running batch writes its outcomes at least this often, in milliseconds: the longest
    /// an acknowledged send waits to be recorded (what a crash can leave undecided).
    pub flush_interval_ms: u64,
    /// Finished queue jobs are deleted after this many seconds.
    pub job_retention_secs: u64,
    /// How often a process tells the others it is alive, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// A process silent this long is taken for dead, in seconds.
    pub instance_timeout_secs: u64,
    /// Where `blast worker` serves /metrics (Prometheus), e.g. `0.0.0.0:9091`; empty: nowhere.
    /// (`blast up` and `blast serve` serve it with the API.)
    pub metrics_listen: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 200,
            queue_watermark: 8,
            jobs_in_flight: 4,
            pump_interval_ms: 100,
            schedule_interval_ms: 500,
            reconcile_interval_ms: 2000,
            queued_lease_secs: 120,
            sending_lease_secs: 60,
            cancel_check_interval_ms: 250,
            flush_interval_ms: 250,
            job_retention_secs: 3600,
            heartbeat_interval_ms: 1000,
            instance_timeout_secs: 10,
            metrics_listen: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// First retry delay, in milliseconds; each next one doubles, with jitter.
    pub base_delay_ms: u64,
    /// The longest delay between two attempts, in milliseconds.
    pub max_delay_ms: u64,
    /// Attempts before a transient failure becomes permanent.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            base_delay_ms: 1000,
            max_delay_ms: 600_000,
            max_attempts: 10,
        }
    }
}

impl WorkerSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.batch_size == 0 || self.queue_watermark == 0 || self.jobs_in_flight == 0 {
            return Err(SettingsError::Rule(
                "worker.batch_size, worker.queue_watermark and worker.jobs_in_flight must be at least 1".into(),
            ));
        }
        if self.queued_lease_secs == 0 || self.sending_lease_secs == 0 {
            return Err(SettingsError::Rule(
                "worker.queued_lease_secs and worker.sending_lease_secs must be at least 1".into(),
            ));
        }
        if self.instance_timeout_secs.saturating_mul(1000)
            <= self.heartbeat_interval_ms.saturating_mul(2)
        {
            return Err(SettingsError::Rule(
                "worker.instance_timeout_secs must exceed two heartbeat intervals".into(),
            ));
        }
        Ok(())
    }
}

impl RetrySettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.base_delay_ms > self.max_delay_ms {
            return Err(SettingsError::Rule(
                "retry.base_delay_ms must not exceed retry.max_delay_ms".into(),
            ));
        }
        Ok(())
    }
}
