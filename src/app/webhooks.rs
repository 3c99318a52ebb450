//! Registering a status webhook: its URL must be one blast may call (the host's DNS answer
//! included), checked before the store keeps it.

use crate::domain::invalid;
use crate::ids::TenantId;
use crate::outbound::check_at_registration;
use crate::settings::WebhookSettings;
use crate::store::{Store, StoreError, Webhook};

/// Check `url` and register it for `tenant_id`'s events; the answer carries the signing
/// secret, shown this once.
pub async fn add_webhook(
    store: &Store,
    tenant_id: TenantId,
    url: &str,
    settings: &WebhookSettings,
) -> Result<Webhook, StoreError> {
    check_at_registration(url, &settings.outbound_policy())
        .await
        .map_err(|e| StoreError::Invalid(invalid(format!("the webhook URL {e}"))))?;
    store
        .add_webhook(tenant_id, url, settings.max_per_tenant)
        .await
}
