//! Load benchmark of the HTTP API on the embedded profile: concurrent clients on 127.0.0.1
//! creating clients and reading clients and mailings for a fixed time. Prints requests/s and
//! latency percentiles per kind of request.
//!
//! `cargo bench --bench api` (32 connections, 10 s), or BENCH_CONNECTIONS / BENCH_SECONDS.

use blast::settings::Settings;
use blast::store::{NewClient, Store};
use blast_testkit::percentile;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for worker in 0..connections {
                let (base, token, next_phone) = (base.clone(), token.clone(), next_phone.clone());
                tasks.push(tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let (mut reads, mut creates, mut errors) = (Vec::new(), Vec::new(), 0u64);
                    let mut i = worker;
                    while Instant::now() < deadline {
                        i += 1;
                        let started = Instant::now();
                        let (result, is_create) = if i % 5 == 0 {
                            let phone = format!("79{}", next_phone.fetch_add(1, Ordering::Relaxed));
                            let r = http
                                .post(format!("{base}/api/v1/clients"))
                                .bearer_auth(&token)
                                .json(&serde_json::json!({"phone": phone, "tags": ["load"]}))
                                .send()
                                .await;
                            (r, true)
                        } else if i % 5 == 1 {
                            let r = http
                                .get(format!("{base}/api/v1/clients?limit=20&tag=seed"))
                                .bearer_auth(&token)
                                .send()
                                .await;
                            (r, false)
                        } else {
                            let id = 1 + (i * 7919) % 1000;
                            let r = http
                                .get(format!("{base}/api/v1/clients/{id}"))
                                .bearer_auth(&token)
                                .send()
                                .await;
                            (r, false)
                        };
                        let ok = match result {
                            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        if !ok {
                            errors += 1;
                        } else if is_create {
                            creates.push(ms);
                        } else {
                            reads.push(ms);
                        }
                    }
                    (reads, creates, errors)
                }));
            }
            let (mut reads, mut creates, mut errors) = (Vec::new(), Vec::new(), 0);
            for task in tasks {
                let (r, c, e) = task.await?;
                reads.extend(r);
                creates.extend(c);
                errors += e;
            }
            let _ = stop_tx.send(());
            server.await??;
            reads.sort_by(f64::total_cmp);
            creates.sort_by(f64::total_cmp);
            let secs = seconds as f64;
            println!("blast API load benchmark (embedded profile, {connections} connections, {seconds} s, 127.0.0.1)");
            for (name, lat) in [("reads", &reads), ("creates", &creates)] {
                println!(
                    "  {name:<8} {:>7.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests)",
                    lat.len() as f64 / secs,
                    percentile(lat, 0.50),
                    percentile(lat, 0.99),
                    lat.len()
                );
            }
            println!("  total    {:>7.0} req/s   errors {errors}", (reads.len() + creates.len()) as f64 / secs);
            if errors > 0 {
                return Err(format!("{errors} requests failed").into());
            }
            Ok::<(), Box<dyn std::error::Error>>(())
        })
}
