//! The SMS provider's HTTP API: `POST {base}/v1/send/{id}` with a JWT bearer and
//! `{"id": int64, "phone": int64, "text": string}`; success is 200 `{"code": 0, ...}`.

mod settings;

pub use settings::SmsSettings;

use super::{
    Attempt, Channel, DeliveryError, NotReachable, Outgoing, Profile, Receipt, Recipient, Route,
    Shared, retry_after,
};
use crate::domain::ChannelKind;
use crate::limits::Limit;
use crate::secret::Secret;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug)]
pub struct SmsChannel {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    max_in_flight: usize,
    /// The provider's rate limit, when one is configured.
    limit: Option<Limit>,
}

/// An SMS: a text to a client with a phone number, one of a notification's channels.
pub const PROFILE: Profile = Profile {
    audience: "c.phone IS NOT NULL",
    notifies: true,
    subject: super::Subject::None,
    html_body: false,
    telegram_content: false,
    unsubscribe_link: false,
    push_subscriptions: false,
};

/// The phone a client is reached on, for the SMS and log channels.
pub(crate) fn phone_of(to: &Recipient<'_>) -> Result<String, NotReachable> {
    to.client
        .phone
        .clone()
        .ok_or_else(|| NotReachable::new("the client has no phone"))
}

#[derive(Serialize)]
struct SendRequest<'a> {
    id: crate::ids::MessageId,
    phone: i64,
    text: &'a str,
}

#[derive(Deserialize)]
struct SendResponse {
    code: i64,
    #[serde(default)]
    message: String,
}

impl SmsChannel {
    pub fn new(settings: &SmsSettings, shared: Shared) -> Result<SmsChannel, DeliveryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(5000)))
            .pool_max_idle_per_host(settings.max_in_flight as usize)
            .build()
            .map_err(|e| DeliveryError::permanent(format!("cannot build the HTTP client: {e}")))?;
        Ok(SmsChannel {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            max_in_flight: settings.max_in_flight as usize,
            limit: (settings.rate_limit_per_second > 0)
                .then(|| Limit::per_second("sms", settings.rate_limit_per_second, shared.burst)),
        })
    }

    /// Send one message. Only a complete `200 {"code": 0}` is a delivery. What went wrong
    /// decides what may happen next: nothing reached the provider (it cannot be connected to:
    /// `Unavailable`), the provider refused it (5xx, 429, a non-zero code: `Transient`; 4xx:
    /// `Permanent`), or the request went out and no clear answer came back (a timeout, a reset,
    /// an answer cut off or garbled: `Indeterminate`, which `sms.resend_unacknowledged` turns
    /// into a retry under the same id or into `unknown`).
    pub async fn post(&self, msg: &Outgoing<'_>) -> Result<(), DeliveryError> {
        let phone: i64 = msg
            .address
            .parse()
            .map_err(|_| DeliveryError::permanent(format!("invalid phone {}", msg.address)))?;
        let url = format!("{}/v1/send/{}", self.base_url, msg.message_id);
        let response = self
            .http
            .post(&url)
            .bearer_auth(self.token.expose())
            .json(&SendRequest {
                id: msg.message_id,
                phone,
                text: msg.text,
            })
            .send()
            .await
            .map_err(|e| provider_error(transport_kind(&e), cut_off(&e)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body,
            // The provider answered 200 and the body broke off: it may well have taken it.
            Err(e) if status == StatusCode::OK => {
                return Err(provider_error(transport_kind(&e), cut_off(&e)));
            }
            // An error status stands for itself, whatever became of its body.
            Err(_) => Default::default(),
        };
        classify(status, retry_after, &body).map_err(|(kind, e)| provider_error(kind, e))
    }
}

impl Channel for SmsChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable> {
        phone_of(to)
    }

    fn limits(&self, _route: &Route<'_>) -> Vec<Limit> {
        self.limit.iter().cloned().collect()
    }

    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move { self.post(msg).await.map(|()| Receipt::default()).into() })
    }
}

/// A request that failed in transport: not connected at all (nothing was sent: the provider is
/// unreachable, which is no fault of this message), or cut off after it went out.
fn cut_off(e: &reqwest::Error) -> DeliveryError {
    if e.is_connect() {
        DeliveryError::Unavailable(describe_transport_error(e))
    } else {
        DeliveryError::Indeterminate(describe_transport_error(e))
    }
}

/// Count a provider error by kind (`blast_provider_errors_total`) and pass it on.
fn provider_error(kind: &'static str, e: DeliveryError) -> DeliveryError {
    metrics::counter!("blast_provider_errors_total", "channel" => "sms", "kind" => kind)
        .increment(1);
    e
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "transport"
    }
}

/// Map the provider's answer onto Permanent / Transient / Indeterminate, with the kind of error
/// for metrics.
fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<(), (&'static str, DeliveryError)> {
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if status == StatusCode::OK {
        return match serde_json::from_slice::<SendResponse>(body) {
            Ok(r) if r.code == 0 => Ok(()),
            // The provider says it did not take it: asking again cannot duplicate.
            Ok(r) => Err((
                "refused_code",
                DeliveryError::transient(format!(
                    "provider answered code {}: {}",
                    r.code, r.message
                )),
            )),
            // A 200 we cannot read may or may not have been accepted.
            Err(_) => Err((
                "malformed",
                DeliveryError::Indeterminate(format!("malformed 200 response: {:?}", snippet())),
            )),
        };
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        let kind = if status.is_server_error() {
            "http_5xx"
        } else {
            "http_429"
        };
        return Err((
            kind,
            DeliveryError::Transient {
                reason: format!("provider answered {status}"),
                retry_after,
            },
        ));
    }
    Err((
        "http_4xx",
        DeliveryError::permanent(format!(
            "provider rejected the message with {status}: {:?}",
            snippet()
        )),
    ))
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "cannot connect to the provider".into()
    } else if e.is_timeout() {
        "provider did not answer in time".into()
    } else {
        // The URL holds nothing secret (the token travels in a header).
        format!("transport error: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let kind = |status, body: &[u8]| classify(status, None, body).err().map(|(k, _)| k);
        let verdict = |status, retry_after, body: &[u8]| {
            classify(status, retry_after, body).map_err(|(_, e)| e)
        };
        assert_eq!(
            verdict(StatusCode::OK, None, br#"{"code":0,"message":"OK"}"#),
            Ok(())
        );
        assert!(matches!(
            verdict(StatusCode::OK, None, b"<html>"),
            Err(DeliveryError::Indeterminate(_))
        ));
        assert!(matches!(
            verdict(StatusCode::OK, None, br#"{"code":0,"mess"#),
            Err(DeliveryError::Indeterminate(_))
        ));
        assert_eq!(kind(StatusCode::OK, b"<html>"), Some("malformed"));
        assert!(matches!(
            verdict(StatusCode::OK, None, br#"{"code":3,"message":"busy"}"#),
            Err(DeliveryError::Transient { .. })
        ));
        assert!(matches!(
            verdict(StatusCode::BAD_GATEWAY, None, b""),
            Err(DeliveryError::Transient { .. })
        ));
        assert_eq!(kind(StatusCode::BAD_GATEWAY, b""), Some("http_5xx"));
        assert_eq!(
            verdict(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                b""
            ),
            Err(DeliveryError::Transient {
                reason: "provider answered 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(3))
            })
        );
        assert!(matches!(
            verdict(StatusCode::BAD_REQUEST, None, b"bad phone"),
            Err(DeliveryError::Permanent(_))
        ));
        assert_eq!(kind(StatusCode::UNAUTHORIZED, b""), Some("http_4xx"));
    }
}
