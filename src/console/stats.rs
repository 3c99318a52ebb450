//! The console's statistics page: one day's report of the tenant's mailings (the daily
//! report's own figures, in `stats.timezone`), a chart per channel of what was sent, failed and
//! expired hour by hour, the day's most frequent errors, and the per-mailing table, sortable
//! by any of its columns.

use super::session::SignedIn;
use super::{ConsoleState, PageResult, bad_request};
use crate::domain::MessageState;
use crate::report::{DailyReport, MailingLine, local_day_range, parse_day};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use minijinja::context;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    day: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
}

/// The table's columns: (name in the URL, heading, the value it sorts by).
type Column = (&'static str, &'static str, fn(&MailingLine) -> i64);

const COLUMNS: [Column; 8] = [
    ("id", "#", |m| m.mailing_id),
    ("sent", "Sent", |m| m.counts.sent),
    ("failed", "Failed", |m| m.counts.failed),
    ("expired", "Expired", |m| m.counts.expired),
    ("skipped", "Skipped", |m| m.counts.skipped),
    ("cancelled", "Cancelled", |m| m.counts.cancelled),
    ("in_progress", "In progress", |m| m.counts.in_progress),
    ("duration", "Duration (s)", |m| {
        m.duration_secs.unwrap_or(-1)
    }),
];

/// The outcomes the chart draws, in its order.
const CHARTED: [MessageState; 3] = [
    MessageState::Sent,
    MessageState::FailedPermanent,
    MessageState::Expired,
];

pub(super) async fn stats_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Query(query): Query<StatsQuery>,
) -> PageResult {
    let timezone = state.settings.stats.timezone.clone();
    let day = match query.day.as_deref().filter(|d| !d.is_empty()) {
        Some(day) => match parse_day(day) {
            Ok(day) => day,
            Err(e) => return bad_request(&state, &session, &e.0),
        },
        None => {
            let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
            chrono::Utc::now().with_timezone(&tz).date_naive()
        }
    };
    let sort = query.sort.as_deref().unwrap_or("id");
    let Some(column) = COLUMNS.iter().find(|c| c.0 == sort) else {
        return bad_request(&state, &session, &format!("cannot sort by {sort:?}"));
    };
    let descending = query.dir.as_deref() != Some("asc");
    let (from, to) = match local_day_range(day, &timezone) {
        Ok(range) => range,
        Err(e) => return bad_request(&state, &session, &e.0),
    };
    let tenant = session.user.id;
    let mut report = DailyReport::build_for_tenant(&state.store, day, &timezone, tenant).await?;
    let hourly = state.store.outcomes_per_hour(tenant, from, to).await?;
    let errors = state.store.top_errors(tenant, (from, to), 10).await?;

    report.mailings.sort_by_key(|m| (column.2)(m));
    if descending {
        report.mailings.reverse();
    }
    let hours = (to - from).div_euclid(3_600_000).max(1);
    let mut per_channel: BTreeMap<String, Vec<[i64; 3]>> = BTreeMap::new();
    for row in hourly {
        let Some(slot) = CHARTED.iter().position(|s| *s == row.state) else {
            continue;
        };
        let bars = per_channel
            .entry(row.channel.as_str().to_owned())
            .or_insert_with(|| vec![[0; 3]; usize::try_from(hours).unwrap_or(24)]);
        if let Some(hour) = usize::try_from(row.hour).ok().and_then(|h| bars.get_mut(h)) {
            hour[slot] += row.count;
        }
    }
    let charts: Vec<minijinja::Value> = per_channel
        .iter()
        .map(|(channel, bars)| chart(channel, bars))
        .collect();
    let headings: Vec<minijinja::Value> = COLUMNS
        .iter()
        .map(|(name, heading, _)| {
            // A heading sorts by its column, descending first; again, the other way.
            let next = if *name == sort && descending { "asc" } else { "desc" };
            context! {
                heading => heading,
                href => format!("/stats?day={day}&sort={name}&dir={next}"),
                sorted => (*name == sort).then_some(if descending { "descending" } else { "ascending" }),
            }
        })
        .collect();
    let rows: Vec<minijinja::Value> = report
        .mailings
        .iter()
        .map(|m| {
            context! {
                id => m.mailing_id,
                channel => m.channel.as_str(),
                state => m.state.as_str(),
                values => COLUMNS[1..].iter().map(|c| (c.2)(m)).map(|v| if v < 0 { String::new() } else { v.to_string() }).collect::<Vec<_>>(),
            }
        })
        .collect();
    let page = state.pages.page(
        &session,
        "stats.html",
        context! {
            title => format!("Statistics of {day}"),
            day => day.format("%Y-%m-%d").to_string(),
            timezone => timezone,
            total => context! {
                sent => report.total.sent,
                failed => report.total.failed,
                expired => report.total.expired,
                in_progress => report.total.in_progress,
            },
            charts => charts,
            errors => errors.iter().map(|(e, n)| context! { error => e, count => n }).collect::<Vec<_>>(),
            headings => headings,
            rows => rows,
        },
    )?;
    Ok(page.into_response())
}

/// One channel's chart: per hour, three bars (sent, failed, expired) scaled to the busiest.
fn chart(channel: &str, bars: &[[i64; 3]]) -> minijinja::Value {
    const HEIGHT: i64 = 100;
    const HOUR_WIDTH: i64 = 12;
    let max = bars.iter().flatten().copied().max().unwrap_or(0).max(1);
    let totals: Vec<i64> = (0..3).map(|i| bars.iter().map(|b| b[i]).sum()).collect();
    let rects: Vec<minijinja::Value> = bars
        .iter()
        .enumerate()
        .flat_map(|(hour, counts)| {
            counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(i, n)| {
                    let h = (n * HEIGHT / max).max(1);
                    context! {
                        x => hour as i64 * HOUR_WIDTH + i as i64 * 4,
                        y => HEIGHT - h,
                        h => h,
                        class => CHARTED[i].as_str(),
                        label => format!("{hour:02}:00: {n} {}", CHARTED[i].as_str()),
                    }
                })
        })
        .collect();
    context! {
        channel => channel,
        width => bars.len() as i64 * HOUR_WIDTH,
        height => HEIGHT,
        rects => rects,
        sent => totals[0],
        failed => totals[1],
        expired => totals[2],
    }
}
