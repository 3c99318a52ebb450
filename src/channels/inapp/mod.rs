//! The `inapp` channel: every client has an inbox, and a send puts one item in it. The item is
//! stored (the inbox is the truth: an app that was away catches up from it) and pushed to the
//! client's open sockets; the API serves both (`GET /api/v1/inbox/ws`, the REST routes).
//!
//! The channel sits below the store and the sockets, so it is handed an [`Inbox`] that holds
//! both (the `Poster` of the `inbox` module, built by the worker). Putting an item twice for
//! one message keeps one item, so a send cut off halfway may go out again.

mod settings;
pub mod token;

pub use settings::InAppSettings;
pub use token::{InboxClaims, InboxTokens};

use super::{
    Attempt, Channel, DeliveryError, NotReachable, Outgoing, Parts, Profile, Receipt, Recipient,
};
use crate::domain::ChannelKind;
use crate::ids::{ClientId, MailingId, MessageId, TenantId};
use futures::future::BoxFuture;
use std::sync::Arc;

/// The longest title of an inbox item, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Every client has an inbox; an item has an optional title (the mailing's subject).
pub const PROFILE: Profile = Profile {
    audience: "1 = 1",
    notifies: true,
    subject: super::Subject::Optional {
        name: "title (subject)",
        max_chars: MAX_TITLE_CHARS,
    },
    html_body: false,
    telegram_content: false,
    unsubscribe_link: false,
    push_subscriptions: false,
};

/// What a send puts in the inbox, beyond the text: whose inbox, and the title.
#[derive(Debug, Clone, Copy)]
pub struct InboxParts<'a> {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub title: Option<&'a str>,
}

/// One item to put in a client's inbox.
#[derive(Debug, Clone, Copy)]
pub struct NewItem<'a> {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub message_id: MessageId,
    pub mailing_id: MailingId,
    pub title: Option<&'a str>,
    pub text: &'a str,
}

/// Where the channel puts items: it stores each (once per message) and tells the sockets.
pub trait Inbox: std::fmt::Debug + Send + Sync {
    fn put<'a>(&'a self, item: NewItem<'a>) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

#[derive(Debug)]
pub struct InAppChannel {
    inbox: Arc<dyn Inbox>,
    max_in_flight: usize,
}

impl InAppChannel {
    pub fn new(inbox: Arc<dyn Inbox>, max_in_flight: usize) -> InAppChannel {
        InAppChannel {
            inbox,
            max_in_flight,
        }
    }
}

impl Channel for InAppChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::InApp
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable> {
        Ok(to.client.id.to_string())
    }

    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Parts::Inbox(parts) = msg.parts else {
                return Err(DeliveryError::permanent(
                    "an in-app message needs its inbox (a bug: the worker did not give it)",
                ))
                .into();
            };
            self.inbox
                .put(NewItem {
                    tenant_id: parts.tenant_id,
                    client_id: parts.client_id,
                    message_id: msg.message_id,
                    mailing_id: msg.mailing_id,
                    title: parts.title,
                    text: msg.text,
                })
                .await
                .map(|()| Receipt::default())
                .into()
        })
    }
}
