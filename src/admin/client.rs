//! `blast client …`: one client at a time (bulk import is in `import`).

use super::{Context, Result, print_json};
use crate::domain::{
    InvalidInput, Phone, invalid, parse_attribute_name, parse_email, parse_operator_code,
    parse_tag, parse_tags, parse_timezone,
};
use crate::store::{Client, ClientPatch, ClientQuery, NewClient};
use blast_cli::{ClientFields, table};
use std::collections::BTreeMap;

fn parse_attributes(pairs: &[String]) -> Result<BTreeMap<String, String>, InvalidInput> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                invalid(format!("invalid attribute {pair:?}: expected KEY=VALUE"))
            })?;
            Ok((parse_attribute_name(k)?, v.to_owned()))
        })
        .collect()
}

fn new_client(fields: &ClientFields, tags: &[String]) -> Result<NewClient, InvalidInput> {
    let phone = fields
        .phone
        .as_deref()
        .ok_or_else(|| invalid("--phone is required"))?
        .parse::<Phone>()?;
    Ok(NewClient {
        phone: Some(phone),
        name: fields.name.clone().unwrap_or_default(),
        email: fields.email.as_deref().map(parse_email).transpose()?,
        telegram_chat_id: fields.telegram_chat_id,
        timezone: match &fields.timezone {
            Some(tz) => parse_timezone(tz)?,
            None => "UTC".to_owned(),
        },
        tags: parse_tags(tags)?,
        attributes: parse_attributes(&fields.attributes)?,
    })
}

fn print_clients(clients: &[Client]) {
    println!(
        "{}",
        table(
            &[
                "id",
                "phone",
                "op",
                "name",
                "email",
                "tz",
                "tags",
                "attributes"
            ],
            clients.iter().map(|c| {
                vec![
                    c.id.to_string(),
                    c.phone.clone().unwrap_or_else(|| "-".into()),
                    c.operator_code.clone(),
                    c.name.clone(),
                    c.email.clone().unwrap_or_default(),
                    c.timezone.clone(),
                    c.tags.join(","),
                    c.attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
        )
    );
}

pub async fn add(ctx: &Context, fields: &ClientFields, tags: &[String]) -> Result<()> {
    let client = new_client(fields, tags)?;
    let client = ctx.backend().await?.add_client(client).await?;
    println!(
        "client {} added (phone {}, operator {})",
        client.id,
        client.phone.as_deref().unwrap_or("-"),
        client.operator_code
    );
    Ok(())
}

pub async fn list(
    ctx: &Context,
    tag: Option<&str>,
    operator: Option<&str>,
    after: Option<i64>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let query = ClientQuery {
        tag: tag.map(parse_tag).transpose()?,
        operator_code: operator.map(parse_operator_code).transpose()?,
        after_id: after,
        limit,
        search: None,
    };
    let clients = ctx.backend().await?.list_clients(&query).await?;
    if json {
        print_json(&clients);
        return Ok(());
    }
    print_clients(&clients);
    if let Some(last) = clients.last().filter(|_| clients.len() == limit as usize) {
        eprintln!("more: --after {}", last.id);
    }
    Ok(())
}

pub async fn show(ctx: &Context, id: i64, json: bool) -> Result<()> {
    let client = ctx
        .backend()
        .await?
        .client(crate::ids::ClientId(id))
        .await?;
    if json {
        print_json(&client);
    } else {
        print_clients(&[client]);
    }
    Ok(())
}

/// Print an inbox token for a client's app (the token alone, or JSON with its expiry).
pub async fn inbox_token(ctx: &Context, id: i64, json: bool) -> Result<()> {
    let ttl = ctx.settings.inapp.token_ttl_secs;
    let token = ctx
        .backend()
        .await?
        .inbox_token(crate::ids::ClientId(id), ttl)
        .await?;
    if json {
        print_json(&token);
    } else {
        println!("{}", token.token);
    }
    Ok(())
}

pub async fn update(
    ctx: &Context,
    id: i64,
    fields: &ClientFields,
    add_tags: &[String],
    remove_tags: &[String],
    unset_attributes: &[String],
) -> Result<()> {
    let mut attributes: BTreeMap<String, Option<String>> = parse_attributes(&fields.attributes)?
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    for key in unset_attributes {
        attributes.insert(parse_attribute_name(key)?, None);
    }
    let patch = ClientPatch {
        phone: fields.phone.as_deref().map(str::parse).transpose()?,
        name: fields.name.clone(),
        email: fields
            .email
            .as_deref()
            .map(|e| parse_email(e).map(Some))
            .transpose()?,
        telegram_chat_id: fields.telegram_chat_id.map(Some),
        timezone: fields.timezone.as_deref().map(parse_timezone).transpose()?,
        tags: None,
        add_tags: parse_tags(add_tags)?,
        remove_tags: parse_tags(remove_tags)?,
        attributes,
    };
    let client = ctx
        .backend()
        .await?
        .update_client(crate::ids::ClientId(id), patch)
        .await?;
    print_clients(&[client]);
    Ok(())
}

pub async fn delete(ctx: &Context, id: i64) -> Result<()> {
    ctx.backend()
        .await?
        .delete_client(crate::ids::ClientId(id))
        .await?;
    println!("client {id} deleted");
    Ok(())
}
