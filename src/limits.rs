//! Rate limits, layered and priority-aware: per provider, per tenant, and (for Telegram) per
//! bot, chat and group. Embedded they are counted in this process; with Redis one Lua script
//! checks and takes every layer of a send in one round trip, for all processes together.
//!
//! The algorithm is GCRA (a leaky bucket kept as one "theoretical arrival time" per limit).
//! Priority: a lane may run a limit ahead of the clock by its burst plus a headroom that grows
//! with the lane's priority, so while high-priority work waits, low-priority work finds the
//! bucket too full and the freed capacity goes to the higher lane.

use crate::jobs::Lane;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One layer: at most `count` sends per `period`, plus `burst` sends ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// What is limited, e.g. `sms` or `tenant:7` or `tg:chat:42`.
    pub key: String,
    /// Time between two sends at the steady rate.
    pub interval: Duration,
    /// How far ahead of the steady rate sends may run.
    pub burst: Duration,
    /// The priority headroom of this limit, instead of the limiter's: zero for a provider
    /// that answers any burst past its rate with 429s.
    pub headroom: Option<Duration>,
    /// How many sends one take stands for (an album of N items is N messages to Telegram).
    pub cost: u32,
}

impl Limit {
    /// `count` sends per `period`, with `burst` of slack.
    pub fn new(key: impl Into<String>, count: u32, period: Duration, burst: Duration) -> Limit {
        Limit {
            key: key.into(),
            interval: period / count.max(1),
            burst,
            headroom: None,
            cost: 1,
        }
    }

    /// One take of this limit stands for `cost` sends: it needs room for all of them (but
    /// always passes an idle limit, since it cannot be split) and charges them all.
    pub fn with_cost(mut self, cost: u32) -> Limit {
        self.cost = cost.max(1);
        self
    }

    /// What one take adds to the limit's clock.
    fn charge(&self) -> Duration {
        self.interval * self.cost
    }

    pub fn with_headroom(mut self, headroom: Duration) -> Limit {
        self.headroom = Some(headroom);
        self
    }

    /// How far ahead of the clock `lane` may run this limit, less the room the rest of a
    /// costly take needs.
    fn tolerance(&self, lane: Lane, default_headroom: Duration) -> Duration {
        (self.burst + lane_headroom(lane, self.headroom.unwrap_or(default_headroom)))
            .saturating_sub(self.interval * (self.cost - 1))
    }

    pub fn per_second(key: impl Into<String>, count: u32, burst: Duration) -> Limit {
        Limit::new(key, count, Duration::from_secs(1), burst)
    }
}

/// How much further than its burst each lane may run a limit ahead.
fn lane_headroom(lane: Lane, headroom: Duration) -> Duration {
    match lane {
        Lane::High => headroom,
        Lane::Medium => headroom / 2,
        Lane::Low => Duration::ZERO,
    }
}

/// Why a limit could not be checked.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimitError(String);

/// The GCRA step over several layers at once: allowed only if every layer allows, and then
/// every layer is charged. Returns 0 (taken) or the microseconds to wait.
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local over = tat - now - tolerance
  if over > wait then wait = over end
  tats[i] = tat + interval
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl_ms)
end
return 0
"#;

/// Push a limit's theoretical arrival time to at least now + ARGV[1] microseconds: nothing
/// passes it before then.
const HOLD_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < hold then
  redis.call('SET', KEYS[1], string.format('%.0f', hold), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"#;

/// Rate limits for this process: counted locally, or shared through Redis.
#[derive(Clone)]
pub enum Limiter {
    Local(Arc<Mutex<HashMap<String, Instant>>>, Duration),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Arc<redis::Script>,
        hold_script: Arc<redis::Script>,
        headroom: Duration,
    },
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limiter::Local(..) => f.write_str("Limiter::Local"),
            Limiter::Redis { prefix, .. } => write!(f, "Limiter::Redis({prefix})"),
        }
    }
}

impl Limiter {
    pub fn local(headroom: Duration) -> Limiter {
        Limiter::Local(Arc::default(), headroom)
    }

    pub fn redis(conn: ConnectionManager, prefix: &str, headroom: Duration) -> Limiter {
        Limiter::Redis {
            conn,
            prefix: format!("{prefix}:ratelimit:"),
            script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
            hold_script: Arc::new(redis::Script::new(HOLD_SCRIPT)),
            headroom,
        }
    }

    /// Take one send from every layer of `limits` for `lane`, or say how long to wait first.
    pub async fn try_take(
        &self,
        limits: &[Limit],
        lane: Lane,
    ) -> Result<Option<Duration>, LimitError> {
        if limits.is_empty() {
            return Ok(None);
        }
        match self {
            Limiter::Local(tats, headroom) => {
                let now = Instant::now();
                let mut tats = tats
                    .lock()
                    .map_err(|_| LimitError("lock poisoned".into()))?;
                let mut wait = Duration::ZERO;
                for limit in limits {
                    let tat = tats.get(&limit.key).copied().unwrap_or(now).max(now);
                    let ahead = tat - now;
                    wait = wait.max(ahead.saturating_sub(limit.tolerance(lane, *headroom)));
                }
                if !wait.is_zero() {
                    return Ok(Some(wait));
                }
                for limit in limits {
                    let tat = tats.get(&limit.key).copied().unwrap_or(now).max(now);
                    tats.insert(limit.key.clone(), tat + limit.charge());
                }
                Ok(None)
            }
            Limiter::Redis {
                conn,
                prefix,
                script,
                headroom,
                ..
            } => {
                let mut invocation = script.prepare_invoke();
                for limit in limits {
                    invocation
                        .key(format!("{prefix}{}", limit.key))
                        .arg(limit.charge().as_micros() as u64)
                        .arg(limit.tolerance(lane, *headroom).as_micros() as u64);
                }
                let wait_us: u64 = invocation
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(|e| LimitError(e.to_string()))?;
                Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
            }
        }
    }

    /// Let nothing pass `key` for `pause` from now (the provider asked us to wait).
    pub async fn hold(&self, key: &str, pause: Duration) -> Result<(), LimitError> {
        match self {
            Limiter::Local(tats, _) => {
                let until = Instant::now() + pause;
                let mut tats = tats
                    .lock()
                    .map_err(|_| LimitError("lock poisoned".into()))?;
                let tat = tats.entry(key.to_string()).or_insert(until);
                *tat = (*tat).max(until);
                Ok(())
            }
            Limiter::Redis {
                conn,
                prefix,
                hold_script,
                ..
            } => {
                let _: i64 = hold_script
                    .key(format!("{prefix}{key}"))
                    .arg(pause.as_micros() as u64)
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(|e| LimitError(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// Wait until every layer of `limits` lets one send of `lane` through, and take it.
    /// Returns how long it waited. While Redis is unreachable it keeps trying: sending past a
    /// shared limit would earn 429s from the provider.
    pub async fn until_ready(&self, limits: &[Limit], lane: Lane) -> Duration {
        let started = Instant::now();
        loop {
            match self.try_take(limits, lane).await {
                Ok(None) => return started.elapsed(),
                Ok(Some(wait)) => tokio::time::sleep(wait.min(Duration::from_millis(250))).await,
                Err(e) => {
                    tracing::warn!(error = %e, "rate limiter unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_costly_take_charges_every_send_and_needs_room_for_them() {
        let limiter = Limiter::local(Duration::ZERO);
        let wait_for = async |limit: &Limit| {
            limiter
                .try_take(std::slice::from_ref(limit), Lane::Low)
                .await
                .expect("a local limiter answers")
        };
        let album = Limit::per_second("album", 10, Duration::from_millis(100)).with_cost(3);
        // An idle limit takes an album at once: it cannot be split.
        assert_eq!(wait_for(&album).await, None);
        // It charged 3 intervals (300 ms); the 100 ms burst is used up by the album's own
        // items, so the next one waits for the whole charge.
        let wait = wait_for(&album).await.unwrap_or_default();
        assert!(
            wait > Duration::from_millis(250) && wait <= Duration::from_millis(300),
            "{wait:?}"
        );
        // A single send on the same limit may use the burst.
        let single = Limit::per_second("album", 10, Duration::from_millis(100));
        let wait = wait_for(&single).await.unwrap_or_default();
        assert!(
            wait > Duration::from_millis(150) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
    }
}
