//! The daily statistics report: for one local day, per mailing and per channel, how many
//! messages were sent, failed, expired or skipped, how long each mailing ran and its most
//! frequent errors; rendered as text (terminal, email) and HTML (email).

use crate::domain::{InvalidInput, MessageState, invalid};
use crate::ids::TenantId;
use crate::store::{Store, StoreError};
use chrono::{NaiveDate, TimeZone};
use serde::Serialize;
use std::collections::BTreeMap;

/// Errors kept per mailing in a report.
const TOP_ERRORS: usize = 3;

/// One mailing's line of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MailingLine {
    pub mailing_id: i64,
    pub tenant: String,
    pub channel: String,
    pub state: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// From start to finish, or to the end of the day while it is still running; seconds.
    pub duration_secs: Option<i64>,
    pub top_errors: Vec<(String, i64)>,
}

/// Messages by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent: i64,
    pub failed: i64,
    pub expired: i64,
    pub skipped: i64,
    pub cancelled: i64,
    pub unknown: i64,
    /// Not final yet (pending, queued, sending, waiting for a retry).
    pub in_progress: i64,
}

impl Counts {
    fn add(&mut self, state: MessageState, n: i64) {
        let slot = match state {
            MessageState::Sent => &mut self.sent,
            MessageState::FailedPermanent => &mut self.failed,
            MessageState::Expired => &mut self.expired,
            MessageState::Skipped => &mut self.skipped,
            MessageState::Cancelled => &mut self.cancelled,
            MessageState::Unknown => &mut self.unknown,
            MessageState::Pending
            | MessageState::Queued
            | MessageState::Sending
            | MessageState::FailedTemporary => &mut self.in_progress,
        };
        *slot += n;
    }

    fn merge(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.expired += other.expired;
        self.skipped += other.skipped;
        self.cancelled += other.cancelled;
        self.unknown += other.unknown;
        self.in_progress += other.in_progress;
    }
}

/// One channel's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelLine {
    pub channel: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyReport {
    /// YYYY-MM-DD in `timezone`.
    pub day: String,
    pub timezone: String,
    pub mailings: Vec<MailingLine>,
    pub channels: Vec<ChannelLine>,
    pub total: Counts,
}

/// `day` in `timezone` as a half-open range of unix ms (a day of 23 or 25 hours where the
/// clocks change).
pub fn local_day_range(day: NaiveDate, timezone: &str) -> Result<(i64, i64), InvalidInput> {
    let tz = zone(timezone)?;
    let start_of = |d: NaiveDate| -> Result<i64, InvalidInput> {
        let midnight = d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| invalid(format!("invalid day {d}")))?;
        // A zone whose clocks jump at midnight has no 00:00 that day: the day starts when
        // the local clock first shows it.
        (0..=120)
            .find_map(|m| {
                tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                    .earliest()
            })
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| invalid(format!("day {d} does not exist in {timezone}")))
    };
    let next = day
        .succ_opt()
        .ok_or_else(|| invalid(format!("invalid day {day}")))?;
    Ok((start_of(day)?, start_of(next)?))
}

fn zone(timezone: &str) -> Result<chrono_tz::Tz, InvalidInput> {
    timezone
        .parse()
        .map_err(|_| invalid(format!("unknown time zone {timezone:?}")))
}

/// Parse YYYY-MM-DD.
/// A UTC day, `YYYY-MM-DD`, as a half-open range of unix ms.
pub fn utc_day_range(day: &str) -> Result<(i64, i64), InvalidInput> {
    local_day_range(parse_day(day)?, "UTC")
}

pub fn parse_day(day: &str) -> Result<NaiveDate, InvalidInput> {
    NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(format!("invalid day {day:?}: expected YYYY-MM-DD")))
}

/// The local day before the one `now_ms` falls in.
pub fn previous_day(now_ms: i64, timezone: &str) -> Result<NaiveDate, InvalidInput> {
    let tz = zone(timezone)?;
    let now = chrono::DateTime::from_timestamp_millis(now_ms)
        .ok_or_else(|| invalid("time out of range"))?
        .with_timezone(&tz);
    now.date_naive()
        .pred_opt()
        .ok_or_else(|| invalid("time out of range"))
}

impl DailyReport {
    /// Build the report of `day` (local to `timezone`) from the store, over every tenant.
    pub async fn build(
        store: &Store,
        day: NaiveDate,
        timezone: &str,
    ) -> Result<DailyReport, StoreError> {
        DailyReport::build_scoped(store, day, timezone, None).await
    }

    /// The report of `day` of one tenant's mailings (the console's statistics page).
    pub async fn build_for_tenant(
        store: &Store,
        day: NaiveDate,
        timezone: &str,
        tenant: TenantId,
    ) -> Result<DailyReport, StoreError> {
        DailyReport::build_scoped(store, day, timezone, Some(tenant)).await
    }

    async fn build_scoped(
        store: &Store,
        day: NaiveDate,
        timezone: &str,
        tenant: Option<TenantId>,
    ) -> Result<DailyReport, StoreError> {
        let (from, to) = local_day_range(day, timezone)?;
        let counts = store.report_counts(from, to, tenant).await?;
        let errors = store.report_errors(from, to, TOP_ERRORS, tenant).await?;
        let mut mailings: Vec<MailingLine> = Vec::new();
        for row in counts {
            if mailings
                .last()
                .is_none_or(|m| m.mailing_id != row.mailing_id)
            {
                let end = row.finished_at.unwrap_or(to).min(to);
                mailings.push(MailingLine {
                    mailing_id: row.mailing_id,
                    tenant: row.tenant.clone(),
                    channel: row.channel.as_str().to_owned(),
                    state: row.mailing_state.as_str().to_owned(),
                    duration_secs: row.started_at.map(|s| (end - s).max(0) / 1000),
                    ..MailingLine::default()
                });
            }
            if let Some(line) = mailings.last_mut() {
                line.counts.add(row.state, row.count);
            }
        }
        for e in errors {
            if let Some(line) = mailings.iter_mut().find(|m| m.mailing_id == e.mailing_id) {
                line.top_errors.push((e.error, e.count));
            }
        }
        let mut by_channel: BTreeMap<String, Counts> = BTreeMap::new();
        let mut total = Counts::default();
        for m in &mailings {
            by_channel
                .entry(m.channel.clone())
                .or_default()
                .merge(&m.counts);
            total.merge(&m.counts);
        }
        Ok(DailyReport {
            day: day.format("%Y-%m-%d").to_string(),
            timezone: timezone.to_owned(),
            mailings,
            channels: by_channel
                .into_iter()
                .map(|(channel, counts)| ChannelLine { channel, counts })
                .collect(),
            total,
        })
    }

    pub fn subject(&self) -> String {
        format!(
            "blast daily statistics for {} ({}): {} sent, {} failed",
            self.day, self.timezone, self.total.sent, self.total.failed
        )
    }

    /// The report as plain text (the terminal and the email's text part).
    pub fn to_text(&self) -> String {
        self.render("report.txt", TEXT_TEMPLATE)
    }

    /// The report as an HTML page (the email's HTML part); every value is escaped.
    pub fn to_html(&self) -> String {
        self.render("report.html", HTML_TEMPLATE)
    }

    fn render(&self, name: &'static str, source: &'static str) -> String {
        let mut env = minijinja::Environment::new();
        // The names' extensions switch HTML escaping on for the HTML template only.
        let rendered = env
            .add_template(name, source)
            .and_then(|()| env.get_template(name))
            .and_then(|t| t.render(self));
        // The templates are ours and tested: a failure is a bug, shown rather than hidden.
        rendered.unwrap_or_else(|e| format!("cannot render the report: {e}"))
    }
}

const TEXT_TEMPLATE: &str = "\
blast daily statistics for {{ day }} ({{ timezone }})

{% if not mailings %}No message changed state on this day.
{% else %}\
{{ \"%-8s %-12s %-6s %-10s %9s %8s %8s %8s %9s %8s\"|format(\"mailing\", \"tenant\", \"chan\", \"state\", \"sent\", \"failed\", \"expired\", \"skipped\", \"cancelled\", \"duration\") }}
{% for m in mailings %}\
{{ \"%-8s %-12s %-6s %-10s %9s %8s %8s %8s %9s %8s\"|format(m.mailing_id, m.tenant, m.channel, m.state, m.sent, m.failed, m.expired, m.skipped, m.cancelled, (m.duration_secs ~ \"s\") if m.duration_secs is not none else \"-\") }}
{% for e in m.top_errors %}         {{ e[1] }} x {{ e[0] }}
{% endfor %}\
{% endfor %}
By channel:
{% for c in channels %}  {{ \"%-6s\"|format(c.channel) }} sent {{ c.sent }}, failed {{ c.failed }}, expired {{ c.expired }}, skipped {{ c.skipped }}, cancelled {{ c.cancelled }}, unknown {{ c.unknown }}, in progress {{ c.in_progress }}
{% endfor %}\
Total: sent {{ total.sent }}, failed {{ total.failed }}, expired {{ total.expired }}, skipped {{ total.skipped }}, cancelled {{ total.cancelled }}, unknown {{ total.unknown }}, in progress {{ total.in_progress }}
{% endif %}";

const HTML_TEMPLATE: &str = r#"<!doctype html>
<html><body style="font-family: sans-serif">
<h2>blast daily statistics for {{ day }} ({{ timezone }})</h2>
{% if not mailings %}<p>No message changed state on this day.</p>{% else %}
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>mailing</th><th>tenant</th><th>channel</th><th>state</th><th>sent</th><th>failed</th><th>expired</th><th>skipped</th><th>cancelled</th><th>duration</th><th>top errors</th></tr>
{% for m in mailings %}<tr><td>{{ m.mailing_id }}</td><td>{{ m.tenant }}</td><td>{{ m.channel }}</td><td>{{ m.state }}</td><td>{{ m.sent }}</td><td>{{ m.failed }}</td><td>{{ m.expired }}</td><td>{{ m.skipped }}</td><td>{{ m.cancelled }}</td><td>{% if m.duration_secs is not none %}{{ m.duration_secs }} s{% else %}-{% endif %}</td><td>{% for e in m.top_errors %}{{ e[1] }} &times; {{ e[0] }}<br>{% endfor %}</td></tr>
{% endfor %}</table>
<h3>By channel</h3>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>channel</th><th>sent</th><th>failed</th><th>expired</th><th>skipped</th><th>cancelled</th><th>unknown</th><th>in progress</th></tr>
{% for c in channels %}<tr><td>{{ c.channel }}</td><td>{{ c.sent }}</td><td>{{ c.failed }}</td><td>{{ c.expired }}</td><td>{{ c.skipped }}</td><td>{{ c.cancelled }}</td><td>{{ c.unknown }}</td><td>{{ c.in_progress }}</td></tr>
{% endfor %}<tr><th>total</th><th>{{ total.sent }}</th><th>{{ total.failed }}</th><th>{{ total.expired }}</th><th>{{ total.skipped }}</th><th>{{ total.cancelled }}</th><th>{{ total.unknown }}</th><th>{{ total.in_progress }}</th></tr>
</table>{% endif %}
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DailyReport {
        let counts = Counts {
            sent: 9,
            failed: 1,
            ..Counts::default()
        };
        DailyReport {
            day: "2026-11-22".into(),
            timezone: "Europe/Moscow".into(),
            mailings: vec![MailingLine {
                mailing_id: 7,
                tenant: "<acme>".into(),
                channel: "email".into(),
                state: "done".into(),
                counts: counts.clone(),
                duration_secs: Some(42),
                top_errors: vec![("SMTP: permanent error (550): no such user".into(), 1)],
            }],
            channels: vec![ChannelLine {
                channel: "email".into(),
                counts: counts.clone(),
            }],
            total: counts,
        }
    }

    #[test]
    fn text_and_html_show_every_figure_and_html_is_escaped() {
        let r = sample();
        let text = r.to_text();
        assert!(text.contains("2026-11-22 (Europe/Moscow)"), "{text}");
        assert!(text.contains("<acme>"), "{text}");
        assert!(text.contains("42s"), "{text}");
        assert!(text.contains("1 x SMTP: permanent error (550)"), "{text}");
        assert!(text.contains("Total: sent 9, failed 1"), "{text}");
        let html = r.to_html();
        assert!(html.contains("&lt;acme&gt;"), "{html}");
        assert!(!html.contains("<acme>"), "{html}");
        assert!(html.contains("<td>9</td>"), "{html}");
        assert!(r.subject().contains("9 sent, 1 failed"));
    }

    #[test]
    fn local_days_follow_the_zone_and_its_clock_changes() {
        let day = parse_day("2026-11-22").expect("day");
        let (from, to) = local_day_range(day, "Europe/Moscow").expect("range");
        assert_eq!(to - from, 86_400_000);
        assert_eq!(
            from,
            chrono::DateTime::parse_from_rfc3339("2026-11-21T21:00:00Z")
                .expect("t")
                .timestamp_millis()
        );
        // Berlin's clocks went back on 2026-10-25: that day had 25 hours.
        let (from, to) =
            local_day_range(parse_day("2026-10-25").expect("day"), "Europe/Berlin").expect("r");
        assert_eq!(to - from, 25 * 3_600_000);
        assert!(parse_day("2026-13-01").is_err());
        assert!(local_day_range(day, "Mars/Base").is_err());
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:30:00+03:00")
            .expect("t")
            .timestamp_millis();
        assert_eq!(
            previous_day(now, "Europe/Moscow").expect("day"),
            parse_day("2026-11-22").expect("day")
        );
        assert_eq!(
            previous_day(now, "UTC").expect("day"),
            parse_day("2026-11-21").expect("day")
        );
    }
}
