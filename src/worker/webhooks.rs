//! The webhook sender: posts the events owed to tenants' URLs, signed, and records each
//! answer in the store (a 2xx delivers; anything else retries on the backoff schedule until
//! `webhooks.max_attempts`). A URL the settings no longer let blast call (see
//! [`crate::outbound`]: a non-public address, now or after DNS) fails its event at once.
//!
//! Signature: `Blast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! so a receiver checks the body and how old it is (replays) with the secret it was given.
//! `Blast-Delivery: <id>` names the event: a retry after a lost answer repeats it, and the
//! receiver can tell.

use super::backoff::RetrySchedule;
use crate::channels::{DeliveryError, http_refusal};
use crate::now_ms;
use crate::outbound::{self, OutboundPolicy};
use crate::settings::{RetrySettings, WebhookSettings};
use crate::store::{DueDelivery, Store, StoreError};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// Events posted at once per pass.
const PER_PASS: u32 = 32;

/// The signature header's value for `body` posted at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[derive(Debug, Clone)]
pub struct WebhookSender {
    store: Store,
    http: reqwest::Client,
    schedule: RetrySchedule,
    lease_ms: i64,
    policy: OutboundPolicy,
}

/// How one posting went: the receiver's HTTP status, when it answered, and the outcome.
struct Posted {
    status: Option<u16>,
    outcome: Result<(), DeliveryError>,
}

impl WebhookSender {
    pub fn new(store: Store, settings: &WebhookSettings) -> Result<WebhookSender, reqwest::Error> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let policy = settings.outbound_policy();
        Ok(WebhookSender {
            store,
            // Names resolve to allowed addresses only, at every connection (DNS rebinding).
            http: outbound::client_builder(&policy)
                .timeout(timeout)
                // A receiver's redirect is not followed: the signature was made for its URL.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            schedule: RetrySchedule::new(&RetrySettings {
                base_delay_ms: settings.base_delay_ms,
                max_delay_ms: settings.max_delay_ms,
                max_attempts: settings.max_attempts,
            }),
            // Longer than one posting can take, so a live sender keeps what it claimed.
            lease_ms: i64::try_from(settings.timeout_ms.saturating_add(30_000)).unwrap_or(i64::MAX),
            policy,
        })
    }

    /// Post every event that is due (a pass of at most a few dozen).
    pub async fn send_due(&self) -> Result<(), StoreError> {
        let due = self
            .store
            .claim_webhook_deliveries(now_ms(), self.lease_ms, PER_PASS)
            .await?;
        futures::future::join_all(due.into_iter().map(|d| self.post(d))).await;
        Ok(())
    }

    /// Post one event, unless its URL is not one blast may call. The answer is read like a
    /// provider's ([`http_refusal`]): a 2xx delivers; 5xx, 408 and 429 are passing trouble
    /// (tried again on the schedule, not before the receiver's `Retry-After`); any other status
    /// and a URL blast may not call are permanent (a 410 Gone is not asked again).
    async fn attempt(&self, delivery: &DueDelivery) -> Posted {
        let refused = |error: DeliveryError| Posted {
            status: None,
            outcome: Err(error),
        };
        let url = match reqwest::Url::parse(&delivery.url) {
            Ok(url) => url,
            Err(e) => {
                return refused(DeliveryError::permanent(format!(
                    "the webhook URL is not a URL: {e}"
                )));
            }
        };
        // The resolver sees only names; an IP-literal host (and the scheme) is checked here.
        if let Err(e) = outbound::check_before_send(&url, &self.policy) {
            return refused(DeliveryError::permanent(format!("the webhook URL {e}")));
        }
        let timestamp = now_ms() / 1000;
        let answer = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "Blast-Signature",
                signature(&delivery.secret, timestamp, &delivery.payload),
            )
            .header("Blast-Delivery", delivery.id.to_string())
            .body(delivery.payload.clone())
            .send()
            .await;
        match answer {
            Ok(response) => Posted {
                status: Some(response.status().as_u16()),
                outcome: if response.status().is_success() {
                    Ok(())
                } else {
                    Err(http_refusal(
                        response.status(),
                        response.headers(),
                        "the receiver",
                    ))
                },
            },
            Err(e) => refused(match outbound::refusal(&e) {
                Some(refused) => DeliveryError::permanent(format!("the webhook URL {refused}")),
                None => DeliveryError::transient(format!("cannot reach the receiver: {e}")),
            }),
        }
    }

    async fn post(&self, delivery: DueDelivery) {
        let Posted { status, outcome } = self.attempt(&delivery).await;
        let record = match outcome {
            Ok(()) => Ok(()),
            Err(DeliveryError::Transient {
                reason,
                retry_after,
            }) => {
                let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
                let next = self.schedule.delay(attempts, retry_after).map(|delay| {
                    now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
                });
                metrics::counter!("blast_webhook_failures_total").increment(1);
                Err((reason, next))
            }
            Err(other) => {
                let error = match other {
                    DeliveryError::Permanent(reason) => reason,
                    other => other.to_string(),
                };
                tracing::warn!(delivery = delivery.id, %error, "webhook event refused for good");
                metrics::counter!("blast_webhook_failures_total").increment(1);
                Err((error, None))
            }
        };
        if record.is_ok() {
            metrics::counter!("blast_webhook_deliveries_total").increment(1);
        }
        // Not recorded: the claim runs out and the event is posted again, never lost.
        if let Err(e) = self
            .store
            .finish_webhook_delivery(delivery.id, status, record)
            .await
        {
            tracing::warn!(error = %e, delivery = delivery.id, "cannot record a webhook posting");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = signature("whsec_x", 1_700_000_000, "{}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature("whsec_x", 1_700_000_001, "{}"));
        assert_ne!(a, signature("whsec_x", 1_700_000_000, "{ }"));
        assert_ne!(a, signature("whsec_y", 1_700_000_000, "{}"));
    }
}
