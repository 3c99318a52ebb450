//! `blast stats`: message counts per mailing and state, overall or for one day.

use super::{Context, Result, print_json};
use crate::domain::{MessageState, invalid};
use blast_cli::table;

/// A UTC day as a half-open range of unix ms.
pub fn day_range(day: &str) -> Result<(i64, i64)> {
    let date = chrono::NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(format!("invalid day {day:?}: expected YYYY-MM-DD")))?;
    let start = date
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| invalid(format!("invalid day {day:?}")))?;
    Ok((start, start + 86_400_000))
}

const COLUMNS: [MessageState; 7] = [
    MessageState::Sent,
    MessageState::FailedPermanent,
    MessageState::Expired,
    MessageState::Cancelled,
    MessageState::Skipped,
    MessageState::Unknown,
    MessageState::FailedTemporary,
];

pub async fn run(ctx: &Context, day: Option<&str>, json: bool) -> Result<()> {
    if let Some(day) = day {
        day_range(day)?;
    }
    let stats = ctx.backend().await?.stats(day).await?;
    if json {
        print_json(&stats);
        return Ok(());
    }
    let mut header = vec!["mailing", "channel", "state"];
    header.extend(COLUMNS.iter().map(|s| s.as_str()));
    header.extend(["in progress", "total"]);
    let mut totals = vec![0i64; COLUMNS.len() + 2];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in &stats {
        let mut row = vec![
            s.mailing_id.to_string(),
            s.channel.clone(),
            s.state.to_string(),
        ];
        let in_progress = s.counts.total() - COLUMNS.iter().map(|c| s.counts.get(*c)).sum::<i64>();
        let values: Vec<i64> = COLUMNS
            .iter()
            .map(|c| s.counts.get(*c))
            .chain([in_progress, s.counts.total()])
            .collect();
        for (total, v) in totals.iter_mut().zip(&values) {
            *total += v;
        }
        row.extend(values.iter().map(i64::to_string));
        rows.push(row);
    }
    let mut total_row = vec!["all".to_owned(), String::new(), String::new()];
    total_row.extend(totals.iter().map(i64::to_string));
    rows.push(total_row);
    if let Some(day) = day {
        println!("messages whose state changed on {day} (UTC):");
    }
    println!("{}", table(&header, rows));
    Ok(())
}
