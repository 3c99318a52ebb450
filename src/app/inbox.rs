//! Inbox tokens for the tenant's backend (API and CLI alike): the credential a client's app
//! opens its in-app inbox with.

use crate::channels::inapp::{InboxClaims, InboxTokens};
use crate::ids::{ClientId, TenantId};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// An inbox token, as the tenant's backend hands it to the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxToken {
    pub token: String,
    pub client_id: ClientId,
    /// Unix seconds; a socket opened with it is closed then (code 4001).
    pub expires_at: i64,
}

/// The signer of inbox tokens, with the deployment's secret (made by whoever asks first).
pub async fn tokens(store: &Store) -> Result<InboxTokens, StoreError> {
    let secret = store.site_secret(InboxTokens::SECRET_NAME).await?;
    Ok(InboxTokens::new(&secret))
}

/// A token for `tenant_id`'s client `client_id`, good for `ttl_secs` from now.
pub async fn token(
    store: &Store,
    signer: &InboxTokens,
    tenant_id: TenantId,
    client_id: ClientId,
    ttl_secs: u64,
) -> Result<InboxToken, StoreError> {
    let created_at = store
        .client_created_at(tenant_id, client_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")))?;
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2);
    let claims = InboxClaims {
        tenant_id,
        client_id,
        expires_at: (crate::now_ms() / 1000).saturating_add(ttl),
    };
    Ok(InboxToken {
        token: signer.token(claims, created_at),
        client_id,
        expires_at: claims.expires_at,
    })
}
