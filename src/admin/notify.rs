//! `blast notify` (one event to one client over its preferred channels) and `blast
//! notification …` (follow one; a client's channel order and quiet hours).

use super::{Context, Result, print_json};
use crate::domain::{ChannelKind, Priority, invalid};
use crate::notify::Event;
use crate::store::{NewNotification, NotificationPreferences};
use blast_cli::NotifyArgs;
use blast_cli::{format_time_ms, table};

pub async fn run(ctx: &Context, args: &NotifyArgs) -> Result<()> {
    let data = match &args.data {
        None => serde_json::Value::Null,
        Some(json) => {
            serde_json::from_str(json).map_err(|e| invalid(format!("--data is not JSON: {e}")))?
        }
    };
    let priority: Priority = args.priority.as_str().parse().map_err(invalid)?;
    let new = NewNotification {
        client_id: crate::ids::ClientId(args.client),
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

pub async fn show(ctx: &Context, id: i64, json: bool) -> Result<()> {
    let n = ctx.backend().await?.notification(id).await?;
    if json {
        print_json(&n);
        return Ok(());
    }
    println!(
        "notification {}: {} (client {})",
        n.id, n.state, n.client_id
    );
    println!(
        "  priority  {}{}",
        n.priority.as_str(),
        if n.urgent { ", urgent" } else { "" }
    );
    if !n.tried.is_empty() {
        println!("  tried     {}", n.tried.join(", "));
    }
    if let Some(channel) = &n.channel {
        println!("  channel   {channel}");
    }
    if let Some(error) = &n.last_error {
        println!("  error     {error}");
    }
    println!(
        "  window    {} .. {}",
        format_time_ms(n.deliver_after),
        format_time_ms(n.expires_at)
    );
    println!(
        "{}",
        table(
            &["title", "body"],
            n.events
                .iter()
                .map(|e| vec![e.title.clone(), e.body.clone()])
        )
    );
    Ok(())
}

/// Show a client's preferences; with `channels`, `quiet_hours` or `no_quiet_hours`, change
/// them first (what is not given stays as it was).
pub async fn preferences(
    ctx: &Context,
    client: i64,
    channels: &[String],
    quiet_hours: Option<String>,
    no_quiet_hours: bool,
    json: bool,
) -> Result<()> {
    let backend = ctx.backend().await?;
    let mut preferences = backend
        .preferences(crate::ids::ClientId(client), &ctx.settings.notifications)
        .await?;
    if !channels.is_empty() || quiet_hours.is_some() || no_quiet_hours {
        if !channels.is_empty() {
            preferences.channels = channels
                .iter()
                .map(|c| c.trim().parse::<ChannelKind>())
                .collect::<Result<_, _>>()?;
        }
        if let Some(hours) = quiet_hours {
            preferences.quiet_hours = Some(hours.parse()?);
        }
        if no_quiet_hours {
            preferences.quiet_hours = None;
        }
        preferences = backend
            .set_preferences(crate::ids::ClientId(client), &preferences)
            .await?;
    }
    print_preferences(client, &preferences, json);
    Ok(())
}

fn print_preferences(client: i64, p: &NotificationPreferences, json: bool) {
    if json {
        print_json(p);
        return;
    }
    let channels: Vec<&str> = p.channels.iter().map(|c| c.as_str()).collect();
    println!("client {client}: channels {}", channels.join(", "));
    match &p.quiet_hours {
        Some(hours) => println!("  quiet hours {hours} (its own time zone)"),
        None => println!("  no quiet hours"),
    }
}
