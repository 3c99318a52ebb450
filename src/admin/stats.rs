//! `blast stats`: message counts per mailing and state; with `--day`, the daily report (the
//! one the daily statistics email carries), printed or mailed by hand.

use super::{Context, Result, print_json};
use crate::channels::EmailChannel;
use crate::domain::{MessageState, invalid};
use crate::report::{DailyReport, parse_day, utc_day_range};
use blast_cli::{StatsArgs, table};

const COLUMNS: [MessageState; 7] = [
    MessageState::Sent,
    MessageState::FailedPermanent,
    MessageState::Expired,
    MessageState::Cancelled,
    MessageState::Skipped,
    MessageState::Unknown,
    MessageState::FailedTemporary,
];

pub async fn run(ctx: &Context, args: &StatsArgs) -> Result<()> {
    match (&args.day, &ctx.remote) {
        (Some(day), None) => report(ctx, day, args.json, args.email).await,
        _ if args.email => Err(invalid(
            "--email builds the report from the local database: run it without --server",
        )
        .into()),
        _ => tenant_counts(ctx, args.day.as_deref(), args.json).await,
    }
}

/// The daily report of `day` over every tenant: printed, or mailed to stats.recipients.
async fn report(ctx: &Context, day: &str, json: bool, email: bool) -> Result<()> {
    let day = parse_day(day)?;
    let store = ctx.store("the daily report")?;
    let timezone = &ctx.settings.stats.timezone;
    let report = DailyReport::build(store, day, timezone).await?;
    if email {
        let recipients = &ctx.settings.stats.recipients;
        if recipients.is_empty() {
            return Err(invalid(
                "no recipients: set stats.recipients (or BLAST_STATS__RECIPIENTS='[\"ops@example.com\"]')",
            )
            .into());
        }
        EmailChannel::new(&ctx.settings.email)?
            .send_report(
                recipients,
                &report.subject(),
                &report.to_text(),
                &report.to_html(),
            )
            .await?;
        eprintln!(
            "the report of {} sent to {}",
            report.day,
            recipients.join(", ")
        );
    } else if json {
        print_json(&report);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Counts per mailing and state of the tenant's own mailings, overall or for one UTC day.
async fn tenant_counts(ctx: &Context, day: Option<&str>, json: bool) -> Result<()> {
    if let Some(day) = day {
        utc_day_range(day)?;
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
