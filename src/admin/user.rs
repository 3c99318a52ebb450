//! `blast user …` and `blast token …`.

use super::{Context, Result};
use crate::domain::invalid;
use blast_cli::{format_time_ms, table};
use std::io::BufRead;

pub async fn add(ctx: &Context, name: &str, password_stdin: bool) -> Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password(format!("Password for {name}: ")).map_err(|e| {
            invalid(format!(
                "cannot read a password from the terminal ({e}); use --password-stdin"
            ))
        })?;
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            return Err(invalid("the passwords do not match").into());
        }
        first
    };
    let user = ctx
        .store("blast user add")?
        .add_user(name, &password)
        .await?;
    println!("user {} added (id {})", user.name, user.id);
    Ok(())
}

pub async fn list(ctx: &Context) -> Result<()> {
    let users = ctx.store("blast user list")?.list_users().await?;
    println!(
        "{}",
        table(
            &[
                "id", "name", "status", "tokens", "clients", "mailings", "created"
            ],
            users.iter().map(|u| {
                vec![
                    u.user.id.to_string(),
                    u.user.name.clone(),
                    if u.user.disabled {
                        "disabled"
                    } else {
                        "active"
                    }
                    .to_owned(),
                    u.tokens.to_string(),
                    u.clients.to_string(),
                    u.mailings.to_string(),
                    format_time_ms(u.created_at),
                ]
            })
        )
    );
    Ok(())
}

pub async fn set_disabled(ctx: &Context, name: &str, disabled: bool) -> Result<()> {
    ctx.store("blast user enable/disable")?
        .set_user_disabled(name, disabled)
        .await?;
    println!(
        "user {name} {}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

pub async fn create_token(
    ctx: &Context,
    name: &str,
    label: &str,
    expires_in_secs: Option<u64>,
) -> Result<()> {
    let store = ctx.store("blast token create")?;
    let user = store.user_by_name(name).await?;
    let ttl_ms =
        expires_in_secs.map(|secs| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    let token = store.create_token_with_ttl(&user, label, ttl_ms).await?;
    match ttl_ms {
        Some(ttl) => eprintln!(
            "API token for {name}, working until {} (shown once; store it now):",
            format_time_ms(crate::now_ms().saturating_add(ttl))
        ),
        None => eprintln!("API token for {name} (shown once; store it now):"),
    }
    println!("{token}");
    Ok(())
}

pub async fn list_tokens(ctx: &Context, name: &str, json: bool) -> Result<()> {
    let store = ctx.store("blast token list")?;
    let user = store.user_by_name(name).await?;
    let tokens = store.tokens(&user).await?;
    if json {
        super::print_json(&tokens);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &["id", "label", "created", "last used", "expires"],
            tokens.iter().map(|t| {
                vec![
                    t.id.to_string(),
                    t.label.clone(),
                    format_time_ms(t.created_at),
                    t.last_used_at
                        .map(format_time_ms)
                        .unwrap_or_else(|| "never".into()),
                    t.expires_at
                        .map(format_time_ms)
                        .unwrap_or_else(|| "never".into()),
                ]
            })
        )
    );
    Ok(())
}

pub async fn revoke_token(ctx: &Context, name: &str, id: i64) -> Result<()> {
    let store = ctx.store("blast token revoke")?;
    let user = store.user_by_name(name).await?;
    store.revoke_token(&user, id).await?;
    println!(
        "token {id} of {name} revoked (API processes stop taking it within api.token_cache_secs = {} s)",
        ctx.settings.api.token_cache_secs
    );
    Ok(())
}
