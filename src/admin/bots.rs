//! `blast telegram-bot …`: register, list and remove a tenant's own Telegram bots.

use super::{Context, Result, print_json};
use crate::settings::Secret;
use blast_cli::{format_time_ms, table};

pub async fn add(ctx: &Context, name: &str, token: String) -> Result<()> {
    let bot = ctx
        .backend()
        .await?
        .add_telegram_bot(name, &Secret::new(token), &ctx.settings.telegram)
        .await?;
    println!(
        "registered bot {} (Telegram bot id {}); send through it with: blast mailing create --channel telegram --bot {}",
        bot.name, bot.bot_id, bot.name
    );
    Ok(())
}

pub async fn list(ctx: &Context, json: bool) -> Result<()> {
    let bots = ctx.backend().await?.telegram_bots().await?;
    if json {
        print_json(&bots);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &["name", "bot id", "registered"],
            bots.iter().map(|b| vec![
                b.name.clone(),
                b.bot_id.clone(),
                format_time_ms(b.created_at)
            ]),
        )
    );
    Ok(())
}

pub async fn remove(ctx: &Context, name: &str) -> Result<()> {
    crate::store::validate_bot_name(name)?;
    ctx.backend().await?.remove_telegram_bot(name).await?;
    println!("removed bot {name}");
    Ok(())
}
