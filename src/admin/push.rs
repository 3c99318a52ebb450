//! `blast push …`: the browsers' web push subscriptions of clients.

use super::{Context, Result, print_json};
use crate::store::{NewPushSubscription, PushKeys};
use blast_cli::{format_time_ms, table};

pub async fn create(
    ctx: &Context,
    client: i64,
    endpoint: String,
    p256dh: String,
    auth: String,
) -> Result<()> {
    let new = NewPushSubscription {
        endpoint,
        keys: PushKeys { p256dh, auth },
    };
    let stored = ctx
        .backend()
        .await?
        .add_push_subscription(crate::ids::ClientId(client), &new, &ctx.settings.webpush)
        .await?;
    println!(
        "push subscription {} stored for client {}",
        stored.id, stored.client_id
    );
    Ok(())
}

pub async fn list(ctx: &Context, client: i64, json: bool) -> Result<()> {
    let subscriptions = ctx
        .backend()
        .await?
        .push_subscriptions(crate::ids::ClientId(client))
        .await?;
    if json {
        print_json(&subscriptions);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &["id", "endpoint", "created"],
            subscriptions.iter().map(|s| {
                vec![
                    s.id.to_string(),
                    s.endpoint.clone(),
                    format_time_ms(s.created_at),
                ]
            })
        )
    );
    Ok(())
}

pub async fn delete(ctx: &Context, id: i64) -> Result<()> {
    ctx.backend().await?.remove_push_subscription(id).await?;
    println!("push subscription {id} deleted");
    Ok(())
}
