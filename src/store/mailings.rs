//! Mailings: their rows (stored once `app::mailings` checked them), listing, cancellation,
//! statistics, and the scheduler's transitions (materializing the message rows at start,
//! finishing at the end).

use super::{Dialect, Result, Store, StoreError, parse_priority};
use crate::domain::{
    AudienceFilter, ChannelKind, LocalHours, MailingState, MessageState, Priority, invalid,
};
use crate::ids::{ClientId, MailingId, MessageId, TenantId};
use crate::now_ms;
use crate::telegram::{MediaSource, TelegramContent};
use crate::template::{MessageTemplate, TextLimits};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct NewMailing {
    pub channel: ChannelKind,
    pub text: String,
    pub filter: AudienceFilter,
    pub priority: Priority,
    pub start_at: i64,
    pub end_at: i64,
    /// Hours of each recipient's own day when its message may go out.
    pub local_hours: Option<LocalHours>,
    /// The subject template of an email mailing (required there, refused elsewhere).
    pub subject: Option<String>,
    /// The HTML body template of an email mailing, sent beside the text.
    pub html: Option<String>,
    /// What a Telegram mailing sends (absent: a plain text message).
    pub telegram: Option<TelegramContent>,
    /// Files to store with a Telegram mailing and send as its media. Until stored, the
    /// content names the n-th of them as `MediaSource::Upload(-n)` (see
    /// [`MediaSource::pending_upload`]); a single medium given only as a file may leave
    /// `media` empty.
    pub uploads: Vec<MediaUpload>,
}

impl NewMailing {
    /// A mailing of `text` on `channel` to every reachable client of the tenant, between
    /// `start_at` and `end_at` (unix ms), at medium priority and with nothing more: the other
    /// fields are set with struct update syntax (`NewMailing { priority, ..NewMailing::new(…) }`).
    pub fn new(
        channel: ChannelKind,
        text: impl Into<String>,
        start_at: i64,
        end_at: i64,
    ) -> NewMailing {
        NewMailing {
            channel,
            text: text.into(),
            filter: AudienceFilter::default(),
            priority: Priority::Medium,
            start_at,
            end_at,
            local_hours: None,
            subject: None,
            html: None,
            telegram: None,
            uploads: Vec::new(),
        }
    }
}

/// A media file given with a mailing, to be uploaded to Telegram by the first send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUpload {
    pub file_name: String,
    pub content: Vec<u8>,
}

impl MediaUpload {
    /// Add this file to a new mailing's `uploads` and return how its content names it.
    pub fn append_to(self, uploads: &mut Vec<MediaUpload>) -> MediaSource {
        uploads.push(self);
        MediaSource::pending_upload(uploads.len() - 1)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Mailing {
    pub id: MailingId,
    pub tenant_id: TenantId,
    pub channel: ChannelKind,
    pub text: String,
    pub filter: AudienceFilter,
    /// high, medium or low
    #[schema(value_type = String)]
    pub priority: Priority,
    pub start_at: i64,
    pub end_at: i64,
    /// "09:00-21:00" in each recipient's time zone; absent: any time.
    #[schema(value_type = Option<String>)]
    pub local_hours: Option<LocalHours>,
    /// Email only: the subject template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Email only: the HTML body template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Telegram only: the kind of message, its media and options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramContent>,
    /// Set on a notification's try on one channel: its texts are the notification's own,
    /// not templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<i64>,
    pub state: MailingState,
    pub recipients: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// How many messages are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(value_type = BTreeMap<String, i64>)]
pub struct StateCounts(pub BTreeMap<MessageState, i64>);

impl StateCounts {
    pub fn get(&self, state: MessageState) -> i64 {
        self.0.get(&state).copied().unwrap_or(0)
    }
    pub fn total(&self) -> i64 {
        self.0.values().sum()
    }
    /// Messages in a final state.
    pub fn finished(&self) -> i64 {
        self.0
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MailingStats {
    pub mailing_id: MailingId,
    pub channel: String,
    pub state: MailingState,
    pub counts: StateCounts,
}

const MAILING_COLUMNS: &str = "id, tenant_id, channel, text, filter, priority, start_at, end_at, state, recipients, created_at, started_at, finished_at, local_hours, subject, html, telegram, notification_id";

fn mailing_from_row(r: &AnyRow) -> Result<Mailing> {
    let filter: String = r.get(4);
    Ok(Mailing {
        id: r.get(0),
        tenant_id: r.get(1),
        channel: r.get::<String, _>(2).parse()?,
        text: r.get(3),
        filter: serde_json::from_str(&filter).unwrap_or_default(),
        priority: parse_priority(r.get(5))?,
        start_at: r.get(6),
        end_at: r.get(7),
        state: r.get::<String, _>(8).parse()?,
        recipients: r.get(9),
        created_at: r.get(10),
        started_at: r.get(11),
        finished_at: r.get(12),
        local_hours: r
            .get::<Option<String>, _>(13)
            .map(|h| h.parse())
            .transpose()?,
        subject: r.get(14),
        html: r.get(15),
        telegram: r
            .get::<Option<String>, _>(16)
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::Invalid(invalid(format!("stored Telegram content: {e}"))))?,
        notification_id: r.get(17),
    })
}

fn counts_from_rows(rows: &[AnyRow]) -> Result<StateCounts> {
    let mut counts = StateCounts::default();
    for r in rows {
        let state: MessageState = r.get::<String, _>(0).parse()?;
        counts.0.insert(state, r.get(1));
    }
    Ok(counts)
}

/// Who can be reached on `channel`, as a condition over `clients c`: each channel says
/// ([`crate::channels::audience`]); the one definition behind a mailing's audience and a
/// notification's choice of channel.
pub(super) fn reachable_on(channel: ChannelKind) -> &'static str {
    crate::channels::audience(channel)
}

/// The clients of a tenant that an audience filter selects on `channel`, as a WHERE clause
/// over `clients c`. Parameters: $1 tenant id, $2 operator codes and $3 tags, both JSON arrays
/// (see [`audience_params`]); an empty array does not filter. Only clients [`reachable_on`]
/// the channel. Shared by materialization and preview, so a preview counts exactly whom a
/// start reaches.
fn audience_where(dialect: Dialect, channel: ChannelKind) -> String {
    format!(
        "{reachable} AND c.tenant_id = $1
         AND ({codes_len} = 0 OR c.operator_code IN ({codes}))
         AND ({tags_len} = 0
              OR EXISTS (SELECT 1 FROM client_tags ct JOIN tags t ON t.id = ct.tag_id
                         WHERE ct.client_id = c.id AND t.tenant_id = $1
                           AND t.name IN ({tags})))",
        codes_len = dialect.json_len("$2"),
        codes = dialect.json_texts("$2"),
        tags_len = dialect.json_len("$3"),
        tags = dialect.json_texts("$3"),
        reachable = reachable_on(channel),
    )
}

/// The $2 and $3 parameters of [`audience_where`].
fn audience_params(filter: &AudienceFilter) -> (String, String) {
    let json = |list: &[String]| serde_json::to_string(list).unwrap_or_else(|_| "[]".into());
    (json(&filter.operator_codes), json(&filter.tags))
}

/// The stored media files (uploads) a mailing's content uses.
fn stored_media(content: Option<&TelegramContent>) -> Vec<i64> {
    content
        .map(|content| {
            content
                .sources()
                .filter_map(|source| match source {
                    MediaSource::Upload(id) if *id > 0 => Some(*id),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Delete `tenant_id`'s media files `ids` (their file_ids go with them), except those another
/// of its mailings than `mailing_id` still uses (a mailing may name a stored file).
async fn delete_media(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: TenantId,
    mailing_id: MailingId,
    ids: &[i64],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let others: Vec<String> = sqlx::query(
        "SELECT telegram FROM mailings WHERE tenant_id = $1 AND id <> $2 AND telegram IS NOT NULL",
    )
    .bind(tenant_id)
    .bind(mailing_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let in_use: Vec<i64> = others
        .iter()
        .filter_map(|json| serde_json::from_str::<TelegramContent>(json).ok())
        .flat_map(|content| stored_media(Some(&content)))
        .collect();
    for id in ids.iter().filter(|id| !in_use.contains(id)) {
        sqlx::query("DELETE FROM media_files WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Store the mailing's files in `tx`, point its media at them, and return the Telegram
/// content as the JSON the mailings row keeps. The tenant's files together stay within
/// `quota_bytes`.
async fn store_telegram(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: TenantId,
    new: &mut NewMailing,
    quota_bytes: u64,
) -> Result<Option<String>> {
    if !new.uploads.is_empty() {
        // Two mailings with media at once must not both fit in what is left of the quota.
        super::lock_tenant(tx, tenant_id).await?;
        let used: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(LENGTH(content)), 0) AS BIGINT) FROM media_files WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_one(&mut **tx)
        .await?
        .get(0);
        let incoming: u64 = new.uploads.iter().map(|u| u.content.len() as u64).sum();
        if u64::try_from(used).unwrap_or(0).saturating_add(incoming) > quota_bytes {
            return Err(invalid(format!(
                "the tenant's media files would take more than its quota of {quota_bytes} bytes (telegram.media_quota_bytes); delete finished mailings with media first"
            ))
            .into());
        }
    }
    let mut stored = Vec::with_capacity(new.uploads.len());
    for upload in std::mem::take(&mut new.uploads) {
        let media_id: i64 = sqlx::query(
            "INSERT INTO media_files (tenant_id, file_name, content, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(tenant_id)
        .bind(upload.file_name)
        .bind(upload.content)
        .bind(now_ms())
        .fetch_one(&mut **tx)
        .await?
        .get(0);
        stored.push(media_id);
    }
    if let Some(content) = &mut new.telegram {
        for source in content.sources_mut() {
            if let Some(index) = source.pending_index() {
                let media_id = stored
                    .get(index)
                    .copied()
                    .ok_or_else(|| invalid(format!("media file {} was not given", index + 1)))?;
                *source = MediaSource::Upload(media_id);
            }
        }
    }
    new.telegram
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Invalid(invalid(e.to_string())))
}

/// Which mailings a list shows: those in one state, on one channel, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailingFilter {
    pub state: Option<MailingState>,
    pub channel: Option<ChannelKind>,
}

/// A mailing the scheduler has just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub mailing_id: MailingId,
    pub recipients: i64,
}

impl Store {
    /// Store a new mailing that the use case (`app/mailings.rs`) checked. It starts by itself
    /// at `start_at`.
    pub(crate) async fn insert_mailing(
        &self,
        tenant_id: TenantId,
        new: NewMailing,
    ) -> Result<Mailing> {
        let mut new = new;
        let mut tx = self.write_tx().await?;
        let telegram = store_telegram(&mut tx, tenant_id, &mut new, self.media_quota_bytes).await?;
        let id: MailingId = sqlx::query(
            "INSERT INTO mailings (tenant_id, channel, text, filter, priority, start_at, end_at, local_hours, state, created_at, subject, html, telegram)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'scheduled', $9, $10, $11, $12) RETURNING id",
        )
        .bind(tenant_id)
        .bind(new.channel.as_str())
        .bind(&new.text)
        .bind(serde_json::to_string(&new.filter).unwrap_or_else(|_| "{}".into()))
        .bind(new.priority.as_str())
        .bind(new.start_at)
        .bind(new.end_at)
        .bind(new.local_hours.map(|h| h.to_string()))
        .bind(now_ms())
        .bind(&new.subject)
        .bind(&new.html)
        .bind(telegram)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        self.mailing(tenant_id, id).await
    }

    /// Which of `tags` no client of the tenant has.
    pub async fn unknown_tags(&self, tenant_id: TenantId, tags: &[String]) -> Result<Vec<String>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let known: Vec<String> = sqlx::query("SELECT name FROM tags WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(tags
            .iter()
            .filter(|t| !known.contains(t))
            .cloned()
            .collect())
    }

    /// Which of the attributes `names` no client of the audience has.
    pub async fn attributes_missing_in_audience(
        &self,
        tenant_id: TenantId,
        filter: &AudienceFilter,
        channel: ChannelKind,
        names: &[String],
    ) -> Result<Vec<String>> {
        let (operator_codes, tags) = audience_params(filter);
        let audience = audience_where(self.dialect, channel);
        let sql = format!(
            "SELECT c.id FROM clients c WHERE {audience} AND {} LIMIT 1",
            self.dialect.json_has_key("c.attributes", "$4")
        );
        let mut missing = Vec::new();
        for name in names {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id)
                .bind(&operator_codes)
                .bind(&tags)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            if found.is_none() {
                missing.push(name.clone());
            }
        }
        Ok(missing)
    }

    pub async fn mailing(&self, tenant_id: TenantId, id: MailingId) -> Result<Mailing> {
        let sql =
            // A notification's try is the notification's to manage, not a mailing to edit.
            format!("SELECT {MAILING_COLUMNS} FROM mailings WHERE tenant_id = $1 AND id = $2 AND notification_id IS NULL");
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(r) => mailing_from_row(&r),
            None => Err(StoreError::NotFound(format!("mailing {id}"))),
        }
    }

    /// A mailing by id whoever owns it: for the worker, never for a tenant's request.
    pub async fn mailing_any_tenant(&self, id: MailingId) -> Result<Mailing> {
        let sql = format!("SELECT {MAILING_COLUMNS} FROM mailings WHERE id = $1");
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(r) => mailing_from_row(&r),
            None => Err(StoreError::NotFound(format!("mailing {id}"))),
        }
    }

    /// Mailings newest first, `limit` of them, older than `before_id` when given.
    pub async fn list_mailings(
        &self,
        tenant_id: TenantId,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Mailing>> {
        self.find_mailings(tenant_id, MailingFilter::default(), before_id, limit)
            .await
    }

    /// Mailings in `filter`'s state and on its channel (each when given), newest first, `limit`
    /// of them, older than `before_id` when given.
    pub async fn find_mailings(
        &self,
        tenant_id: TenantId,
        filter: MailingFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Mailing>> {
        let sql = format!(
            "SELECT {MAILING_COLUMNS} FROM mailings
             WHERE tenant_id = $1 AND id < $2 AND notification_id IS NULL
               AND ($4 = '' OR state = $4) AND ($5 = '' OR channel = $5)
             ORDER BY id DESC LIMIT $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .bind(filter.state.map_or("", |s| s.as_str()))
            .bind(filter.channel.map_or("", |c| c.as_str()))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(mailing_from_row)
            .collect()
    }

    /// The tenant's scheduled, running and paused mailings, newest first, `limit` of them.
    pub async fn active_mailings(&self, tenant_id: TenantId, limit: u32) -> Result<Vec<Mailing>> {
        let sql = format!(
            "SELECT {MAILING_COLUMNS} FROM mailings
             WHERE tenant_id = $1 AND notification_id IS NULL
               AND state IN ('scheduled', 'running', 'paused')
             ORDER BY id DESC LIMIT $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(mailing_from_row)
            .collect()
    }

    pub async fn mailing_counts(&self, mailing_id: MailingId) -> Result<StateCounts> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM messages WHERE mailing_id = $1 GROUP BY state",
        )
        .bind(mailing_id)
        .fetch_all(&self.pool)
        .await?;
        counts_from_rows(&rows)
    }

    /// Cancel a mailing: nothing more of it is sent. Messages already sent stay sent.
    pub async fn cancel_mailing(&self, tenant_id: TenantId, id: MailingId) -> Result<Mailing> {
        let mailing = self.mailing(tenant_id, id).await?;
        if matches!(mailing.state, MailingState::Done | MailingState::Cancelled) {
            return Err(StoreError::Conflict(format!(
                "mailing {id} is already {}",
                mailing.state
            )));
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let cancelled = sqlx::query(
            "UPDATE mailings SET state = 'cancelled', finished_at = $1 WHERE id = $2 AND state IN ('scheduled', 'running', 'paused') AND notification_id IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if cancelled.rows_affected() == 0 {
            // It finished between the check above and this transaction.
            return Err(StoreError::Conflict(format!(
                "mailing {id} has already finished"
            )));
        }
        super::webhooks::enqueue_mailing_event(&mut tx, id, "cancelled", now).await?;
        tx.commit().await?;
        self.announce_halt();
        self.settle_cancelled_rows(id, now).await;
        self.mailing(tenant_id, id).await
    }

    /// Settle the open rows of a mailing just cancelled, apart from the cancel itself. Workers
    /// claim and flush rows of the same mailing at the same moment; on PostgreSQL one UPDATE
    /// over all of them deadlocked with those (seen at 3,000 messages/s), so rows are taken in
    /// id order, in chunks, skipping any a worker holds locked right now (its batch sees the
    /// cancel and writes `cancelled` itself). Whatever this leaves, the reconciler settles at
    /// its next pass. Rows a worker holds in `sending` are that worker's to settle: it checks
    /// for cancellation before every send.
    async fn settle_cancelled_rows(&self, mailing_id: MailingId, now: i64) {
        const CHUNK: u64 = 10_000;
        let sql = format!(
            "UPDATE messages SET state = 'cancelled', claim = NULL, updated_at = $1
             WHERE id IN (SELECT id FROM messages
                          WHERE mailing_id = $2 AND state IN ('pending', 'queued', 'failed_temporary')
                          ORDER BY id LIMIT {CHUNK} {})",
            self.dialect.skip_locked()
        );
        loop {
            match sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(now)
                .bind(mailing_id)
                .execute(&self.pool)
                .await
            {
                // A short chunk: no open row is left that nobody holds.
                Ok(done) if done.rows_affected() < CHUNK => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, mailing = mailing_id.0, "cannot settle a cancelled mailing's rows now; the reconciler will");
                    return;
                }
            }
        }
    }

    /// Per-mailing counts by state. With `day` (a UTC range in ms), only messages whose state
    /// last changed inside it.
    pub async fn stats(
        &self,
        tenant_id: TenantId,
        day: Option<(i64, i64)>,
    ) -> Result<Vec<MailingStats>> {
        let (from, to) = day.unwrap_or((i64::MIN, i64::MAX));
        let rows = sqlx::query(
            "SELECT m.id, m.channel, m.state, s.state, COUNT(*)
             FROM messages s JOIN mailings m ON m.id = s.mailing_id
             WHERE m.tenant_id = $1 AND s.updated_at >= $2 AND s.updated_at < $3
             GROUP BY m.id, s.state ORDER BY m.id",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<MailingStats> = Vec::new();
        for r in rows {
            let id: MailingId = r.get(0);
            let state: MessageState = r.get::<String, _>(3).parse()?;
            if out.last().is_none_or(|s| s.mailing_id != id) {
                out.push(MailingStats {
                    mailing_id: id,
                    channel: r.get(1),
                    state: r.get::<String, _>(2).parse()?,
                    counts: StateCounts::default(),
                });
            }
            if let Some(last) = out.last_mut() {
                last.counts.0.insert(state, r.get(4));
            }
        }
        Ok(out)
    }

    /// Start every scheduled mailing whose start time has come: materialize one message row per
    /// matching client in one statement, and mark the mailing running.
    pub async fn start_due_mailings(&self, now: i64) -> Result<Vec<Started>> {
        let due: Vec<(MailingId, TenantId, String, String)> = sqlx::query(
            "SELECT id, tenant_id, filter, channel FROM mailings WHERE state = 'scheduled' AND start_at <= $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
        let mut started = Vec::new();
        for (mailing_id, tenant_id, filter, channel) in due {
            let channel: ChannelKind = channel.parse()?;
            let filter: AudienceFilter = serde_json::from_str(&filter).unwrap_or_default();
            let mut tx = self.write_tx().await?;
            // Claim the start first: a cancel that committed since the SELECT above wins, and
            // then no rows are made for the cancelled mailing.
            let claimed = sqlx::query(
                "UPDATE mailings SET state = 'running', started_at = $1
                 WHERE id = $2 AND state = 'scheduled' RETURNING id",
            )
            .bind(now)
            .bind(mailing_id)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_none() {
                continue;
            }
            super::webhooks::enqueue_mailing_event(&mut tx, mailing_id, "running", now).await?;
            let (operator_codes, tags) = audience_params(&filter);
            // No ON CONFLICT: the mailing was `scheduled` until the claim above, in this same
            // transaction, so it has no rows yet; a plain insert is markedly cheaper per row
            // on PostgreSQL than a speculative one, and a million rows make that count.
            let sql = format!(
                "INSERT INTO messages (mailing_id, client_id, state, next_attempt_at, updated_at)
                 SELECT $4, c.id, 'pending', $5, $5 FROM clients c WHERE {}",
                audience_where(self.dialect, channel)
            );
            let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant_id)
                .bind(operator_codes)
                .bind(tags)
                .bind(mailing_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // The insert's own count: counting the rows again read a million index entries.
            let recipients = i64::try_from(inserted).unwrap_or(i64::MAX);
            sqlx::query("UPDATE mailings SET recipients = $1 WHERE id = $2")
                .bind(recipients)
                .bind(mailing_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            started.push(Started {
                mailing_id,
                recipients,
            });
        }
        Ok(started)
    }

    /// Expire what is left of running mailings whose window has closed, and mark done every
    /// running mailing with no message left to send. Returns the ids of mailings finished now.
    pub async fn finish_mailings(&self, now: i64) -> Result<Vec<i64>> {
        let closed: Vec<i64> = sqlx::query(
            "SELECT id FROM mailings WHERE state IN ('running', 'paused') AND end_at <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut tx = self.write_tx().await?;
        for mailing_id in closed {
            sqlx::query(
                "UPDATE messages SET state = 'expired', claim = NULL, updated_at = $1
                 WHERE mailing_id = $2 AND state IN ('pending', 'queued', 'failed_temporary')",
            )
            .bind(now)
            .bind(mailing_id)
            .execute(&mut *tx)
            .await?;
        }
        let finished: Vec<i64> = sqlx::query(
            "UPDATE mailings SET state = 'done', finished_at = $1
             WHERE (state = 'running' OR (state = 'paused' AND end_at <= $1))
               AND NOT EXISTS (SELECT 1 FROM messages WHERE mailing_id = mailings.id
                               AND state IN ('pending', 'queued', 'sending', 'failed_temporary'))
             RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        for mailing_id in &finished {
            super::webhooks::enqueue_mailing_event(&mut tx, MailingId(*mailing_id), "done", now)
                .await?;
        }
        tx.commit().await?;
        Ok(finished)
    }

    /// Ids, priorities and end times of the mailings being delivered now.
    pub async fn running_mailings(&self) -> Result<Vec<(i64, Priority, i64)>> {
        let rows = sqlx::query(
            "SELECT id, priority, end_at FROM mailings WHERE state = 'running' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.get(0), parse_priority(r.get(1))?, r.get(2))))
            .collect()
    }
}

impl Store {
    /// Mailings whose delivery must stop now: paused ones, and those cancelled at or after
    /// `since`.
    pub async fn halted_since(&self, since: i64) -> Result<Vec<(i64, MailingState)>> {
        sqlx::query(
            "SELECT id, state FROM mailings
             WHERE state = 'paused' OR (state = 'cancelled' AND finished_at >= $1)",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.get(0), r.get::<String, _>(1).parse()?)))
        .collect()
    }
}

/// What a mailing would do if it started now ([`Store::preview_mailing`]).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MailingPreview {
    /// Clients the mailing would go to if it started now.
    pub recipients: i64,
    /// Seconds the mailing needs at the channel's configured rate, when one is configured.
    pub expected_duration_secs: Option<f64>,
    /// The text as the first of those clients would get it; absent when nobody matches.
    pub sample: Option<SampleMessage>,
}

/// A mailing's text rendered for one client, or why it cannot be.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampleMessage {
    pub client_id: ClientId,
    pub text: Option<String>,
    /// Why the text cannot be rendered for this client (a variable it does not have).
    pub error: Option<String>,
}

/// One message of a mailing, for the per-message listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageRow {
    pub id: MessageId,
    pub client_id: ClientId,
    pub phone: String,
    pub state: MessageState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub updated_at: i64,
}

impl Store {
    /// Store `new`, that the use case (`app/mailings.rs`) checked, in place of `current`
    /// if it has still not started.
    pub(crate) async fn replace_mailing(
        &self,
        current: &Mailing,
        new: NewMailing,
    ) -> Result<Mailing> {
        let (tenant_id, id) = (current.tenant_id, current.id);
        let mut new = new;
        let mut tx = self.write_tx().await?;
        // Files the edit no longer uses go with it, before its new ones count to the quota
        // (new uploads have no id yet: what has one is kept).
        let kept = stored_media(new.telegram.as_ref());
        let replaced: Vec<i64> = stored_media(current.telegram.as_ref())
            .into_iter()
            .filter(|id| !kept.contains(id))
            .collect();
        delete_media(&mut tx, tenant_id, id, &replaced).await?;
        let telegram = store_telegram(&mut tx, tenant_id, &mut new, self.media_quota_bytes).await?;
        let done = sqlx::query(
            "UPDATE mailings SET channel = $1, text = $2, filter = $3, priority = $4, start_at = $5, end_at = $6,
                                 local_hours = $7, subject = $10, html = $11, telegram = $12
             WHERE tenant_id = $8 AND id = $9 AND state = 'scheduled'",
        )
        .bind(new.channel.as_str())
        .bind(&new.text)
        .bind(serde_json::to_string(&new.filter).unwrap_or_else(|_| "{}".into()))
        .bind(new.priority.as_str())
        .bind(new.start_at)
        .bind(new.end_at)
        .bind(new.local_hours.map(|h| h.to_string()))
        .bind(tenant_id)
        .bind(id)
        .bind(&new.subject)
        .bind(&new.html)
        .bind(telegram)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "mailing {id} started meanwhile"
            )));
        }
        tx.commit().await?;
        self.mailing(tenant_id, id).await
    }

    /// Delete a mailing that is not being delivered (scheduled, done or cancelled), with its
    /// messages.
    pub async fn delete_mailing(&self, tenant_id: TenantId, id: MailingId) -> Result<()> {
        let current = self.mailing(tenant_id, id).await?;
        if matches!(current.state, MailingState::Running | MailingState::Paused) {
            return Err(StoreError::Conflict(format!(
                "mailing {id} is {}: cancel it before deleting it",
                current.state
            )));
        }
        let mut tx = self.write_tx().await?;
        // The mailing first: its row lock orders this after a start in progress, which then
        // either finds no mailing to start or has made it `running` and so not deletable.
        let done = sqlx::query(
            "DELETE FROM mailings WHERE tenant_id = $1 AND id = $2 AND state NOT IN ('running', 'paused')",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "mailing {id} started meanwhile"
            )));
        }
        // By hand: PostgreSQL keeps no foreign key on messages (migrations/postgres/0005).
        sqlx::query("DELETE FROM messages WHERE mailing_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        delete_media(
            &mut tx,
            tenant_id,
            id,
            &stored_media(current.telegram.as_ref()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Hold a running mailing: nothing more is sent until it is resumed. Its window keeps
    /// running; what is unsent at the end expires.
    pub async fn pause_mailing(&self, tenant_id: TenantId, id: MailingId) -> Result<Mailing> {
        self.transition(tenant_id, id, MailingState::Running, MailingState::Paused)
            .await
    }

    pub async fn resume_mailing(&self, tenant_id: TenantId, id: MailingId) -> Result<Mailing> {
        self.transition(tenant_id, id, MailingState::Paused, MailingState::Running)
            .await
    }

    async fn transition(
        &self,
        tenant_id: TenantId,
        id: MailingId,
        from: MailingState,
        to: MailingState,
    ) -> Result<Mailing> {
        // A notification's try is not the tenant's to pause: the same rows as `mailing`
        // sees, so that a 404 changes nothing.
        let done = sqlx::query(
            "UPDATE mailings SET state = $1 WHERE tenant_id = $2 AND id = $3 AND state = $4 AND notification_id IS NULL",
        )
        .bind(to.as_str())
        .bind(tenant_id)
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            let current = self.mailing(tenant_id, id).await?;
            return Err(StoreError::Conflict(format!(
                "mailing {id} is {}, not {from}",
                current.state
            )));
        }
        self.announce_halt();
        self.mailing(tenant_id, id).await
    }

    /// Send the permanently failed messages of a mailing again, within its window. Returns how
    /// many were queued again.
    pub async fn retry_failed(&self, tenant_id: TenantId, id: MailingId) -> Result<u64> {
        let current = self.mailing(tenant_id, id).await?;
        let now = now_ms();
        if current.end_at <= now {
            return Err(StoreError::Conflict(format!(
                "mailing {id} ended at its end time; create a new mailing instead"
            )));
        }
        if matches!(
            current.state,
            MailingState::Scheduled | MailingState::Cancelled
        ) {
            return Err(StoreError::Conflict(format!(
                "mailing {id} is {}: nothing to retry",
                current.state
            )));
        }
        let mut tx = self.write_tx().await?;
        let retried = sqlx::query(
            "UPDATE messages SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1
             WHERE mailing_id = $2 AND state = 'failed_permanent'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if retried > 0 {
            sqlx::query("UPDATE mailings SET state = 'running', finished_at = NULL WHERE id = $1 AND state = 'done'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(retried)
    }

    /// What a mailing would do if it started now, without creating it: how many clients it
    /// reaches, how long that takes at `rate_per_second` (0: unknown), and its text rendered
    /// for the first of them (or why that render fails).
    pub async fn preview_mailing(
        &self,
        tenant_id: TenantId,
        new: &NewMailing,
        limits: TextLimits,
        rate_per_second: u32,
    ) -> Result<MailingPreview> {
        MessageTemplate::check(&new.text, false, limits).await?;
        let recipients = self
            .count_audience(tenant_id, &new.filter, new.channel)
            .await?;
        let (operator_codes, tags) = audience_params(&new.filter);
        let sql = format!(
            "SELECT c.id FROM clients c WHERE {} ORDER BY c.id LIMIT 1",
            audience_where(self.dialect, new.channel)
        );
        let first: Option<ClientId> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(operator_codes)
            .bind(tags)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0));
        let sample = match first {
            None => None,
            Some(id) => {
                let client = self.client(tenant_id, id).await?;
                let rendered = MessageTemplate::compile(&new.text, limits)?
                    .render_off_runtime(client, Vec::new())
                    .await;
                Some(match rendered {
                    Ok(text) => SampleMessage {
                        client_id: id,
                        text: Some(text),
                        error: None,
                    },
                    Err(e) => SampleMessage {
                        client_id: id,
                        text: None,
                        error: Some(e.0),
                    },
                })
            }
        };
        Ok(MailingPreview {
            recipients,
            expected_duration_secs: (rate_per_second > 0)
                .then(|| recipients as f64 / f64::from(rate_per_second)),
            sample,
        })
    }

    /// How many clients a filter selects now.
    pub async fn count_audience(
        &self,
        tenant_id: TenantId,
        filter: &AudienceFilter,
        channel: ChannelKind,
    ) -> Result<i64> {
        let (operator_codes, tags) = audience_params(filter);
        let sql = format!(
            "SELECT COUNT(*) FROM clients c WHERE {}",
            audience_where(self.dialect, channel)
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(operator_codes)
            .bind(tags)
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// The messages of a mailing, by id, optionally in one state; a keyset page.
    pub async fn list_messages(
        &self,
        tenant_id: TenantId,
        mailing_id: MailingId,
        state: Option<MessageState>,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRow>> {
        self.mailing(tenant_id, mailing_id).await?;
        let rows = sqlx::query(
            "SELECT s.id, s.client_id, COALESCE(c.phone, ''), s.state, s.attempts, s.last_error,
                    s.next_attempt_at, s.sent_at, s.updated_at
             FROM messages s LEFT JOIN clients c ON c.id = s.client_id
             WHERE s.mailing_id = $1 AND ($2 IS NULL OR s.state = $2) AND s.id > $3
             ORDER BY s.id LIMIT $4",
        )
        .bind(mailing_id)
        .bind(state.map(|s| s.as_str()))
        .bind(after_id.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MessageRow {
                    id: r.get(0),
                    client_id: r.get(1),
                    phone: r.get(2),
                    state: r.get::<String, _>(3).parse()?,
                    attempts: r.get(4),
                    last_error: r.get(5),
                    next_attempt_at: r.get(6),
                    sent_at: r.get(7),
                    updated_at: r.get(8),
                })
            })
            .collect()
    }
}
