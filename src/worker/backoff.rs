//! The retry schedule: exponential with jitter, capped, from `backon`.

use crate::settings::RetrySettings;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// When to try again after a transient failure.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    builder: ExponentialBuilder,
    max_attempts: u32,
}

impl RetrySchedule {
    pub fn new(settings: &RetrySettings) -> RetrySchedule {
        RetrySchedule {
            builder: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(settings.base_delay_ms))
                .with_max_delay(Duration::from_millis(settings.max_delay_ms))
                .with_factor(2.0)
                .with_jitter()
                .with_max_times(settings.max_attempts as usize),
            max_attempts: settings.max_attempts,
        }
    }

    /// The delay after the failure of attempt number `attempts_made` (1 = the first attempt),
    /// or `None` when no attempt is left. A delay the provider asked for is honoured when it is
    /// longer than ours.
    pub fn delay(&self, attempts_made: u32, provider_asked: Option<Duration>) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let ours = self
            .builder
            .build()
            .nth(attempts_made.saturating_sub(1) as usize)?;
        Some(provider_asked.map_or(ours, |asked| asked.max(ours)))
    }

    /// How long a message waits while its channel is unavailable (our credentials refused,
    /// the server unreachable): no attempt is counted, so it does not follow the growing
    /// schedule; a fixed pause, the longest delay but at most a minute, keeps a million waiting
    /// messages from hammering a server that is down.
    pub fn unavailable_delay(&self, provider_asked: Option<Duration>) -> Duration {
        let cap = self
            .builder
            .build()
            .last()
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        provider_asked.map_or(cap, |asked| asked.max(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(&RetrySettings {
            base_delay_ms: 100,
            max_delay_ms: 1000,
            max_attempts: 6,
        })
    }

    #[test]
    fn grows_exponentially_within_jitter_and_is_capped() {
        let s = schedule();
        let first = s.delay(1, None).expect("retry");
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        let third = s.delay(3, None).expect("retry");
        assert!(
            third >= Duration::from_millis(400) && third <= Duration::from_millis(800),
            "{third:?}"
        );
        let fifth = s.delay(5, None).expect("retry");
        assert!(fifth <= Duration::from_millis(2000), "{fifth:?}");
    }

    #[test]
    fn stops_after_the_last_attempt_and_honours_the_provider() {
        let s = schedule();
        assert_eq!(s.delay(6, None), None);
        assert_eq!(
            s.delay(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
    }
}
