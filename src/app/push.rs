//! Registering a browser's push subscription: its keys must decode and its endpoint must be one
//! blast may call (the host's DNS answer included), checked before the store keeps it.

use crate::domain::{PushSubscription, invalid};
use crate::ids::{ClientId, TenantId};
use crate::settings::WebPushSettings;
use crate::store::{NewPushSubscription, Store, StoreError, StoredPushSubscription};

/// Check `new` and store it for `tenant_id`'s client `client_id`.
pub async fn add_push_subscription(
    store: &Store,
    tenant_id: TenantId,
    client_id: ClientId,
    new: &NewPushSubscription,
    settings: &WebPushSettings,
) -> Result<StoredPushSubscription, StoreError> {
    // An unknown client is a 404 before any DNS lookup.
    store.client(tenant_id, client_id).await?;
    let refused = |e: crate::channels::webpush::SubscriptionError| {
        StoreError::Invalid(invalid(e.to_string()))
    };
    PushSubscription::check_endpoint(&new.endpoint, &settings.outbound_policy())
        .await
        .map_err(refused)?;
    let candidate = PushSubscription {
        id: 0,
        endpoint: new.endpoint.clone(),
        p256dh: new.keys.p256dh.clone(),
        auth: new.keys.auth.clone(),
    };
    candidate.keys().map_err(refused)?;
    store.add_push_subscription(tenant_id, client_id, new).await
}
