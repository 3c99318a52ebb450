//! Deduplication keys: the same text to the same recipient on the same channel goes out once
//! within `mailing.dedup_window_secs`, whichever process, mailing or API retry asks.
//!
//! With Redis the keys live there (SET with a TTL, taken and handed over by one script);
//! without it, in the store's `dedup_keys` table. Either way a key held by a message that will
//! never be sent (failed for good, expired, cancelled, deleted) is handed to the next one.

use crate::ids::MessageId;
use crate::store::{Result, Store, StoreError};
use redis::aio::ConnectionManager;
use std::sync::Arc;

/// Take KEYS[1] for message ARGV[1] for ARGV[2] ms if it is free, already ours, or held by
/// ARGV[3] (a holder found dead). Returns 0 when taken, else the holder's message id.
const RESERVE_SCRIPT: &str = r#"
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] or holder == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
return tonumber(holder)
"#;

/// Where this process keeps deduplication keys.
#[derive(Clone)]
pub enum DedupKeys {
    Database,
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Arc<redis::Script>,
    },
}

impl std::fmt::Debug for DedupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DedupKeys::Database => f.write_str("DedupKeys::Database"),
            DedupKeys::Redis { prefix, .. } => write!(f, "DedupKeys::Redis({prefix})"),
        }
    }
}

impl DedupKeys {
    pub fn redis(conn: ConnectionManager, prefix: &str) -> DedupKeys {
        DedupKeys::Redis {
            conn,
            prefix: format!("{prefix}:dedup:"),
            script: Arc::new(redis::Script::new(RESERVE_SCRIPT)),
        }
    }

    /// Reserve `key` for `message_id` for `window_ms`. False: another message holds it and
    /// may still be sent, so this one is a duplicate.
    pub async fn reserve(
        &self,
        store: &Store,
        key: &str,
        message_id: MessageId,
        window_ms: i64,
    ) -> Result<bool> {
        match self {
            DedupKeys::Database => {
                let until = crate::now_ms().saturating_add(window_ms);
                store.reserve_dedup_key(key, message_id, until).await
            }
            DedupKeys::Redis {
                conn,
                prefix,
                script,
            } => {
                let take = |dead_holder: i64| {
                    let mut conn = conn.clone();
                    let script = script.clone();
                    let key = format!("{prefix}{key}");
                    async move {
                        script
                            .key(key)
                            .arg(message_id.0)
                            .arg(window_ms.max(1))
                            .arg(dead_holder)
                            .invoke_async::<i64>(&mut conn)
                            .await
                            .map_err(|e| StoreError::Queue(e.to_string()))
                    }
                };
                let holder = take(0).await?;
                if holder == 0 {
                    return Ok(true);
                }
                if store.message_may_still_send(MessageId(holder)).await? {
                    return Ok(false);
                }
                Ok(take(holder).await? == 0)
            }
        }
    }
}
