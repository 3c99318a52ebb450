//! A mailing's templates, compiled once per batch and rendered per recipient off the runtime,
//! and the JSON a web push carries.

use crate::domain::{Client, InvalidInput};
use crate::store::Mailing;
use crate::template::{MessageTemplate, TextLimits};
use std::sync::Arc;
use std::time::Duration;

/// A mailing's templates, compiled once per batch.
pub(super) struct Templates {
    text: Result<MessageTemplate, InvalidInput>,
    subject: Option<Result<MessageTemplate, InvalidInput>>,
    html: Option<Result<MessageTemplate, InvalidInput>>,
    /// A notification's events, read once per batch: its web push payload.
    pub(super) events: Option<Vec<crate::notify::Event>>,
    /// How long one render may take; `None` where every template renders in place (a
    /// notification's literal texts, or text with plain variables only).
    timeout: Option<Duration>,
}

/// One recipient's message, rendered.
pub(super) struct Rendered {
    pub(super) text: String,
    pub(super) subject: Option<String>,
    pub(super) html: Option<String>,
}

impl Templates {
    pub(super) fn compile(mailing: &Mailing, limits: TextLimits) -> Templates {
        if mailing.notification_id.is_some() {
            let literal = |text: &str| Ok(MessageTemplate::literal(text));
            return Templates {
                text: literal(&mailing.text),
                subject: mailing.subject.as_deref().map(literal),
                html: None,
                events: None,
                timeout: None,
            };
        }
        let subject_limits = limits.with_max_chars(
            crate::channels::profile(mailing.channel)
                .subject
                .max_chars(),
        );
        let text = MessageTemplate::compile(&mailing.text, limits);
        let subject = mailing
            .subject
            .as_deref()
            .map(|subject| MessageTemplate::compile(subject, subject_limits));
        let html = mailing
            .html
            .as_deref()
            .map(|html| MessageTemplate::compile_html(html, limits));
        // A template that failed to compile fails each render at once: in place too.
        let in_place = [Some(&text), subject.as_ref(), html.as_ref()]
            .into_iter()
            .flatten()
            .all(|t| t.as_ref().map_or(true, MessageTemplate::renders_in_place));
        Templates {
            text,
            subject,
            html,
            events: None,
            timeout: (!in_place).then_some(limits.timeout),
        }
    }

    fn render(
        &self,
        client: &Client,
        extra: &[(&'static str, &str)],
    ) -> Result<Rendered, InvalidInput> {
        let one = |t: &Result<MessageTemplate, InvalidInput>| -> Result<String, InvalidInput> {
            t.as_ref().map_err(Clone::clone)?.render_with(client, extra)
        };
        Ok(Rendered {
            text: one(&self.text)?,
            subject: self.subject.as_ref().map(one).transpose()?,
            html: self.html.as_ref().map(one).transpose()?,
        })
    }

    /// Render on a blocking thread under the time limit: a tenant's template never holds up
    /// the runtime that every other send (and the process's shutdown) runs on. Literal texts
    /// and plain-variable templates render in place: for them the hop to a blocking thread
    /// cost more than the render (a third of a worker's time at 14,000 messages/s).
    pub(super) async fn render_off_runtime(
        self: &Arc<Self>,
        client: &Client,
        extra: &[(&'static str, &str)],
    ) -> Result<Rendered, InvalidInput> {
        let Some(timeout) = self.timeout else {
            return self.render(client, extra);
        };
        let (me, client) = (self.clone(), client.clone());
        let extra: Vec<(&'static str, String)> =
            extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        crate::template::off_runtime(timeout, move || {
            let extra: Vec<(&'static str, &str)> =
                extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            me.render(&client, &extra)
        })
        .await
    }
}

/// The JSON a web push carries: a notification's own payload, or a mailing's title (its
/// subject) and text.
pub(super) fn push_payload_of(
    mailing: &Mailing,
    templates: &Templates,
    rendered: &Rendered,
) -> Vec<u8> {
    match (mailing.notification_id, &templates.events) {
        (Some(id), Some(events)) if !events.is_empty() => crate::notify::push_payload(id, events),
        _ => serde_json::to_vec(&serde_json::json!({
            "title": rendered.subject.as_deref().unwrap_or_default(),
            "body": rendered.text,
            "mailing_id": mailing.id,
        }))
        .unwrap_or_default(),
    }
}
