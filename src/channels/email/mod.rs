//! Email over SMTP (lettre, async, pooled): one message per recipient, a plain-text body and
//! an optional HTML alternative, `List-Unsubscribe` with one-click unsubscribe (RFC 8058).
//!
//! SMTP answers map onto the retry split: 4xx is transient, 5xx permanent, except the
//! authentication replies (530, 534, 535, 538), which say our credentials are wrong, not the
//! address: those, like an unreachable server, make the channel unavailable, so the messages
//! wait for the fixed configuration without spending attempts. A send cut off by our timeout
//! may have been accepted: its outcome is unknown (SMTP cannot deduplicate a resend).

mod settings;

pub use settings::{EmailSecurity, EmailSettings};

use super::{
    Attempt, Channel, DeliveryError, NotReachable, Outgoing, Parts, Profile, Receipt, Recipient,
    Route, Shared,
};
use crate::domain::ChannelKind;
use crate::limits::Limit;
use futures::future::BoxFuture;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// The email parts of one outgoing message.
#[derive(Debug, Clone, Copy)]
pub struct EmailParts<'a> {
    pub subject: &'a str,
    pub html: Option<&'a str>,
    /// The recipient's own unsubscribe link.
    pub unsubscribe_url: Option<&'a str>,
}

pub struct EmailChannel {
    settings: EmailSettings,
    from: Mailbox,
    /// The domain of `from`, for Message-IDs.
    domain: String,
    /// Replaced after a send that timed out: lettre's pool could otherwise hand the
    /// connection cut off mid-transaction to the next send.
    transport: RwLock<Arc<Transport>>,
    timeout: Duration,
    /// The SMTP server's rate limit, when one is configured (and this is a worker's channel).
    limit: Option<Limit>,
}

/// An email reaches a client with an address who did not unsubscribe; it has a subject line
/// and the recipient's unsubscribe link.
pub const PROFILE: Profile = Profile {
    audience: "c.email IS NOT NULL AND c.email_opted_out_at IS NULL",
    notifies: true,
    subject: super::Subject::Required {
        name: "subject",
        // RFC 5322's line length.
        max_chars: 998,
    },
    html_body: true,
    telegram_content: false,
    unsubscribe_link: true,
    push_subscriptions: false,
};

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("smtp_host", &self.settings.smtp_host)
            .field("smtp_port", &self.settings.smtp_port)
            .field("from", &self.settings.from)
            .finish()
    }
}

impl EmailChannel {
    /// Must run inside a tokio runtime (the connection pool starts a task).
    pub fn new(settings: &EmailSettings) -> Result<EmailChannel, DeliveryError> {
        let from: Mailbox = settings.from.parse().map_err(|e| {
            DeliveryError::permanent(format!(
                "email.from {:?} is not an address: {e}",
                settings.from
            ))
        })?;
        let domain = from.email.domain().to_owned();
        let transport = build_transport(settings)?;
        Ok(EmailChannel {
            settings: settings.clone(),
            from,
            domain,
            transport: RwLock::new(Arc::new(transport)),
            timeout: Duration::from_millis(settings.timeout_ms),
            limit: None,
        })
    }

    /// The channel with the server's rate limit of `email.rate_limit_per_second`, keyed by
    /// server: deployments that point several configs at one relay share it.
    pub fn rate_limited(mut self, shared: Shared) -> EmailChannel {
        let settings = &self.settings;
        self.limit = (settings.rate_limit_per_second > 0).then(|| {
            Limit::per_second(
                format!("smtp:{}:{}", settings.smtp_host, settings.smtp_port),
                settings.rate_limit_per_second,
                shared.burst,
            )
        });
        self
    }

    fn transport(&self) -> Arc<Transport> {
        match self.transport.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace_transport(&self) {
        if let Ok(fresh) = build_transport(&self.settings) {
            match self.transport.write() {
                Ok(mut t) => *t = Arc::new(fresh),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(fresh),
            }
        }
    }

    /// Build the message for `msg`; an address or header that cannot be built is permanent.
    pub fn message(&self, msg: &Outgoing<'_>) -> Result<Message, DeliveryError> {
        let Parts::Email(parts) = msg.parts else {
            return Err(DeliveryError::permanent("an email needs a subject"));
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(mailbox(msg.address)?)
            .subject(parts.subject)
            // Deterministic: a receiver that sees the same message twice can tell.
            .message_id(Some(format!(
                "<blast.{}.{}@{}>",
                msg.mailing_id, msg.message_id, self.domain
            )));
        if let Some(url) = parts.unsubscribe_url {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let built = match parts.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                msg.text.to_owned(),
                html.to_owned(),
            )),
            None => builder.singlepart(SinglePart::plain(msg.text.to_owned())),
        };
        built.map_err(build_error)
    }

    /// Mail a report (text and HTML) to `to` (the daily statistics email).
    pub async fn send_report(
        &self,
        to: &[String],
        subject: &str,
        text: &str,
        html: &str,
    ) -> Result<(), DeliveryError> {
        if to.is_empty() {
            return Err(DeliveryError::permanent(
                "no recipients configured (stats.recipients)",
            ));
        }
        let mut builder = Message::builder().from(self.from.clone()).subject(subject);
        for address in to {
            builder = builder.to(mailbox(address)?);
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .map_err(build_error)?;
        self.deliver(message).await
    }

    async fn deliver(&self, message: Message) -> Result<(), DeliveryError> {
        let transport = self.transport();
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(provider_error(classify(&e))),
            // The server may have taken the message before it went quiet: not sent again.
            Err(_) => {
                self.replace_transport();
                Err(provider_error((
                    "timeout",
                    DeliveryError::Indeterminate(
                        "the SMTP server did not finish answering in time".into(),
                    ),
                )))
            }
        }
    }
}

impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn max_in_flight(&self) -> usize {
        self.settings.max_in_flight as usize
    }

    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable> {
        if to.email_opted_out {
            return Err(NotReachable::new("the client unsubscribed from email"));
        }
        to.client
            .email
            .clone()
            .ok_or_else(|| NotReachable::new("the client has no email address any more"))
    }

    fn limits(&self, _route: &Route<'_>) -> Vec<Limit> {
        self.limit.iter().cloned().collect()
    }

    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let sent = match self.message(msg) {
                Ok(message) => self.deliver(message).await,
                Err(e) => Err(e),
            };
            sent.map(|()| Receipt::default()).into()
        })
    }
}

/// A recipient address; one that does not parse is the recipient's permanent failure.
fn mailbox(address: &str) -> Result<Mailbox, DeliveryError> {
    address
        .parse()
        .map_err(|e| DeliveryError::permanent(format!("invalid address {address:?}: {e}")))
}

fn build_error(e: lettre::error::Error) -> DeliveryError {
    DeliveryError::permanent(format!("cannot build the email: {e}"))
}

fn build_transport(settings: &EmailSettings) -> Result<Transport, DeliveryError> {
    let host = settings.smtp_host.as_str();
    let config_error = |e: lettre::transport::smtp::Error| {
        DeliveryError::permanent(format!("cannot set up SMTP to {host}: {e}"))
    };
    let mut builder = match settings.security {
        EmailSecurity::Plain => Transport::builder_dangerous(host),
        EmailSecurity::Starttls => Transport::starttls_relay(host).map_err(config_error)?,
        EmailSecurity::Tls => Transport::relay(host).map_err(config_error)?,
    }
    .port(settings.smtp_port)
    .timeout(Some(Duration::from_millis(settings.timeout_ms)))
    .pool_config(PoolConfig::new().max_size(settings.max_connections.max(1)));
    if !settings.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            settings.username.clone(),
            settings.password.expose().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// SMTP reply codes that mean our own credentials were refused.
const AUTH_FAILURES: [&str; 4] = ["530", "534", "535", "538"];

/// Map a lettre error onto Permanent / Transient, with the kind of error for metrics.
fn classify(e: &lettre::transport::smtp::Error) -> (&'static str, DeliveryError) {
    let code = e.status().map(|c| c.to_string());
    if let Some(code) = code.as_deref()
        && AUTH_FAILURES.contains(&code)
    {
        return (
            "auth",
            DeliveryError::Unavailable(format!(
                "the SMTP server refused our credentials (check email.username and email.password): {e}"
            )),
        );
    }
    if e.is_permanent() {
        ("smtp_5xx", DeliveryError::permanent(format!("SMTP: {e}")))
    } else if e.is_transient() {
        ("smtp_4xx", DeliveryError::transient(format!("SMTP: {e}")))
    } else if e.is_timeout() {
        // lettre's own timeout covers the connect: nothing was sent.
        (
            "timeout",
            DeliveryError::Unavailable("cannot connect to the SMTP server in time".into()),
        )
    } else {
        // Connection refused, TLS, a broken response: the server or the network, not the
        // message.
        (
            "transport",
            DeliveryError::Unavailable(format!("SMTP: {e}")),
        )
    }
}

fn provider_error((kind, e): (&'static str, DeliveryError)) -> DeliveryError {
    metrics::counter!("blast_provider_errors_total", "channel" => "email", "kind" => kind)
        .increment(1);
    e
}
