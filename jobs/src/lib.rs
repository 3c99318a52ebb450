//! Job payloads of blast: the wire format that sits in the queues (SQLite or Redis) across deploys.
//!
//! A job is a bounded *work token*, never the work itself: the database rows are the truth and a
//! job only says "deliver these claimed rows". Losing a job therefore loses nothing (the reconciler
//! re-queues the rows), and running a stale job twice does nothing (its claim no longer matches).
//!
//! Payloads are versioned JSON objects, tagged by `kind`. Workers decode them with [`Job::decode`]
//! from raw JSON so that a payload written by a newer or older deploy is reported and dropped
//! instead of killing the worker (apalis stops a worker whose job fails to decode).

use serde::{Deserialize, Serialize};

/// The priority lane a job travels in. Each lane is a queue of its own so that high-priority work
/// never waits behind a low-priority backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    High,
    Medium,
    Low,
}

impl Lane {
    /// Every lane, most urgent first.
    pub const ALL: [Lane; 3] = [Lane::High, Lane::Medium, Lane::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::High => "high",
            Lane::Medium => "medium",
            Lane::Low => "low",
        }
    }

    /// The queue name this lane uses in every backend.
    pub fn queue_name(self) -> &'static str {
        match self {
            Lane::High => "blast.deliver.high",
            Lane::Medium => "blast.deliver.medium",
            Lane::Low => "blast.deliver.low",
        }
    }
}

impl std::str::FromStr for Lane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Lane::High),
            "medium" => Ok(Lane::Medium),
            "low" => Ok(Lane::Low),
            other => Err(format!(
                "unknown priority {other:?}: expected high, medium or low"
            )),
        }
    }
}

/// Deliver a batch of message rows of one mailing that the pump has claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverBatch {
    pub mailing_id: i64,
    pub lane: Lane,
    /// The claim written into every row when it was queued. A row whose claim differs has been
    /// re-queued since (by the reconciler) and belongs to another job.
    pub claim: i64,
    pub message_ids: Vec<i64>,
}

/// Every job blast puts in a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Version 1 of the delivery token.
    DeliverBatchV1(DeliverBatch),
}

/// A payload no version of this build understands.
#[derive(Debug)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable job payload: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Job {
    /// Decode a payload taken from a queue as raw JSON.
    pub fn decode(raw: &serde_json::Value) -> Result<Job, DecodeError> {
        Job::deserialize(raw).map_err(|e| DecodeError(e.to_string()))
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no floats.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_its_wire_shape() {
        let job = Job::DeliverBatchV1(DeliverBatch {
            mailing_id: 7,
            lane: Lane::High,
            claim: 99,
            message_ids: vec![1, 2, 3],
        });
        let raw: serde_json::Value = serde_json::from_slice(&job.encode()).expect("json");
        assert_eq!(
            raw,
            serde_json::json!({"kind": "deliver_batch_v1", "mailing_id": 7, "lane": "high",
                               "claim": 99, "message_ids": [1, 2, 3]})
        );
        assert_eq!(Job::decode(&raw).expect("decodes"), job);
    }

    #[test]
    fn unknown_payloads_are_errors_not_panics() {
        for raw in [
            serde_json::json!({"kind": "deliver_batch_v9"}),
            serde_json::json!(42),
            serde_json::json!({"kind": "deliver_batch_v1", "mailing_id": "x"}),
        ] {
            assert!(Job::decode(&raw).is_err(), "{raw} should not decode");
        }
    }

    #[test]
    fn lanes_parse_from_their_names() {
        for lane in Lane::ALL {
            assert_eq!(lane.as_str().parse::<Lane>(), Ok(lane));
        }
        assert!("urgent".parse::<Lane>().is_err());
    }
}
