//! Load benchmark of the HTTP API on the embedded profile: concurrent clients on 127.0.0.1,
//! first only reading (clients by id, a tag's first page) and then only creating clients, each
//! phase for a fixed time. Prints requests/s and latency percentiles of each phase.
//!
//! `cargo bench --bench api` (32 connections, 10 s a phase), or BENCH_CONNECTIONS /
//! BENCH_SECONDS.

use blast::settings::Settings;
use blast::store::{NewClient, Store};
use blast_testkit::percentile;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Reads,
    Creates,
}

/// What one connection measured: latencies in ms of the requests that succeeded, and failures.
struct Measured {
    latencies: Vec<f64>,
    errors: u64,
}

async fn drive(
    phase: Phase,
    base: &str,
    token: &str,
    connections: usize,
    seconds: u64,
    next_phone: &Arc<AtomicU64>,
) -> Result<Measured, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (base, token, next_phone) = (base.to_owned(), token.to_owned(), next_phone.clone());
        tasks.push(tokio::spawn(async move {
            // One keep-alive connection per task, as a load generator with N connections has.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut measured = Measured {
                latencies: Vec::new(),
                errors: 0,
            };
            let mut i = connection;
            while Instant::now() < deadline {
                i += 1;
                let started = Instant::now();
                let request = match phase {
                    Phase::Creates => {
                        let phone = format!("79{}", next_phone.fetch_add(1, Ordering::Relaxed));
                        http.post(format!("{base}/api/v1/clients"))
                            .json(&serde_json::json!({"phone": phone, "tags": ["load"]}))
                    }
                    Phase::Reads if i % 4 == 0 => {
                        http.get(format!("{base}/api/v1/clients?limit=20&tag=seed"))
                    }
                    Phase::Reads => {
                        let id = 1 + (i * 7919) % 1000;
                        http.get(format!("{base}/api/v1/clients/{id}"))
                    }
                };
                let ok = match request.bearer_auth(&token).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    measured
                        .latencies
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                } else {
                    measured.errors += 1;
                }
            }
            Ok::<Measured, BoxError>(measured)
        }));
    }
    let mut all = Measured {
        latencies: Vec::new(),
        errors: 0,
    };
    for task in tasks {
        let m = task.await??;
        all.latencies.extend(m.latencies);
        all.errors += m.errors;
    }
    all.latencies.sort_by(f64::total_cmp);
    Ok(all)
}

fn main() -> Result<(), BoxError> {
    let connections = env_or("BENCH_CONNECTIONS", 32) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = Store::open(&url).await?;
            let user = store.add_user("bench", "bench password").await?;
            let token = store.create_token(&user, "bench").await?;
            let seed: Vec<NewClient> = (0..1000)
                .map(|i| NewClient {
                    phone: format!("79{:09}", i).parse().ok(),
                    timezone: "UTC".into(),
                    tags: vec!["seed".into()],
                    ..NewClient::default()
                })
                .collect();
            store.import_clients(user.id, &seed, |_| {}).await?;
            let settings = Settings {
                database_url: url,
                ..Settings::default()
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(blast::api::serve(listener, store.clone(), settings, async {
                let _ = stop_rx.await;
            }));

            let next_phone = Arc::new(AtomicU64::new(500_000_000));
            println!(
                "blast API load benchmark (embedded profile, {connections} connections, {seconds} s a phase, 127.0.0.1)"
            );
            let mut errors = 0;
            for (name, phase) in [("reads", Phase::Reads), ("creates", Phase::Creates)] {
                let m = drive(phase, &base, &token, connections, seconds, &next_phone).await?;
                println!(
                    "  {name:<8} {:>7.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} errors)",
                    m.latencies.len() as f64 / seconds as f64,
                    percentile(&m.latencies, 0.50),
                    percentile(&m.latencies, 0.99),
                    m.latencies.len(),
                    m.errors
                );
                errors += m.errors;
            }
            let _ = stop_tx.send(());
            server.await??;
            if errors > 0 {
                return Err(format!("{errors} requests failed").into());
            }
            Ok(())
        })
}
