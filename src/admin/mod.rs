//! What the admin CLI does, one module per command group. Each function acts on the store and
//! prints its result; the binary only parses arguments and dispatches here.

pub mod backend;
pub mod bots;
pub mod client;
pub mod import;
pub mod mailing;
pub mod notify;
pub mod push;
pub mod secrets;
pub mod stats;
pub mod user;
pub mod webhook;

use crate::domain::InvalidInput;
use crate::settings::Settings;
use crate::store::{Store, StoreError, User};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Import(#[from] crate::app::import::ImportError),
    #[error(transparent)]
    Delivery(#[from] crate::channels::DeliveryError),
    /// The remote API refused or failed; `usage` when it answered 4xx.
    #[error("{message}")]
    Remote { message: String, usage: bool },
}

impl AdminError {
    /// A mistake in the command (exit code 2) rather than a failure of blast (exit code 1).
    pub fn is_usage_error(&self) -> bool {
        match self {
            AdminError::Store(e) => e.is_client_error(),
            AdminError::Invalid(_) => true,
            AdminError::Io(_) | AdminError::Delivery(_) => false,
            AdminError::Import(crate::app::import::ImportError::Invalid(_)) => true,
            AdminError::Import(crate::app::import::ImportError::Store(e)) => e.is_client_error(),
            AdminError::Import(crate::app::import::ImportError::Read(_)) => false,
            AdminError::Remote { usage, .. } => *usage,
        }
    }
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// What every admin command works with.
pub struct Context {
    /// The local database; absent when commands go to a remote server.
    pub store: Option<Store>,
    /// The remote server (`--server`), when given.
    pub remote: Option<backend::RemoteApi>,
    pub settings: Settings,
    /// The `--user` given, if any.
    pub user: Option<String>,
}

impl Context {
    /// The local database, for commands that only work there.
    pub fn store(&self, what: &str) -> Result<&Store> {
        self.store.as_ref().ok_or_else(|| backend::local_only(what))
    }

    /// Where tenant commands act: the remote server, or the local database as the tenant.
    pub async fn backend(&self) -> Result<backend::Backend> {
        if let Some(remote) = &self.remote {
            return Ok(backend::Backend::Remote(remote.clone()));
        }
        let tenant = self.tenant().await?;
        Ok(backend::Backend::Local {
            store: self.store("this command")?.clone(),
            tenant: tenant.id,
        })
    }

    /// After pausing or cancelling `mailing_id` in the local database: tell the workers of
    /// other processes at once (over Redis, when the configuration has it). A remote server
    /// tells them itself.
    pub async fn announce_halt(&self, mailing_id: crate::ids::MailingId) {
        let (Some(store), None) = (&self.store, &self.remote) else {
            return;
        };
        if self.settings.redis.url.is_empty() {
            return;
        }
        match crate::queue::Queue::open(store, &self.settings.redis).await {
            Ok(queue) => crate::halts::announce(&queue, mailing_id).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Redis to tell the workers; they see the change at their next check")
            }
        }
    }

    /// The tenant to act as: `--user`, or the only user there is.
    pub async fn tenant(&self) -> Result<User> {
        let user = match &self.user {
            Some(name) => self.store("--user")?.user_by_name(name).await?,
            None => self.only_user().await?,
        };
        if user.disabled {
            return Err(StoreError::Conflict(format!(
                "user {:?} is disabled (blast user enable {})",
                user.name, user.name
            ))
            .into());
        }
        Ok(user)
    }

    async fn only_user(&self) -> Result<User> {
        let users = self.store("user selection")?.list_users().await?;
        match users.as_slice() {
            [only] => Ok(only.user.clone()),
            [] => Err(crate::domain::invalid(
                "no user exists yet: create one with `blast user add NAME`",
            )
            .into()),
            _ => Err(crate::domain::invalid(
                "several users exist: say which with --user NAME (or BLAST_USER)",
            )
            .into()),
        }
    }
}

/// Print `value` as pretty JSON.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("cannot encode JSON: {e}"),
    }
}
