//! Client import as a stream, for `blast client import FILE.csv` and `POST /clients/import`:
//! rows are parsed on a blocking thread and staged batch by batch, so a file of any size
//! costs the memory of a batch; the import is then all or nothing (or the valid rows, with
//! `skip_invalid`), each bad row reported by its line.

use crate::domain::parse_attribute_name;
use crate::domain::{InvalidInput, Phone, invalid, parse_email, parse_tags, parse_timezone};
use crate::ids::TenantId;
use crate::store::{ImportReport, NewClient, Store, StoreError};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::store::RowError;

/// Where each known column sits in the file.
enum Column {
    Phone,
    Name,
    Email,
    TelegramChatId,
    Timezone,
    Tags,
    Attribute(String),
}

fn column_for(header: &str) -> Result<Column, InvalidInput> {
    Ok(match header.trim().to_ascii_lowercase().as_str() {
        "phone" => Column::Phone,
        "name" => Column::Name,
        "email" => Column::Email,
        "telegram_chat_id" => Column::TelegramChatId,
        "timezone" | "tz" => Column::Timezone,
        "tags" | "tag" => Column::Tags,
        _ => Column::Attribute(
            parse_attribute_name(header).map_err(|e| invalid(format!("column {header:?}: {e}")))?,
        ),
    })
}

/// A parsed row: the client and its line, or why the line is not a client.
pub type RowResult = Result<(u64, NewClient), RowError>;

/// Why an import as a whole could not be done (bad rows are not this: they are reported).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not a client list at all (no header, no phone column).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Reading the input failed (or it was cut off, or it is over the size limit).
    #[error("cannot read the import: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did. `committed` is false when bad rows refused the whole import.
#[derive(Debug)]
pub struct ImportOutcome {
    pub imported: u64,
    pub report: ImportReport,
    /// The first row errors, in line order (at most the import's `max_errors`).
    pub errors: Vec<RowError>,
    /// All row errors, reported or not.
    pub error_count: u64,
    pub committed: bool,
}

/// A row error quotes at most this many characters of its message (which may quote the row).
const MAX_ERROR_CHARS: usize = 200;

/// Keep the first `max` row errors in line order, each cut to [`MAX_ERROR_CHARS`], and count
/// them all: the report stays small whatever the file.
#[derive(Debug)]
struct ErrorReport {
    kept: Vec<RowError>,
    count: u64,
    max: usize,
}

impl ErrorReport {
    fn new(max: usize) -> ErrorReport {
        ErrorReport {
            kept: Vec::new(),
            count: 0,
            max,
        }
    }

    fn push(&mut self, mut e: RowError) {
        self.count += 1;
        if self.kept.len() < self.max {
            if let Some((cut, _)) = e.message.char_indices().nth(MAX_ERROR_CHARS) {
                e.message.truncate(cut);
                e.message.push('…');
            }
            self.kept.push(e);
        }
    }

    /// Merge errors found later (repeated phones, `count` of them in all) in line order.
    fn merge(&mut self, more: Vec<RowError>, count: u64) {
        self.kept.extend(more);
        self.kept.sort_by_key(|e| e.line);
        self.kept.truncate(self.max);
        self.count += count;
    }
}

/// Rows handed from the parser to the store at a time.
const BATCH: usize = 10_000;

/// The rows of a CSV client list (a header row with a `phone` column). `Err` for input that
/// is not a client list; afterwards an `Err` item is a failure to read, and bad rows are
/// `Ok(Err(..))`.
pub fn csv_rows(
    reader: impl Read,
) -> Result<impl Iterator<Item = std::io::Result<RowResult>>, ImportError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(csv_failure(e).map_or_else(ImportError::Read, ImportError::Invalid)),
    };
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(
            invalid("the CSV file is empty: expected a header row with a phone column").into(),
        );
    }
    let columns: Vec<Column> = headers.iter().map(column_for).collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| matches!(c, Column::Phone)) {
        return Err(invalid(format!(
            "the CSV header has no phone column (found: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    Ok(csv.into_records().map(move |record| match record {
        Ok(record) => {
            let line = record.position().map_or(0, |p| p.line());
            Ok(parse_row(&columns, &record)
                .map(|client| (line, client))
                .map_err(|e| RowError { line, message: e.0 }))
        }
        Err(e) => {
            let line = e.position().map_or(0, |p| p.line());
            csv_failure(e).map(|bad| {
                Err(RowError {
                    line,
                    message: format!("malformed row: {}", bad.0),
                })
            })
        }
    }))
}

/// A CSV error as a failure to read (`Err`) or a malformed input (`Ok`).
fn csv_failure(e: csv::Error) -> std::io::Result<InvalidInput> {
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Err(io),
        _ => Ok(invalid(format!("cannot read the CSV: {message}"))),
    }
}

/// Import the rows that `open` yields (it runs on a blocking thread, so it may read a file or
/// a bridged request body) for `tenant_id`. `progress` hears the rows staged so far.
pub async fn stream_import<I>(
    store: &Store,
    tenant_id: TenantId,
    skip_invalid: bool,
    max_errors: usize,
    open: impl FnOnce() -> Result<I, ImportError> + Send + 'static,
    mut progress: impl FnMut(u64),
) -> Result<ImportOutcome, ImportError>
where
    I: Iterator<Item = std::io::Result<RowResult>>,
{
    let mut import = store.begin_import(tenant_id).await?;
    let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<(u64, NewClient)>>(2);
    let parser = tokio::task::spawn_blocking(move || -> Result<ErrorReport, ImportError> {
        let mut errors = ErrorReport::new(max_errors);
        let mut batch = Vec::with_capacity(BATCH);
        for row in open()? {
            match row.map_err(ImportError::Read)? {
                // PostgreSQL refuses NUL in text: the row is bad on both profiles alike.
                Ok((line, client)) if holds_nul(&client) => errors.push(RowError {
                    line,
                    message: "a field holds the NUL character".into(),
                }),
                Ok(parsed) => batch.push(parsed),
                Err(e) => errors.push(e),
            }
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                // A closed channel: the store side failed and says why itself.
                if batches.blocking_send(full).is_err() {
                    return Ok(errors);
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.blocking_send(batch);
        }
        Ok(errors)
    });
    while let Some(batch) = received.recv().await {
        let rows: Vec<(u64, &NewClient)> = batch.iter().map(|(line, c)| (*line, c)).collect();
        import.stage(&rows).await?;
        progress(import.staged());
    }
    let mut errors = parser.await.map_err(|e| {
        ImportError::Read(std::io::Error::other(format!("the parser stopped: {e}")))
    })??;
    let (repeated, repeats) = import.repeated_phones(max_errors).await?;
    let has_repeats = repeats > 0;
    errors.merge(repeated, repeats);
    if errors.count > 0 && !skip_invalid {
        // Dropping the import throws the stage away: nothing was written.
        return Ok(ImportOutcome {
            imported: 0,
            report: ImportReport::default(),
            errors: errors.kept,
            error_count: errors.count,
            committed: false,
        });
    }
    if has_repeats {
        import.drop_repeated_phones().await?;
    }
    let imported = import.staged();
    let report = import.commit().await?;
    Ok(ImportOutcome {
        imported,
        report,
        errors: errors.kept,
        error_count: errors.count,
        committed: true,
    })
}

/// Whether any text of `client` holds a NUL character.
fn holds_nul(client: &NewClient) -> bool {
    let nul = |s: &str| s.contains('\0');
    nul(&client.name)
        || client.email.as_deref().is_some_and(nul)
        || nul(&client.timezone)
        || client.tags.iter().any(|t| nul(t))
        || client.attributes.iter().any(|(k, v)| nul(k) || nul(v))
}

fn parse_row(columns: &[Column], record: &csv::StringRecord) -> Result<NewClient, InvalidInput> {
    let mut client = NewClient {
        timezone: "UTC".into(),
        ..NewClient::default()
    };
    for (column, cell) in columns.iter().zip(record.iter()) {
        match column {
            Column::Phone => client.phone = Some(cell.parse::<Phone>()?),
            Column::Name => client.name = cell.to_owned(),
            Column::Email if cell.is_empty() => {}
            Column::Email => client.email = Some(parse_email(cell)?),
            Column::TelegramChatId if cell.is_empty() => {}
            Column::TelegramChatId => {
                client.telegram_chat_id = Some(cell.parse().map_err(|_| {
                    invalid(format!(
                        "invalid telegram_chat_id {cell:?}: expected an integer"
                    ))
                })?)
            }
            Column::Timezone if cell.is_empty() => {}
            Column::Timezone => client.timezone = parse_timezone(cell)?,
            Column::Tags => client.tags = parse_tag_list(cell)?,
            Column::Attribute(_) if cell.is_empty() => {}
            Column::Attribute(name) => {
                client.attributes.insert(name.clone(), cell.to_owned());
            }
        }
    }
    Ok(client)
}

/// Parse the tags cell of a CSV row: names separated by ';' (or '|').
pub fn parse_tag_list(cell: &str) -> Result<Vec<String>, InvalidInput> {
    let tags: Vec<String> = cell
        .split([';', '|'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    parse_tags(&tags)
}

/// Reads through to `inner`, counting the bytes read so far in `count`.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Import a CSV file into the local store, reporting the bytes read so far to `progress`.
pub async fn import_local_csv(
    store: &Store,
    tenant_id: TenantId,
    file: std::fs::File,
    skip_invalid: bool,
    max_errors: usize,
    progress: impl Fn(u64),
) -> Result<ImportOutcome, ImportError> {
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: std::io::BufReader::new(file),
        count: read.clone(),
    };
    stream_import(
        store,
        tenant_id,
        skip_invalid,
        max_errors,
        move || csv_rows(counting),
        |_| progress(read.load(Ordering::Relaxed)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(csv: &str) -> Result<(Vec<NewClient>, Vec<RowError>), ImportError> {
        let (mut clients, mut errors) = (Vec::new(), Vec::new());
        for row in csv_rows(csv.as_bytes())? {
            match row.map_err(ImportError::Read)? {
                Ok((_, client)) => clients.push(client),
                Err(e) => errors.push(e),
            }
        }
        Ok((clients, errors))
    }

    #[test]
    fn reads_known_columns_attributes_and_reports_bad_rows() {
        let csv = "phone,name,tags,tz,city\n\
                   79001234567,Anna,vip;new,Europe/Moscow,Kazan\n\
                   123,Bob,,,\n\
                   79001234568,Carl,,,\n";
        let (clients, errors) = parse(csv).expect("parses");
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].tags, ["new", "vip"]);
        assert_eq!(clients[0].timezone, "Europe/Moscow");
        assert_eq!(
            clients[0].attributes.get("city").map(String::as_str),
            Some("Kazan")
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("invalid phone"));
    }

    #[test]
    fn a_file_that_is_not_a_client_list_is_an_error() {
        assert!(matches!(
            parse("name,email\nAnna,a@b.ru\n"),
            Err(ImportError::Invalid(_))
        ));
        assert!(matches!(parse(""), Err(ImportError::Invalid(_))));
        assert!(
            parse("phone,name\n79001234567,a,extra\n")
                .map(|(_, errors)| errors.len() == 1 && errors[0].message.contains("malformed"))
                .unwrap_or(false)
        );
        assert!(parse("phone,bad col\n").is_err());
    }
}
