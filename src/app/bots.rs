//! Registering a tenant's Telegram bot: a name that reads the same in a URL and on a command
//! line, and a token Telegram itself vouches for (`getMe` at `telegram.api_url`), before the
//! store keeps it. The API, the CLI and the console all register through here.

use crate::channels::{DeliveryError, TelegramBot};
use crate::ids::TenantId;
use crate::settings::{Secret, TelegramSettings};
use crate::store::{RegisteredBot, Store, StoreError, validate_bot_name};

/// Why a bot was not registered.
#[derive(Debug, thiserror::Error)]
pub enum BotRegistrationError {
    /// A bad name (checked before Telegram is asked anything), a name taken, or the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Telegram refused the token, or it is another bot's than its id says: the caller's
    /// mistake.
    #[error("{0}")]
    Refused(String),
    /// The Bot API could not be asked: nothing is stored; try again later.
    #[error(transparent)]
    Unreachable(DeliveryError),
}

/// Check `name` and `token` and register the bot for `tenant_id`.
pub async fn register_bot(
    store: &Store,
    tenant_id: TenantId,
    name: &str,
    token: &Secret,
    telegram: &TelegramSettings,
) -> Result<RegisteredBot, BotRegistrationError> {
    validate_bot_name(name)?;
    TelegramBot::verify(telegram, token)
        .await
        .map_err(|e| match e {
            DeliveryError::Permanent(reason) => BotRegistrationError::Refused(reason),
            other => BotRegistrationError::Unreachable(other),
        })?;
    Ok(store.add_telegram_bot(tenant_id, name, token).await?)
}
