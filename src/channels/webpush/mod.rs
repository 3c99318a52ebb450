//! Web push: one payload to one browser subscription, encrypted for it (aes128gcm, RFC 8291)
//! by web-push-native, and signed with our VAPID key (RFC 8292, [`super::vapid`]).
//!
//! A push service answers 201 when it took the message; 404 and 410 mean the subscription is
//! gone for good (the worker deletes it, [`DeliveryError::Blocked`]); 429 and 5xx are worth
//! another try; other 4xx are this message's or this subscription's fault.

mod settings;

pub use settings::WebPushSettings;

use super::{
    Attempt, Channel, ChannelEvent, DeliveryError, NotReachable, Outgoing, Parts, Profile, Receipt,
    Recipient, http_refusal,
};
use crate::domain::ChannelKind;
use crate::outbound::{self, OutboundPolicy};
use crate::vapid::VapidKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use std::time::Duration;
use web_push_native::{Auth, WebPushBuilder, p256};

pub use crate::domain::{MAX_PUSH_TEXT_CHARS, PushSubscription};

/// Largest payload before encryption (4096 less the aes128gcm header and tag, with margin).
const MAX_PAYLOAD_BYTES: usize = 3800;

/// What is wrong with a browser's push subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("keys.{0} is not base64url")]
    NotBase64(&'static str),
    #[error("keys.p256dh is not a P-256 public key")]
    NotP256,
    #[error("keys.auth must be 16 bytes, not {0} (base64url of the browser's auth secret)")]
    AuthLength(usize),
    #[error("the endpoint {0}")]
    Endpoint(#[from] outbound::OutboundError),
}

/// A subscription's keys, decoded and checked.
pub struct SubscriptionKeys {
    public: p256::PublicKey,
    auth: Auth,
}

impl PushSubscription {
    /// Decode the subscription's keys; `Err` says what is wrong with them. Checked before a
    /// subscription is stored, because web-push-native panics on an authentication secret of
    /// the wrong length.
    pub fn keys(&self) -> Result<SubscriptionKeys, SubscriptionError> {
        let decode = |what: &'static str, value: &str| {
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|_| SubscriptionError::NotBase64(what))
        };
        let public = p256::PublicKey::from_sec1_bytes(&decode("p256dh", &self.p256dh)?)
            .map_err(|_| SubscriptionError::NotP256)?;
        let auth = decode("auth", &self.auth)?;
        if auth.len() != 16 {
            return Err(SubscriptionError::AuthLength(auth.len()));
        }
        Ok(SubscriptionKeys {
            public,
            auth: Auth::clone_from_slice(&auth),
        })
    }

    /// Check an endpoint before it is stored: one `policy` lets blast call (see
    /// [`crate::outbound`]), its host's DNS answer included.
    pub async fn check_endpoint(
        endpoint: &str,
        policy: &OutboundPolicy,
    ) -> Result<(), SubscriptionError> {
        Ok(outbound::check_at_registration(endpoint, policy).await?)
    }
}

/// A VAPID key pair, base64url: the private key for `webpush.vapid_private_key`, the public
/// one for the browser's `applicationServerKey`.
pub struct VapidKeys {
    pub private_key: String,
    pub public_key: String,
}

impl VapidKeys {
    pub fn generate() -> VapidKeys {
        let key = VapidKey::generate();
        VapidKeys {
            private_key: key.private_base64url(),
            public_key: key.public_base64url(),
        }
    }
}

/// Sends web push messages over one HTTP pool.
pub struct WebPushChannel {
    http: reqwest::Client,
    key: Option<VapidKey>,
    subject: String,
    ttl: Duration,
    timeout: Duration,
    /// What the endpoints may be, checked again before every push.
    policy: OutboundPolicy,
    max_in_flight: usize,
}

/// A web push reaches a client with a subscribed browser (every one of them, read at send
/// time); it has a title (its subject).
pub const PROFILE: Profile = Profile {
    audience: "EXISTS (SELECT 1 FROM push_subscriptions ps WHERE ps.client_id = c.id)",
    notifies: true,
    subject: super::Subject::Optional {
        name: "title (subject)",
        max_chars: crate::notify::MAX_TITLE_CHARS,
    },
    html_body: false,
    telegram_content: false,
    unsubscribe_link: false,
    push_subscriptions: true,
};

impl std::fmt::Debug for WebPushChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushChannel")
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl WebPushChannel {
    /// A channel with the configured key; an invalid key is a configuration error, an empty
    /// one makes every push wait (`Unavailable`) until one is set.
    pub fn new(settings: &WebPushSettings) -> Result<WebPushChannel, DeliveryError> {
        let key = match settings.vapid_private_key.expose() {
            "" => None,
            private_key => Some(
                VapidKey::from_base64url(private_key)
                    .map_err(|e| DeliveryError::Permanent(e.to_string()))?,
            ),
        };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let policy = settings.outbound_policy();
        // Redirects are not followed: a push service answers where it was asked (and a
        // redirect could lead anywhere). Names resolve to allowed addresses only.
        let http = outbound::client_builder(&policy)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeliveryError::Permanent(format!("web push HTTP client: {e}")))?;
        Ok(WebPushChannel {
            http,
            key,
            subject: settings.subject.clone(),
            ttl: Duration::from_secs(settings.ttl_secs),
            timeout,
            policy,
            max_in_flight: settings.max_in_flight as usize,
        })
    }

    /// Push `payload` to one subscription.
    pub async fn push(
        &self,
        subscription: &PushSubscription,
        payload: &[u8],
    ) -> Result<(), DeliveryError> {
        let Some(key) = &self.key else {
            return Err(DeliveryError::Unavailable(
                "webpush.vapid_private_key is not set (blast config vapid-keys makes one)".into(),
            ));
        };
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(DeliveryError::permanent(format!(
                "the push payload has {} bytes; push services take at most {MAX_PAYLOAD_BYTES}",
                payload.len()
            )));
        }
        // A stored subscription whose keys do not decode can never be sent to: gone.
        let keys = subscription
            .keys()
            .map_err(|e| DeliveryError::Blocked(e.to_string()))?;
        let endpoint: reqwest::Url = subscription
            .endpoint
            .parse()
            .map_err(|_| DeliveryError::Blocked("the subscription's endpoint is invalid".into()))?;
        // Checked again at every push: the settings may have changed since it was stored, and
        // an IP-literal host never reaches the client's resolver.
        outbound::check_before_send(&endpoint, &self.policy)
            .map_err(|e| DeliveryError::permanent(format!("the endpoint {e}")))?;
        let authorization = key
            .authorization(&endpoint, &self.subject, self.ttl)
            .map_err(|e| DeliveryError::permanent(format!("cannot sign the push: {e}")))?;
        let uri = endpoint
            .as_str()
            .parse()
            .map_err(|_| DeliveryError::Blocked("the subscription's endpoint is invalid".into()))?;
        let mut request = WebPushBuilder::new(uri, keys.public, keys.auth)
            .with_valid_duration(self.ttl)
            .build(payload.to_vec())
            .map_err(|e| DeliveryError::permanent(format!("cannot encrypt the push: {e}")))?;
        let authorization = reqwest::header::HeaderValue::try_from(authorization)
            .map_err(|e| DeliveryError::permanent(format!("cannot sign the push: {e}")))?;
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, authorization);
        let request = reqwest::Request::try_from(request)
            .map_err(|e| DeliveryError::permanent(format!("cannot build the push request: {e}")))?;
        let response = match tokio::time::timeout(self.timeout, self.http.execute(request)).await {
            Err(_) => {
                return Err(DeliveryError::Indeterminate(
                    "the push service did not answer in time".into(),
                ));
            }
            Ok(Err(e)) if e.is_timeout() => {
                return Err(DeliveryError::Indeterminate(format!(
                    "the push service did not answer in time: {e}"
                )));
            }
            Ok(Err(e)) => {
                // The resolver refused every address of the endpoint's host: this push can
                // never go there under the current settings.
                if let Some(refused) = outbound::refusal(&e) {
                    return Err(DeliveryError::permanent(format!("the endpoint {refused}")));
                }
                return Err(DeliveryError::transient(format!(
                    "cannot reach the push service: {e}"
                )));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            404 | 410 => Err(DeliveryError::Blocked(format!(
                "the push subscription expired or was unsubscribed ({status})"
            ))),
            413 => Err(DeliveryError::permanent(
                "the push service found the payload too large (413)",
            )),
            // 401/403 (the signature refused, usually a subscription made with another
            // applicationServerKey) is this subscription's fault, not every push's: permanent,
            // like any 4xx but 408 and 429.
            _ => Err(http_refusal(status, response.headers(), "the push service")),
        }
    }
}

impl Channel for WebPushChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WebPush
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The subscriptions are read at send time; the client stands for all of them.
    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable> {
        Ok(format!("client:{}", to.client.id))
    }

    /// Push to every browser of the client: delivered if one took it. A subscription its push
    /// service calls gone (404/410, or keys that never decode) raises an event that deletes
    /// it; when all are gone the message fails (and a notification moves on to its next
    /// channel).
    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Parts::Push(push) = &msg.parts else {
                return Err(DeliveryError::permanent("a web push needs a subscription")).into();
            };
            let sends = push.subscriptions.iter().map(|subscription| async move {
                (subscription.id, self.push(subscription, push.payload).await)
            });
            let mut delivered = false;
            let mut failure: Option<DeliveryError> = None;
            let mut events = Vec::new();
            for (id, result) in futures::future::join_all(sends).await {
                let error = match result {
                    Ok(()) => {
                        delivered = true;
                        continue;
                    }
                    Err(DeliveryError::Blocked(reason)) => {
                        tracing::info!(subscription = id, %reason, "a push subscription is gone");
                        events.push(ChannelEvent::SubscriptionGone { id });
                        DeliveryError::Blocked(format!(
                            "every push subscription of the client is gone: {reason}"
                        ))
                    }
                    Err(other) => other,
                };
                if failure
                    .as_ref()
                    .is_none_or(|f| deciding_rank(&error) > deciding_rank(f))
                {
                    failure = Some(error);
                }
            }
            let result = match failure {
                _ if delivered => Ok(Receipt::default()),
                Some(error) => Err(error),
                None => Err(DeliveryError::permanent("no push subscription")),
            };
            Attempt { result, events }
        })
    }
}

/// Which failure of one push among several decides the message: one that may have been
/// delivered (never resent), then one that may pass, then one for good, then a gone
/// subscription.
fn deciding_rank(error: &DeliveryError) -> u8 {
    match error {
        DeliveryError::Indeterminate(_) => 4,
        DeliveryError::Transient { .. }
        | DeliveryError::Unavailable(_)
        | DeliveryError::RateLimited { .. }
        | DeliveryError::Moved { .. } => 3,
        DeliveryError::Permanent(_) => 2,
        DeliveryError::Blocked(_) => 1,
    }
}
