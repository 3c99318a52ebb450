//! End-to-end benchmark of the embedded profile: N clients, one SMS mailing, a local stub on
//! 127.0.0.1. Prints import speed, messages/s, send latency p50/p99 and peak RSS.
//!
//! `cargo bench --bench mailing` (N = 100000), or `BENCH_RECIPIENTS=20000 cargo bench --bench mailing`.
//! The stub runs in a process of its own (this binary again, `BENCH_ROLE=stub`), so the peak
//! RSS is blast's (worker and store) alone; the CPU is shared, so the figures are conservative.

mod common;

use blast::settings::{Secret, Settings};
use blast::store::Store;
use blast_testkit::SmsStub;
use blast_testkit::{peak_rss_mb, percentile};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench.jwt";

/// Set to `stub` in the stub's process.
const ROLE: &str = "BENCH_ROLE";

/// The stub's process: prints the stub's base URL, serves until its standard input closes,
/// then prints how many messages it took and how many requests it saw.
fn stub_process() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let stub = SmsStub::start(TOKEN, Duration::ZERO).await?;
            println!("{}", stub.base_url());
            std::io::stdout().flush()?;
            tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            })
            .await??;
            println!("{} {}", stub.delivered_count(), stub.requests_count());
            Ok(())
        })
}

/// The stub's process, seen from the benchmark.
struct StubProcess {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
    base_url: String,
}

impl StubProcess {
    fn start() -> Result<StubProcess, Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, "stub")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut base_url = String::new();
        lines.read_line(&mut base_url)?;
        Ok(StubProcess {
            child,
            lines,
            base_url: base_url.trim().to_owned(),
        })
    }

    /// Stop the stub; returns (messages delivered, requests seen).
    fn finish(mut self) -> Result<(usize, usize), Box<dyn std::error::Error>> {
        drop(self.child.stdin.take());
        let mut counts = String::new();
        self.lines.read_line(&mut counts)?;
        self.child.wait()?;
        let mut counts = counts.split_whitespace().map(str::parse::<usize>);
        match (counts.next(), counts.next()) {
            (Some(Ok(delivered)), Some(Ok(requests))) => Ok((delivered, requests)),
            _ => Err("the stub did not report its counts".into()),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var(ROLE).as_deref() == Ok("stub") {
        return stub_process();
    }
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
            let import_peak_mb = peak_rss_mb("self");

            let stub = StubProcess::start()?;
            let mut settings = Settings {
                database_url: url.clone(),
                ..Settings::default()
            };
            settings.sms.base_url = stub.base_url.clone();
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
                "  peak RSS          {:.0} MB (worker and store; {import_peak_mb:.0} MB at the end of the import)",
                peak_rss_mb("self")
            );
            let (delivered, requests) = stub.finish()?;
            println!("  provider saw      {delivered} unique messages, {requests} requests");
            if sent as usize != n || delivered != n {
                return Err(format!("expected {n} messages sent, got {sent}").into());
            }
            Ok::<(), Box<dyn std::error::Error>>(())
        })
}
