//! What a tenant registers through the API: a Telegram bot, a status webhook, a browser's
//! push subscription.

use super::rules::BotName;
use crate::store::{NewPushSubscription, PushKeys};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A bot to register.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotInput {
    /// What mailings call it: 1-64 of a-z, 0-9, - and _.
    #[schema(value_type = BotName)]
    pub name: String,
    /// The token from @BotFather.
    pub token: String,
}

/// The token stays out of every debug output.
impl std::fmt::Debug for BotInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotInput")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A status webhook to add.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// An https: URL on a public address.
    #[schema(pattern = "^https?://")]
    pub url: String,
}

/// A browser's `PushSubscription.toJSON()`; `expirationTime` is accepted and ignored (push
/// services answer 404/410 when a subscription ends, and blast deletes it then).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PushSubscriptionInput {
    pub endpoint: String,
    pub keys: PushKeys,
    #[serde(
        default,
        rename = "expirationTime",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_time: Option<serde_json::Value>,
}

impl PushSubscriptionInput {
    pub fn into_new_subscription(self) -> NewPushSubscription {
        NewPushSubscription {
            endpoint: self.endpoint,
            keys: self.keys,
        }
    }

    /// `new` as sent to a remote blast.
    pub fn from_new_subscription(new: &NewPushSubscription) -> PushSubscriptionInput {
        PushSubscriptionInput {
            endpoint: new.endpoint.clone(),
            keys: new.keys.clone(),
            expiration_time: None,
        }
    }
}
