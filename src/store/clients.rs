//! Clients (the recipients) of a tenant, their tags, and bulk import.

use super::{Result, Store, StoreError, is_unique_violation};
pub use crate::domain::Client;
use crate::domain::{Phone, invalid};
use crate::ids::{ClientId, TenantId};
use crate::now_ms;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, HashMap};

/// A client to create; every field is already validated by its type or by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewClient {
    pub phone: Option<Phone>,
    pub name: String,
    pub email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    pub timezone: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

/// Changes to a client; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientPatch {
    pub phone: Option<Phone>,
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub telegram_chat_id: Option<Option<i64>>,
    pub timezone: Option<String>,
    /// Replace all tags with these.
    pub tags: Option<Vec<String>>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    /// Set (Some) or remove (None) attributes.
    pub attributes: BTreeMap<String, Option<String>>,
}

/// The LIKE patterns of a client search: the text, lower case, anywhere (empty: no search);
/// and its digits anywhere in a phone (a pattern no phone matches when it has none).
fn search_patterns(search: &str) -> (String, String) {
    let search = search.trim().to_lowercase();
    if search.is_empty() {
        return (String::new(), String::new());
    }
    let escaped: String = search
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let digits: String = search.chars().filter(char::is_ascii_digit).collect();
    let phone_like = search
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
    let digits = if digits.is_empty() || !phone_like {
        // Phones are digits only: this matches none.
        "x".to_owned()
    } else {
        format!("%{digits}%")
    };
    (format!("%{escaped}%"), digits)
}

/// Filters and a keyset page for listing clients.
#[derive(Debug, Clone, Default)]
pub struct ClientQuery {
    pub tag: Option<String>,
    pub operator_code: Option<String>,
    /// Only clients whose phone, name or email contains this (letters in any case; a phone
    /// typed with spaces, dashes or a plus matches by its digits).
    pub search: Option<String>,
    /// Only clients with an id greater than this (the last id of the previous page).
    pub after_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub inserted: u64,
    pub updated: u64,
}

const CLIENT_COLUMNS: &str = "c.id, c.phone, c.operator_code, c.name, c.email, c.telegram_chat_id, c.timezone, c.attributes,
     (SELECT string_agg(t.name, ',') FROM client_tags ct JOIN tags t ON t.id = ct.tag_id WHERE ct.client_id = c.id)";

fn client_from_row(r: &AnyRow) -> Client {
    let tags: Option<String> = r.get(8);
    let mut tags: Vec<String> = tags
        .map(|t| t.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    tags.sort();
    let attributes: String = r.get(7);
    Client {
        id: r.get(0),
        phone: r.get(1),
        operator_code: r.get(2),
        name: r.get(3),
        email: r.get(4),
        telegram_chat_id: r.get(5),
        timezone: r.get(6),
        tags,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
    }
}

fn attributes_json(attributes: &BTreeMap<String, String>) -> String {
    serde_json::to_string(attributes).unwrap_or_else(|_| "{}".into())
}

/// Tag name → id for one tenant, creating tags on first use. Cached for bulk work.
#[derive(Default)]
pub(crate) struct TagIds(HashMap<String, i64>);

impl TagIds {
    pub(crate) async fn get(
        &mut self,
        tx: &mut Transaction<'static, Any>,
        tenant_id: TenantId,
        name: &str,
    ) -> Result<i64> {
        if let Some(id) = self.0.get(name) {
            return Ok(*id);
        }
        let id: i64 = sqlx::query(
            "INSERT INTO tags (tenant_id, name) VALUES ($1, $2)
             ON CONFLICT (tenant_id, name) DO UPDATE SET name = excluded.name RETURNING id",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_one(&mut **tx)
        .await?
        .get(0);
        self.0.insert(name.to_owned(), id);
        Ok(id)
    }
}

pub(super) async fn link_tags(
    tx: &mut Transaction<'static, Any>,
    tag_ids: &mut TagIds,
    tenant_id: TenantId,
    client_id: ClientId,
    tags: &[String],
) -> Result<()> {
    for tag in tags {
        let tag_id = tag_ids.get(tx, tenant_id, tag).await?;
        sqlx::query(
            "INSERT INTO client_tags (client_id, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(client_id)
        .bind(tag_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn count_clients<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    tenant_id: TenantId,
) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM clients WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(executor)
            .await?
            .get(0),
    )
}

fn duplicate_phone(phone: &Phone) -> StoreError {
    StoreError::Conflict(format!("a client with phone {phone} already exists"))
}

impl Store {
    pub async fn add_client(&self, tenant_id: TenantId, client: NewClient) -> Result<Client> {
        let phone = client
            .phone
            .clone()
            .ok_or_else(|| StoreError::Invalid(invalid("a client needs a phone")))?;
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO clients (tenant_id, phone, operator_code, name, email, telegram_chat_id,
                                  timezone, attributes, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(tenant_id)
        .bind(phone.as_str())
        .bind(phone.operator_code())
        .bind(&client.name)
        .bind(&client.email)
        .bind(client.telegram_chat_id)
        .bind(&client.timezone)
        .bind(attributes_json(&client.attributes))
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: ClientId = match inserted {
            Ok(row) => row.get(0),
            Err(e) if is_unique_violation(&e) => return Err(duplicate_phone(&phone)),
            Err(e) => return Err(e.into()),
        };
        link_tags(&mut tx, &mut TagIds::default(), tenant_id, id, &client.tags).await?;
        tx.commit().await?;
        self.client(tenant_id, id).await
    }

    pub async fn client(&self, tenant_id: TenantId, id: ClientId) -> Result<Client> {
        let sql =
            format!("SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.tenant_id = $1 AND c.id = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| client_from_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("client {id}")))
    }

    pub async fn list_clients(
        &self,
        tenant_id: TenantId,
        query: &ClientQuery,
    ) -> Result<Vec<Client>> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM clients c
             WHERE c.tenant_id = $1
               AND c.id > $2
               AND ($3 IS NULL OR c.operator_code = $3)
               AND ($4 IS NULL OR EXISTS (SELECT 1 FROM client_tags ct JOIN tags t ON t.id = ct.tag_id
                                          WHERE ct.client_id = c.id AND t.name = $4))
               AND ($6 = '' OR c.phone LIKE $7 ESCAPE '\\' OR lower(c.name) LIKE $6 ESCAPE '\\'
                    OR lower(COALESCE(c.email, '')) LIKE $6 ESCAPE '\\')
             ORDER BY c.id LIMIT $5"
        );
        let (text, digits) = search_patterns(query.search.as_deref().unwrap_or_default());
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(query.after_id.unwrap_or(0))
            .bind(&query.operator_code)
            .bind(&query.tag)
            .bind(i64::from(query.limit))
            .bind(text)
            .bind(digits)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(client_from_row).collect())
    }

    pub async fn count_clients(&self, tenant_id: TenantId) -> Result<i64> {
        count_clients(&self.pool, tenant_id).await
    }

    pub async fn update_client(
        &self,
        tenant_id: TenantId,
        id: ClientId,
        patch: ClientPatch,
    ) -> Result<Client> {
        let current = self.client(tenant_id, id).await?;
        let mut attributes = current.attributes.clone();
        for (key, value) in patch.attributes {
            match value {
                Some(v) => attributes.insert(key, v),
                None => attributes.remove(&key),
            };
        }
        let phone: Option<Phone> = match patch.phone {
            Some(p) => Some(p),
            None => current.phone.as_deref().map(str::parse).transpose()?,
        };
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE clients SET phone = $1, operator_code = $2, name = $3, email = $4, telegram_chat_id = $5,
                                timezone = $6, attributes = $7, updated_at = $8
             WHERE tenant_id = $9 AND id = $10",
        )
        .bind(phone.as_ref().map(Phone::as_str))
        .bind(phone.as_ref().map_or("", Phone::operator_code))
        .bind(patch.name.unwrap_or(current.name))
        .bind(patch.email.unwrap_or(current.email))
        .bind(patch.telegram_chat_id.unwrap_or(current.telegram_chat_id))
        .bind(patch.timezone.unwrap_or(current.timezone))
        .bind(attributes_json(&attributes))
        .bind(now_ms())
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *tx)
        .await;
        match updated {
            Err(e) if is_unique_violation(&e) => {
                return Err(phone.as_ref().map_or_else(|| e.into(), duplicate_phone));
            }
            other => {
                other?;
            }
        }
        if patch.tags.is_some() || !patch.remove_tags.is_empty() {
            let mut keep: Vec<String> = patch.tags.unwrap_or(current.tags);
            keep.retain(|t| !patch.remove_tags.contains(t));
            sqlx::query("DELETE FROM client_tags WHERE client_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            keep.extend(patch.add_tags);
            link_tags(&mut tx, &mut TagIds::default(), tenant_id, id, &keep).await?;
        } else {
            link_tags(
                &mut tx,
                &mut TagIds::default(),
                tenant_id,
                id,
                &patch.add_tags,
            )
            .await?;
        }
        tx.commit().await?;
        self.client(tenant_id, id).await
    }

    /// Opt a client out of email (its unsubscribe link). False when there is no such client.
    pub async fn opt_out_of_email(&self, client_id: ClientId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE clients SET email_opted_out_at = COALESCE(email_opted_out_at, $1), updated_at = $1
             WHERE id = $2",
        )
        .bind(now_ms())
        .bind(client_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Delete a client with its message rows and tag links. They go by hand: PostgreSQL keeps
    /// no foreign key on them (see migrations/postgres/0005 and 0014). The client goes first:
    /// its row lock waits for an import that holds it, and the links deleted afterwards then
    /// include that import's.
    pub async fn delete_client(&self, tenant_id: TenantId, id: ClientId) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM clients WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("client {id}")));
        }
        for dependent in [
            "DELETE FROM messages WHERE client_id = $1",
            "DELETE FROM client_tags WHERE client_id = $1",
        ] {
            sqlx::query(dependent).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
