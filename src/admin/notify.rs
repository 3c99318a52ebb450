//! `blast notify`: one event to one client over its preferred channels.

use super::{Context, Result, print_json};
use crate::domain::{Priority, invalid};
use crate::notify::Event;
use crate::store::NewNotification;
use blast_cli::NotifyArgs;

pub async fn run(ctx: &Context, args: &NotifyArgs) -> Result<()> {
    let data = match &args.data {
        None => serde_json::Value::Null,
        Some(json) => {
            serde_json::from_str(json).map_err(|e| invalid(format!("--data is not JSON: {e}")))?
        }
    };
    let priority: Priority = args.priority.parse().map_err(invalid)?;
    let new = NewNotification {
        client_id: args.client,
        event: Event {
            title: args.title.clone(),
            body: args.body.clone(),
            data,
            link: args.link.clone(),
        },
        priority,
        urgent: args.urgent,
        coalesce_minutes: args.coalesce_minutes,
        coalesce_key: args.coalesce_key.clone(),
        idempotency_key: args.idempotency_key.clone(),
    };
    let notification = ctx
        .backend()
        .await?
        .notify(new, &ctx.settings.notifications)
        .await?;
    if args.json {
        print_json(&notification);
        return Ok(());
    }
    let events = notification.events.len();
    println!(
        "notification {} for client {}: {}{}",
        notification.id,
        notification.client_id,
        notification.state,
        if events > 1 {
            format!(" ({events} events, sent together as a digest)")
        } else {
            String::new()
        }
    );
    Ok(())
}
