//! `blast client import FILE.csv`: validate every row first, then write them in one transaction.

use super::client::parse_tag_list;
use super::{Context, Result};
use crate::domain::parse_attribute_name;
use crate::domain::{InvalidInput, Phone, invalid, parse_email, parse_timezone};
use crate::store::NewClient;
use blast_cli::Progress;
use std::collections::HashMap;
use std::path::Path;

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

/// A row that cannot be imported, by its line number in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// Parse and validate a CSV file. `Err` for a file that cannot be read as a client list at all;
/// otherwise the valid clients and the invalid rows.
pub fn parse_file(path: &Path) -> Result<(Vec<NewClient>, Vec<RowError>)> {
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    parse_reader(file)
}

pub fn parse_reader(reader: impl std::io::Read) -> Result<(Vec<NewClient>, Vec<RowError>)> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| invalid(format!("cannot read the CSV header: {e}")))?
        .clone();
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
    let mut clients = Vec::new();
    let mut errors = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    for record in csv.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    message: format!("malformed row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        match parse_row(&columns, &record) {
            Ok(client) => {
                let phone = client
                    .phone
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                if let Some(first) = first_line_of.get(&phone) {
                    errors.push(RowError {
                        line,
                        message: format!("phone {phone} already appears on line {first}"),
                    });
                } else {
                    first_line_of.insert(phone, line);
                    clients.push(client);
                }
            }
            Err(e) => errors.push(RowError { line, message: e.0 }),
        }
    }
    Ok((clients, errors))
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

pub async fn run(ctx: &Context, path: &Path, skip_invalid: bool) -> Result<()> {
    let backend = ctx.backend().await?;
    let (clients, errors) = parse_file(path)?;
    for e in &errors {
        eprintln!("line {}: {}", e.line, e.message);
    }
    if !errors.is_empty() && !skip_invalid {
        return Err(invalid(format!(
            "{} invalid row(s); nothing imported (fix them, or pass --skip-invalid to import the {} valid ones)",
            errors.len(),
            clients.len()
        ))
        .into());
    }
    let progress = Progress::new(clients.len() as u64, "importing");
    let report = backend
        .import_clients(&clients, |done| progress.set(done))
        .await?;
    progress.finish("done".into());
    println!(
        "imported {} client(s): {} new, {} updated, {} invalid row(s) skipped",
        clients.len(),
        report.inserted,
        report.updated,
        errors.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_columns_attributes_and_reports_bad_rows() {
        let csv = "phone,name,tags,tz,city\n\
                   79001234567,Anna,vip;new,Europe/Moscow,Kazan\n\
                   123,Bob,,,\n\
                   79001234568,Carl,,,\n\
                   79001234567,Dup,,,\n";
        let (clients, errors) = parse_reader(csv.as_bytes()).expect("parses");
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].tags, ["new", "vip"]);
        assert_eq!(clients[0].timezone, "Europe/Moscow");
        assert_eq!(
            clients[0].attributes.get("city").map(String::as_str),
            Some("Kazan")
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("invalid phone"));
        assert!(errors[1].message.contains("already appears on line 2"));
    }

    #[test]
    fn a_file_that_is_not_a_client_list_is_an_error() {
        assert!(parse_reader("name,email\nAnna,a@b.ru\n".as_bytes()).is_err());
        assert!(parse_reader("".as_bytes()).is_err());
        assert!(
            parse_reader("phone,name\n79001234567,a,extra\n".as_bytes())
                .map(|(_, errors)| errors.len() == 1)
                .unwrap_or(false)
        );
        assert!(parse_reader("phone,bad col\n".as_bytes()).is_err());
    }
}
