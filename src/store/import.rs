//! Bulk client import as a stream: rows are staged in a temporary table as they arrive (`COPY`
//! on PostgreSQL, multi-row INSERTs on SQLite), repeated phones are found there, and a few
//! set-based statements merge the stage into clients, tags and their links in one short
//! transaction.
//!
//! Staging happens outside any transaction on the real tables, so a slow upload holds no lock
//! (SQLite's one write lock is taken only for the merge) and the process keeps no more than a
//! batch of rows in memory. Row-by-row, even multi-row, `INSERT`s into PostgreSQL cost a round
//! trip and a plan per chunk and ran at about 8,500 rows/s; `COPY` streams them.

use super::clients::{ImportReport, NewClient};
use super::{Dialect, Result, Store, StoreError, is_unique_violation};
use crate::domain::invalid;
use crate::ids::TenantId;
use crate::now_ms;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Postgres, Row};

/// A row of an import that cannot be imported, by its line number in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

const STAGING_COLUMNS: &str =
    "line BIGINT NOT NULL, phone TEXT NOT NULL, operator_code TEXT NOT NULL,
     name TEXT NOT NULL, email TEXT, telegram_chat_id BIGINT, timezone TEXT NOT NULL,
     attributes TEXT NOT NULL, tags TEXT NOT NULL";

enum Staging {
    Sqlite(PoolConnection<Any>),
    Postgres(PoolConnection<Postgres>),
}

/// An import in progress for one tenant. Nothing reaches the tenant's clients until
/// [`ClientImport::commit`]; dropping it instead throws the stage away.
pub struct ClientImport {
    tenant_id: TenantId,
    staged: u64,
    indexed: bool,
    analyzed: bool,
    /// Every staged phone is known to appear once (repeats were looked for and none found, or
    /// dropped), so the merge needs no "last line wins" pass.
    unique_phones: bool,
    staging: Staging,
}

/// A unique key broken, or a row changed by another transaction, during the merge: another
/// request added or changed one of the phones (`what`) while the import ran. Under the
/// merge's one snapshot that is an error rather than a row silently left out.
fn changed_meanwhile(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| {
        let serialization =
            matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"));
        if is_unique_violation(&e) || serialization {
            return StoreError::Conflict(format!(
                "{what} while the import ran; nothing was imported, run it again"
            ));
        }
        e.into()
    }
}

fn encode_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Db(sqlx::Error::Encode(Box::new(e)))
}

impl Store {
    /// Start importing clients for `tenant_id`: stage rows with [`ClientImport::stage`], look
    /// for repeated phones, then commit.
    pub async fn begin_import(&self, tenant_id: TenantId) -> Result<ClientImport> {
        let create = format!("CREATE TEMP TABLE import_staging ({STAGING_COLUMNS})");
        let staging = match &self.postgres {
            Some(pg) => {
                let mut conn = pg.acquire().await?;
                // The stage lives on this connection only; closing it afterwards drops the
                // stage with it, whatever happened, instead of handing it to the next user.
                conn.close_on_drop();
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&mut *conn)
                    .await?;
                Staging::Postgres(conn)
            }
            None => {
                let mut conn = self.pool.acquire().await?;
                conn.close_on_drop();
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&mut *conn)
                    .await?;
                Staging::Sqlite(conn)
            }
        };
        Ok(ClientImport {
            tenant_id,
            staged: 0,
            indexed: false,
            analyzed: false,
            unique_phones: false,
            staging,
        })
    }

    /// Insert or update (by phone) `clients` for `tenant_id`, all or nothing. When a phone
    /// appears more than once its last row wins and the tags of every row are linked, as row by
    /// row. `progress` is called with the number of rows staged so far.
    pub async fn import_clients(
        &self,
        tenant_id: TenantId,
        clients: &[NewClient],
        mut progress: impl FnMut(u64),
    ) -> Result<ImportReport> {
        const BATCH: usize = 10_000;
        let mut import = self.begin_import(tenant_id).await?;
        for (n, batch) in clients.chunks(BATCH).enumerate() {
            let first_line = (n * BATCH) as u64 + 1;
            let rows: Vec<(u64, &NewClient)> = (first_line..).zip(batch).collect();
            import.stage(&rows).await?;
            progress(import.staged());
        }
        // Asked only so that the merge knows whether phones repeat (it is faster when not).
        import.repeated_phones(1).await?;
        import.commit().await
    }
}

impl ClientImport {
    /// Rows staged so far.
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// Add rows, each with its line number in the file.
    pub async fn stage(&mut self, rows: &[(u64, &NewClient)]) -> Result<()> {
        // New rows may repeat a phone and change the stage's statistics.
        self.unique_phones = false;
        self.analyzed = false;
        match &mut self.staging {
            Staging::Postgres(conn) => copy_rows(conn, rows).await?,
            Staging::Sqlite(conn) => insert_rows(conn, rows).await?,
        }
        self.staged += rows.len() as u64;
        Ok(())
    }

    fn dialect(&self) -> Dialect {
        match self.staging {
            Staging::Sqlite(_) => Dialect::Sqlite,
            Staging::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Run `sql` on the stage's connection, binding the tenant and the time as $1 and $2 when
    /// given; returns the rows it touched.
    async fn execute(&mut self, sql: &str, tenant_and_now: Option<(TenantId, i64)>) -> Result<u64> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        Ok(match &mut self.staging {
            Staging::Postgres(conn) => {
                let mut query = sqlx::query(sql);
                if let Some((tenant, now)) = tenant_and_now {
                    query = query.bind(tenant).bind(now);
                }
                query.execute(&mut **conn).await?.rows_affected()
            }
            Staging::Sqlite(conn) => {
                let mut query = sqlx::query(sql);
                if let Some((tenant, now)) = tenant_and_now {
                    query = query.bind(tenant).bind(now);
                }
                query.execute(&mut **conn).await?.rows_affected()
            }
        })
    }

    /// Index the stage by phone (once), for the statements that look a phone's other lines up.
    async fn index(&mut self) -> Result<()> {
        if self.indexed {
            return Ok(());
        }
        let create = match self.dialect() {
            Dialect::Sqlite => {
                "CREATE INDEX temp.import_staging_phone ON import_staging (phone, line)"
            }
            Dialect::Postgres => {
                "CREATE INDEX import_staging_phone ON import_staging (phone, line)"
            }
        };
        self.execute(create, None).await?;
        self.indexed = true;
        Ok(())
    }

    /// Give PostgreSQL the stage's statistics (once, after the last row): a temporary table has
    /// none until asked, and without them every statement over it is planned as if it held a
    /// handful of rows (nested loops over a million rows). SQLite plans without them.
    async fn analyze(&mut self) -> Result<()> {
        if self.analyzed || self.dialect() == Dialect::Sqlite {
            return Ok(());
        }
        self.execute("ANALYZE import_staging", None).await?;
        self.analyzed = true;
        Ok(())
    }

    /// Every row whose phone appeared on an earlier line, as an error naming that line.
    pub async fn repeated_phones(&mut self, limit: usize) -> Result<(Vec<RowError>, u64)> {
        match self.dialect() {
            // PostgreSQL groups by hashing; the index would cost more than it saves.
            Dialect::Postgres => self.analyze().await?,
            Dialect::Sqlite => self.index().await?,
        }
        let repeats = "FROM import_staging s
                   JOIN (SELECT phone, MIN(line) AS first_line FROM import_staging
                         GROUP BY phone HAVING COUNT(*) > 1) f ON f.phone = s.phone
                   WHERE s.line <> f.first_line";
        // The report keeps the first `limit`; the rest are only counted.
        let first = format!(
            "SELECT s.line, s.phone, f.first_line {repeats} ORDER BY s.line LIMIT {}",
            limit.max(1)
        );
        let count = format!("SELECT COUNT(*) {repeats}");
        // The same two queries on either connection type (they share no trait sqlx would
        // take here).
        macro_rules! first_and_count {
            ($conn:expr) => {
                (
                    sqlx::query_as(sqlx::AssertSqlSafe(first))
                        .fetch_all(&mut **$conn)
                        .await?,
                    sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                        .fetch_one(&mut **$conn)
                        .await?,
                )
            };
        }
        let (rows, total): (Vec<(i64, String, i64)>, i64) = match &mut self.staging {
            Staging::Postgres(conn) => first_and_count!(conn),
            Staging::Sqlite(conn) => first_and_count!(conn),
        };
        let errors = rows
            .into_iter()
            .take(limit)
            .map(|(line, phone, first)| RowError {
                line: line as u64,
                message: format!("phone {phone} already appears on line {first}"),
            })
            .collect();
        let total = u64::try_from(total).unwrap_or(0);
        self.unique_phones = total == 0;
        Ok((errors, total))
    }

    /// Keep only the first row of each phone (the others were reported by
    /// [`ClientImport::repeated_phones`]). Returns how many rows were dropped.
    pub async fn drop_repeated_phones(&mut self) -> Result<u64> {
        self.index().await?;
        self.analyze().await?;
        let dropped = self
            .execute(
                "DELETE FROM import_staging WHERE EXISTS (
                     SELECT 1 FROM import_staging e
                     WHERE e.phone = import_staging.phone AND e.line < import_staging.line)",
                None,
            )
            .await?;
        self.staged -= dropped;
        self.unique_phones = true;
        Ok(dropped)
    }

    /// Merge the stage into the tenant's clients in one transaction.
    pub async fn commit(mut self) -> Result<ImportReport> {
        let inserted = match self.dialect() {
            Dialect::Sqlite => self.merge_sqlite().await?,
            Dialect::Postgres => self.merge_postgres().await?,
        };
        self.execute("COMMIT", None).await?;
        Ok(ImportReport {
            inserted,
            updated: self.staged - inserted,
        })
    }

    /// SQLite upserts row by row in line order (so where a phone is staged twice its last
    /// line wins) under the write lock taken up front: the merge must not fail half-way with
    /// SQLITE_BUSY. Returns how many clients are new; the transaction is left open.
    async fn merge_sqlite(&mut self) -> Result<u64> {
        self.index().await?;
        let tenant = self.tenant_id;
        let now = now_ms();
        self.execute("BEGIN IMMEDIATE", None).await?;
        let before = self.count_clients().await?;
        self.execute(
            "INSERT INTO clients (tenant_id, phone, operator_code, name, email, telegram_chat_id,
                                  timezone, attributes, created_at, updated_at)
             SELECT $1, phone, operator_code, name, email, telegram_chat_id,
                    timezone, attributes, $2, $2 FROM import_staging WHERE true ORDER BY line
             ON CONFLICT (tenant_id, phone) DO UPDATE SET
                 name = excluded.name, email = excluded.email,
                 telegram_chat_id = excluded.telegram_chat_id, timezone = excluded.timezone,
                 attributes = excluded.attributes, updated_at = excluded.updated_at",
            Some((tenant, now)),
        )
        .await?;
        // ($2 is bound so that every statement takes the same two parameters.)
        self.execute(
            "INSERT INTO tags (tenant_id, name)
             SELECT DISTINCT $1, t.value FROM import_staging s, json_each(s.tags) AS t
             WHERE $2 = $2
             ON CONFLICT (tenant_id, name) DO NOTHING",
            Some((tenant, now)),
        )
        .await?;
        self.execute(
            "INSERT INTO client_tags (client_id, tag_id)
             SELECT DISTINCT c.id, tg.id FROM import_staging s, json_each(s.tags) AS t
             JOIN clients c ON c.tenant_id = $1 AND c.phone = s.phone
             JOIN tags tg ON tg.tenant_id = $1 AND tg.name = t.value
             WHERE $2 = $2
             ON CONFLICT DO NOTHING",
            Some((tenant, now)),
        )
        .await?;
        Ok((self.count_clients().await? - before) as u64)
    }

    /// PostgreSQL merges set-wise: the phones the tenant has are updated, the others inserted
    /// by plain `INSERT`s (an `ON CONFLICT` upsert probes every index speculatively and cost
    /// about a third more for a million rows), then the tag links. Every statement reads one
    /// snapshot (repeatable read): a phone another request adds or changes while the merge
    /// runs makes the import fail as a conflict, instead of being neither updated (it was not
    /// there yet) nor inserted (it is there now). Returns how many clients are new; the
    /// transaction is left open.
    async fn merge_postgres(&mut self) -> Result<u64> {
        self.analyze().await?;
        let tenant = self.tenant_id;
        let now = now_ms();
        // PostgreSQL refuses to write one row twice in a statement: where a phone may be
        // staged more than once its last line wins.
        let (rows, distinct) = if self.unique_phones {
            ("import_staging", "")
        } else {
            // (and the tags of every line of a phone are linked, each link once)
            (
                "(SELECT DISTINCT ON (phone) * FROM import_staging ORDER BY phone, line DESC)",
                "DISTINCT",
            )
        };
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ", None)
            .await?;
        let Staging::Postgres(conn) = &mut self.staging else {
            return Err(StoreError::Db(sqlx::Error::Protocol(
                "a PostgreSQL merge on another database".into(),
            )));
        };
        let had_clients: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM clients WHERE tenant_id = $1)")
                .bind(tenant)
                .fetch_one(&mut **conn)
                .await?;
        // A tenant's first import has nothing to update and no links to keep.
        let (new_only, new_links_only) = if had_clients {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE clients c SET name = s.name, email = s.email,
                     telegram_chat_id = s.telegram_chat_id, timezone = s.timezone,
                     attributes = s.attributes, updated_at = $2
                 FROM {rows} s WHERE c.tenant_id = $1 AND c.phone = s.phone"
            )))
            .bind(tenant)
            .bind(now)
            .execute(&mut **conn)
            .await
            .map_err(changed_meanwhile(
                "a client with one of the imported phones was changed",
            ))?;
            (
                "WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.tenant_id = $1 AND c.phone = s.phone)",
                "WHERE NOT EXISTS (SELECT 1 FROM client_tags e WHERE e.client_id = c.id AND e.tag_id = sets.tag_id)",
            )
        } else {
            ("", "")
        };
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO clients (tenant_id, phone, operator_code, name, email, telegram_chat_id,
                                  timezone, attributes, created_at, updated_at)
             SELECT $1, phone, operator_code, name, email, telegram_chat_id,
                    timezone, attributes, $2, $2 FROM {rows} s {new_only}"
        )))
        .bind(tenant)
        .bind(now)
        .execute(&mut **conn)
        .await
        .map_err(changed_meanwhile(
            "a client with one of the imported phones was added",
        ))?
        .rows_affected();
        // Tags are read from each distinct tag list once, not from every row's JSON.
        let tag_names = "FROM (SELECT DISTINCT tags FROM import_staging) d
             CROSS JOIN LATERAL jsonb_array_elements_text(CAST(d.tags AS jsonb)) AS t(value)";
        let tag_lists = format!(
            "SELECT DISTINCT d.tags, tg.id AS tag_id {tag_names}
             JOIN tags tg ON tg.tenant_id = $1 AND tg.name = t.value"
        );
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tags (tenant_id, name)
             SELECT DISTINCT CAST($1 AS BIGINT), t.value {tag_names}
             ON CONFLICT (tenant_id, name) DO NOTHING"
        )))
        .bind(tenant)
        .execute(&mut **conn)
        .await?;
        // The clients just written have no statistics yet: planned without them, the link
        // statement would look every row up by index (twice the time of a hash join). Not
        // `ANALYZE clients`: its lock, held to the commit, would queue other tenants' imports.
        sqlx::query("SET LOCAL enable_nestloop = off")
            .execute(&mut **conn)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO client_tags (client_id, tag_id)
             WITH sets AS ({tag_lists})
             SELECT {distinct} c.id, sets.tag_id FROM import_staging s
             JOIN sets ON sets.tags = s.tags
             JOIN clients c ON c.tenant_id = $1 AND c.phone = s.phone
             {new_links_only}"
        )))
        .bind(tenant)
        .execute(&mut **conn)
        .await
        .map_err(changed_meanwhile(
            "a tag of one of the imported clients was changed",
        ))?;
        Ok(inserted)
    }

    async fn count_clients(&mut self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM clients WHERE tenant_id = $1";
        Ok(match &mut self.staging {
            Staging::Postgres(conn) => sqlx::query(sql)
                .bind(self.tenant_id)
                .fetch_one(&mut **conn)
                .await?
                .get(0),
            Staging::Sqlite(conn) => sqlx::query(sql)
                .bind(self.tenant_id)
                .fetch_one(&mut **conn)
                .await?
                .get(0),
        })
    }
}

/// The staged columns of a row, as text for `COPY` or binding.
struct StagedColumns {
    attributes: String,
    tags: String,
}

fn staged_columns(client: &NewClient) -> Result<StagedColumns> {
    Ok(StagedColumns {
        attributes: serde_json::to_string(&client.attributes).map_err(encode_error)?,
        tags: serde_json::to_string(&client.tags).map_err(encode_error)?,
    })
}

async fn copy_rows(conn: &mut PoolConnection<Postgres>, rows: &[(u64, &NewClient)]) -> Result<()> {
    let mut csv = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(rows.len() * 128));
    for (line, client) in rows {
        let Some(phone) = &client.phone else {
            return Err(invalid(format!("line {line}: a client needs a phone")).into());
        };
        let columns = staged_columns(client)?;
        let chat_id = client
            .telegram_chat_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        csv.write_record([
            line.to_string().as_str(),
            phone.as_str(),
            phone.operator_code(),
            client.name.as_str(),
            client.email.as_deref().unwrap_or(""),
            chat_id.as_str(),
            client.timezone.as_str(),
            columns.attributes.as_str(),
            columns.tags.as_str(),
        ])
        .map_err(encode_error)?;
    }
    let data = csv.into_inner().map_err(|e| encode_error(e.into_error()))?;
    // An unquoted empty CSV field is NULL (a missing email or chat id); FORCE_NOT_NULL keeps
    // an empty name an empty string.
    let mut copy = conn
        .copy_in_raw(
            "COPY import_staging FROM STDIN WITH (FORMAT csv,
                 FORCE_NOT_NULL (phone, operator_code, name, timezone, attributes, tags))",
        )
        .await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// One staged row as SQLite's `json_each` reads it: the columns in `STAGING_COLUMNS` order.
#[derive(serde::Serialize)]
struct StagedRow<'a>(
    u64,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<i64>,
    &'a str,
    String,
    String,
);

/// Stage `rows` on SQLite in one statement with one parameter: the rows as a JSON array that
/// `json_each` expands. Why not a multi-row VALUES list: sqlx binds `$N` parameters by name,
/// and SQLite finds a name by walking every parameter of the statement, so 9 parameters a row
/// made the binding quadratic (90 % of an import's time, 10 s for 100,000 rows).
async fn insert_rows(conn: &mut PoolConnection<Any>, rows: &[(u64, &NewClient)]) -> Result<()> {
    let staged = rows
        .iter()
        .map(|(line, client)| {
            let Some(phone) = &client.phone else {
                return Err(invalid(format!("line {line}: a client needs a phone")).into());
            };
            let columns = staged_columns(client)?;
            Ok(StagedRow(
                *line,
                phone.as_str(),
                phone.operator_code(),
                &client.name,
                client.email.as_deref(),
                client.telegram_chat_id,
                &client.timezone,
                columns.attributes,
                columns.tags,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let json = serde_json::to_string(&staged).map_err(encode_error)?;
    sqlx::query(
        "INSERT INTO import_staging (line, phone, operator_code, name, email, telegram_chat_id,
                                     timezone, attributes, tags)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                value ->> 6, value ->> 7, value ->> 8
         FROM json_each($1)",
    )
    .bind(json)
    .execute(&mut **conn)
    .await?;
    Ok(())
}
