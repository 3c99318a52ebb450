//! Terminal output: tables, progress bars and human-readable times.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// A table with a header row, sized to the terminal.
pub fn table<R, C>(header: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    for row in rows {
        t.add_row(row.into_iter().collect::<Vec<_>>());
    }
    t.to_string()
}

/// Unix milliseconds as an RFC 3339 UTC time, to the second.
pub fn format_time_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A duration in milliseconds as 1h02m03s / 2m03s / 3.4s.
pub fn format_duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}h{:02}m{:02}s", secs / 3600, secs % 3600 / 60, secs % 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// A progress bar on stderr; hidden when stderr is not a terminal, so logs and pipes stay clean.
pub struct Progress(ProgressBar);

impl Progress {
    pub fn new(total: u64, what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40.cyan/blue}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress(bar)
    }

    /// A bar over `total` bytes.
    pub fn bytes(total: u64, what: &str) -> Progress {
        let progress = Progress::new(total, what);
        progress.0.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40.cyan/blue}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        progress
    }

    pub fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    pub fn set(&self, done: u64) {
        self.0.set_position(done);
    }
    pub fn message(&self, msg: String) {
        self.0.set_message(msg);
    }
    pub fn finish(&self, msg: String) {
        self.0.finish_with_message(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(format_time_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_duration_ms(3_723_000), "1h02m03s");
        assert_eq!(format_duration_ms(123_000), "2m03s");
        assert_eq!(format_duration_ms(3_400), "3.4s");
    }

    #[test]
    fn tables_hold_their_cells() {
        let t = table(
            &["id", "name"],
            vec![vec!["1".to_owned(), "Anna".to_owned()]],
        );
        assert!(t.contains("Anna") && t.contains("name"));
    }
}
