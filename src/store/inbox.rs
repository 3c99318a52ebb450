//! In-app inboxes: the items the `inapp` channel stored for each client, and what the user did
//! with them (acknowledged by an app, read, archived).
//!
//! An item is `sent` when stored, `delivered` once an app's socket acknowledged it and `read`
//! once marked read; the first two moves forward are reported to the tenant's webhooks in the
//! transaction that makes them (`{"type": "inbox", "state": "delivered" | "read", …}`).

use super::webhooks::enqueue_inbox_event;
use super::{Result, Store, StoreError};
use crate::channels::inapp::NewItem;
use crate::ids::{ClientId, MailingId, MessageId, TenantId};
use crate::now_ms;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Item ids one mark may name (an acknowledgement over REST or one socket frame): each is a
/// parameter of one statement.
pub const MAX_INBOX_IDS: usize = 100;

/// One item of a client's inbox, as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxItem {
    /// Rising: an app that saw item N catches up with the items after N.
    pub id: i64,
    pub mailing_id: MailingId,
    pub message_id: MessageId,
    pub title: Option<String>,
    pub text: String,
    pub created_at: i64,
    /// sent, delivered (an app acknowledged it) or read
    pub state: String,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
}

/// A stored item and whose inbox it is in: what goes to the sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxNotice {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub item: InboxItem,
}

/// What the user (or the app) does to items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxMark {
    /// An app's socket received it.
    Delivered,
    Read,
    Unread,
    /// Out of the list and the unread count for good.
    Archived,
}

/// Where a page of a client's inbox starts: unread items come first, newest first, then read
/// ones, newest first. Written `u<id>` or `r<id>` (the last item of the page before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCursor {
    pub read: bool,
    pub before: i64,
}

impl InboxCursor {
    pub fn parse(text: &str) -> Option<InboxCursor> {
        let (read, id) = match text.split_at_checked(1)? {
            ("u", id) => (false, id),
            ("r", id) => (true, id),
            _ => return None,
        };
        Some(InboxCursor {
            read,
            before: id.parse().ok()?,
        })
    }

    fn after(item: &InboxItem) -> String {
        let kind = if item.read_at.is_some() { 'r' } else { 'u' };
        format!("{kind}{}", item.id)
    }
}

/// The first key of the advisory locks that order one client's inbox writes (PostgreSQL).
const INBOX_LOCK_CLASS: i32 = 0x1b0c;

const COLUMNS: &str = "id, mailing_id, message_id, title, text, created_at, delivered_at, read_at";

fn item_from_row(row: &AnyRow) -> std::result::Result<InboxItem, sqlx::Error> {
    let delivered_at: Option<i64> = row.try_get("delivered_at")?;
    let read_at: Option<i64> = row.try_get("read_at")?;
    let state = match (read_at, delivered_at) {
        (Some(_), _) => "read",
        (None, Some(_)) => "delivered",
        (None, None) => "sent",
    };
    Ok(InboxItem {
        id: row.try_get("id")?,
        mailing_id: MailingId(row.try_get("mailing_id")?),
        message_id: MessageId(row.try_get("message_id")?),
        title: row.try_get("title")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
        state: state.into(),
        delivered_at,
        read_at,
    })
}

impl Store {
    /// Store an item, once per message: a repeated send finds it stored and gets None (its
    /// sockets were told the first time); a client deleted since is `NotFound`. Tells this
    /// process's listeners ([`Store::inbox_items_stored`]) after the commit.
    pub async fn put_inbox_item(&self, new: NewItem<'_>) -> Result<Option<InboxNotice>> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        // A client's items become visible in the order of their ids, so "the items after N"
        // misses none: PostgreSQL hands out ids as rows are written, not as they commit, so
        // the writers of one client's items take turns (SQLite has one writer anyway). The
        // lock's key is the client id folded into 32 bits: clients that share it only wait.
        if self.dialect == super::Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(INBOX_LOCK_CLASS)
                .bind((new.client_id.0 & 0x7fff_ffff) as i32)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "INSERT INTO inbox_items (tenant_id, client_id, message_id, mailing_id, title, text, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM clients WHERE id = $2)
             ON CONFLICT (message_id) DO NOTHING
             RETURNING id",
        )
        .bind(new.tenant_id)
        .bind(new.client_id)
        .bind(new.message_id)
        .bind(new.mailing_id)
        .bind(new.title)
        .bind(new.text)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let client = sqlx::query("SELECT 1 AS one FROM clients WHERE id = $1")
                .bind(new.client_id)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            return match client {
                Some(_) => Ok(None),
                None => Err(StoreError::NotFound(format!("client {}", new.client_id))),
            };
        };
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        let notice = InboxNotice {
            tenant_id: new.tenant_id,
            client_id: new.client_id,
            item: InboxItem {
                id,
                mailing_id: new.mailing_id,
                message_id: new.message_id,
                title: new.title.map(str::to_owned),
                text: new.text.to_owned(),
                created_at: now,
                state: "sent".into(),
                delivered_at: None,
                read_at: None,
            },
        };
        // No listener (a worker alone, or the sockets listen on Redis) is no error.
        let _ = self.inbox.send(notice.clone());
        Ok(Some(notice))
    }

    /// Items stored through this store, in this process, as they are stored.
    pub fn inbox_items_stored(&self) -> tokio::sync::broadcast::Receiver<InboxNotice> {
        self.inbox.subscribe()
    }

    /// One page of a client's inbox (archived items left out): unread first, newest first;
    /// with the cursor of the next page when there is one.
    pub async fn inbox_items(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
        from: Option<InboxCursor>,
        limit: u32,
    ) -> Result<(Vec<InboxItem>, Option<String>)> {
        let (read_from, before) = match from {
            None => (0, i64::MAX),
            Some(cursor) => (i64::from(cursor.read), cursor.before),
        };
        // The key (read?, -id) walked from the cursor on: the rest of its part, then (for an
        // unread cursor) all of the read part.
        let sql = format!(
            "SELECT {COLUMNS} FROM inbox_items
             WHERE tenant_id = $1 AND client_id = $2 AND archived_at IS NULL
               AND ((CASE WHEN read_at IS NULL THEN 0 ELSE 1 END) > $3
                    OR ((CASE WHEN read_at IS NULL THEN 0 ELSE 1 END) = $3 AND id < $4))
             ORDER BY CASE WHEN read_at IS NULL THEN 0 ELSE 1 END, id DESC
             LIMIT $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(client_id)
            .bind(read_from)
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = more.then(|| items.last().map(InboxCursor::after)).flatten();
        Ok((items, next))
    }

    /// A client's items after `after_id`, oldest first, at most `limit` (archived left out):
    /// what an app that saw item `after_id` missed (a client's items become visible in the
    /// order of their ids: see [`Store::put_inbox_item`]).
    pub async fn inbox_items_after(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<InboxItem>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM inbox_items
             WHERE tenant_id = $1 AND client_id = $2 AND archived_at IS NULL AND id > $3
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(client_id)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(item_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// When `tenant_id`'s client `client_id` was made (ms); None when there is no such client.
    /// Inbox tokens are bound to it, so a deleted client's token opens no other.
    pub async fn client_created_at(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
    ) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT created_at FROM clients WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("created_at")).transpose()?)
    }

    /// The id of a client's newest item (archived or not); 0 for an empty inbox.
    pub async fn inbox_newest_id(&self, tenant_id: TenantId, client_id: ClientId) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(id), 0) AS id FROM inbox_items WHERE tenant_id = $1 AND client_id = $2",
        )
        .bind(tenant_id)
        .bind(client_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// How many of a client's items are unread (archived left out).
    pub async fn inbox_unread(&self, tenant_id: TenantId, client_id: ClientId) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM inbox_items
             WHERE tenant_id = $1 AND client_id = $2 AND read_at IS NULL AND archived_at IS NULL",
        )
        .bind(tenant_id)
        .bind(client_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Mark items of a client (`ids`, 1 to [`MAX_INBOX_IDS`] of them; None: every unarchived
    /// item) and report the moves to `delivered` and `read` to the tenant's webhooks. Returns
    /// how many items changed; an id that is not this client's is a `NotFound` when only one
    /// was named.
    pub async fn mark_inbox(
        &self,
        tenant_id: TenantId,
        client_id: ClientId,
        ids: Option<&[i64]>,
        mark: InboxMark,
    ) -> Result<u64> {
        if let Some(ids) = ids
            && (ids.is_empty() || ids.len() > MAX_INBOX_IDS)
        {
            return Err(StoreError::Invalid(crate::domain::invalid(format!(
                "name 1 to {MAX_INBOX_IDS} item ids"
            ))));
        }
        let now = now_ms();
        // Each mark sets its column where the item has not moved that far yet.
        let (set, unchanged) = match mark {
            InboxMark::Delivered => ("delivered_at = $3", "delivered_at IS NULL"),
            InboxMark::Read => (
                "read_at = $3, delivered_at = COALESCE(delivered_at, $3)",
                "read_at IS NULL",
            ),
            InboxMark::Unread => (
                "read_at = NULL, delivered_at = COALESCE(delivered_at, $3)",
                "read_at IS NOT NULL",
            ),
            InboxMark::Archived => ("archived_at = $3", "archived_at IS NULL"),
        };
        let base = format!(
            "UPDATE inbox_items SET {set}
             WHERE tenant_id = $1 AND client_id = $2 AND archived_at IS NULL AND {unchanged}"
        );
        let mut tx = self.write_tx().await?;
        let mut changed = Vec::new();
        let mut run = |rows: Vec<AnyRow>| -> Result<()> {
            for row in rows {
                changed.push((
                    MailingId(row.try_get("mailing_id")?),
                    row.try_get::<i64, _>("id")?,
                    MessageId(row.try_get("message_id")?),
                ));
            }
            Ok(())
        };
        match ids {
            None => {
                let sql = format!("{base} RETURNING id, mailing_id, message_id");
                run(sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(client_id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?)?;
            }
            Some(ids) => {
                // One statement, the ids in order: two marks of the same items never wait
                // for each other's rows crosswise.
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                if !ids.is_empty() {
                    let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 4)).collect();
                    let sql = format!(
                        "{base} AND id IN ({}) RETURNING id, mailing_id, message_id",
                        list.join(", ")
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant_id)
                        .bind(client_id)
                        .bind(now);
                    for id in &ids {
                        query = query.bind(*id);
                    }
                    run(query.fetch_all(&mut *tx).await?)?;
                }
            }
        }
        if let (Some(&[id]), true) = (ids, changed.is_empty()) {
            let found = sqlx::query(
                "SELECT 1 AS one FROM inbox_items WHERE id = $1 AND tenant_id = $2 AND client_id = $3 AND archived_at IS NULL",
            )
            .bind(id)
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("inbox item {id}")));
            }
        }
        let reported = match mark {
            InboxMark::Delivered => Some("delivered"),
            InboxMark::Read => Some("read"),
            InboxMark::Unread | InboxMark::Archived => None,
        };
        if let Some(state) = reported {
            changed.sort();
            for group in changed.chunk_by(|a, b| a.0 == b.0) {
                let items: Vec<(i64, MessageId)> = group
                    .iter()
                    .map(|(_, id, message)| (*id, *message))
                    .collect();
                enqueue_inbox_event(&mut tx, group[0].0, client_id, state, &items, now).await?;
            }
        }
        tx.commit().await?;
        Ok(changed.len() as u64)
    }
}
