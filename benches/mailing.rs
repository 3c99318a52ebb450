//! End-to-end benchmark of the embedded profile: N clients, one SMS mailing, a local stub on
//! 127.0.0.1. Prints import speed, messages/s, send latency p50/p99 and peak RSS.
//!
//! `cargo bench --bench mailing` (N = 100000), or `BENCH_RECIPIENTS=20000 cargo bench --bench mailing`.
//! The stub runs in the same process, so RSS and CPU include it: the figures are conservative.

mod common;

use blast::settings::{Secret, Settings};
use blast::store::Store;
use blast_testkit::SmsStub;
use blast_testkit::{peak_rss_mb, percentile};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench.jwt";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes --bench; any other argument is a request to list or filter: ignore.
    let n: usize = std::env::var("BENCH_RECIPIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = Store::open(&url).await?;
            let tenant = store.add_user("bench", "bench password").await?.id;

            let import_secs = common::import_audience(&store, tenant, n).await?;

            let stub = SmsStub::start(TOKEN, Duration::ZERO).await?;
            let mut settings = Settings {
                database_url: url.clone(),
                ..Settings::default()
            };
            settings.sms.base_url = stub.base_url();
            settings.sms.token = Secret::new(TOKEN);
            let now = blast::now_ms();
            let mailing = common::create_mailing(&store, tenant, now).await?;
            let started = Instant::now();
            let worker = blast_testkit::fixtures::RunningWorker::start(&store, settings);
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let m = store.mailing(tenant, mailing.id).await?;
                if m.state == blast::domain::MailingState::Done {
                    break;
                }
                if started.elapsed() > Duration::from_secs(1800) {
                    return Err("the mailing did not finish in 30 minutes".into());
                }
            }
            let m = store.mailing(tenant, mailing.id).await?;
            worker.join().await??;
            let counts = store.mailing_counts(mailing.id).await?;
            let delivery_ms = (m.finished_at.unwrap_or(0) - m.started_at.unwrap_or(0)).max(1);
            let sent = counts.get(blast::domain::MessageState::Sent);

            let mut latencies: Vec<f64> = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter(|(key, ..)| key.key().name() == "blast_send_duration_seconds")
                .flat_map(|(.., value)| match value {
                    DebugValue::Histogram(values) => {
                        values.into_iter().map(|v| v.into_inner()).collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            latencies.sort_by(f64::total_cmp);

            println!(
                "blast embedded-profile benchmark ({} recipients, SQLite, SMS stub on 127.0.0.1)",
                n
            );
            println!(
                "  import            {n} clients in {import_secs:.2} s ({:.0} rows/s)",
                n as f64 / import_secs
            );
            println!(
                "  delivered         {sent} of {n} in {:.2} s (start to done)",
                delivery_ms as f64 / 1000.0
            );
            println!(
                "  throughput        {:.0} messages/s",
                sent as f64 * 1000.0 / delivery_ms as f64
            );
            println!(
                "  send latency      p50 {:.2} ms, p99 {:.2} ms ({} requests)",
                percentile(&latencies, 0.50) * 1000.0,
                percentile(&latencies, 0.99) * 1000.0,
                latencies.len()
            );
            println!(
                "  peak RSS          {:.0} MB (worker, store and stub in one process)",
                peak_rss_mb("self")
            );
            println!(
                "  provider saw      {} unique messages, {} requests",
                stub.delivered_count(),
                stub.requests().len()
            );
            if sent as usize != n || stub.delivered_count() != n {
                return Err(format!("expected {n} messages sent, got {sent}").into());
            }
            Ok::<(), Box<dyn std::error::Error>>(())
        })
}
