//! `blast webhook …`: register, list and forget the URLs a tenant's events are posted to,
//! and see how their postings went.

use super::{Context, Result, print_json};
use blast_cli::{format_time_ms, table};

pub async fn create(ctx: &Context, url: &str, json: bool) -> Result<()> {
    let webhook = ctx
        .backend()
        .await?
        .add_webhook(url, &ctx.settings.webhooks)
        .await?;
    if json {
        print_json(&webhook);
        return Ok(());
    }
    println!("webhook {} registered for {}", webhook.id, webhook.url);
    if let Some(secret) = &webhook.secret {
        eprintln!("its signing secret (shown once; store it now):");
        println!("{secret}");
    }
    Ok(())
}

pub async fn list(ctx: &Context, json: bool) -> Result<()> {
    let webhooks = ctx.backend().await?.webhooks().await?;
    if json {
        print_json(&webhooks);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &["id", "url", "created"],
            webhooks.iter().map(|w| {
                vec![
                    w.id.to_string(),
                    w.url.clone(),
                    format_time_ms(w.created_at),
                ]
            })
        )
    );
    Ok(())
}

pub async fn delete(ctx: &Context, id: i64) -> Result<()> {
    ctx.backend().await?.remove_webhook(id).await?;
    println!("webhook {id} deleted");
    Ok(())
}

pub async fn deliveries(ctx: &Context, id: i64, json: bool) -> Result<()> {
    let deliveries = ctx.backend().await?.webhook_deliveries(id).await?;
    if json {
        print_json(&deliveries);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "event",
                "state",
                "attempts",
                "status",
                "created",
                "delivered",
                "last error"
            ],
            deliveries.iter().map(|d| {
                vec![
                    d.id.to_string(),
                    d.payload["type"].as_str().unwrap_or_default().to_owned(),
                    d.state.clone(),
                    d.attempts.to_string(),
                    d.response_status.map(|s| s.to_string()).unwrap_or_default(),
                    format_time_ms(d.created_at),
                    d.delivered_at.map(format_time_ms).unwrap_or_default(),
                    d.last_error.clone().unwrap_or_default(),
                ]
            })
        )
    );
    Ok(())
}
