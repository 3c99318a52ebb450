//! Telegram at the Bot API's limit: N recipients (default 10,000), one text mailing, the Bot API
//! stub on 127.0.0.1 enforcing 30 messages/s per bot with real 429s. The target: the mailing
//! takes N/30 s plus under 2 %, and the stub answers no 429.
//!
//! `cargo bench --bench telegram`, or `BENCH_RECIPIENTS=600 cargo bench --bench telegram`.
//! The limit is counted in this process (the embedded profile); `tests/it/telegram.rs` checks the
//! same limit shared by three workers through Redis.

mod common;

use blast::domain::{AudienceFilter, ChannelKind, MailingState};
use blast::settings::{Secret, Settings};
use blast::store::{NewClient, NewMailing, Store};
use blast::telegram::TelegramContent;
use blast_testkit::{TelegramStub, TelegramStubOptions};
use std::time::{Duration, Instant};

const BOT_TOKEN: &str = "777:bench-secret-token";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::var("BENCH_RECIPIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n))
}

async fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&url).await?;
    let tenant = store.add_user("bench", "bench password").await?.id;
    let clients: Vec<NewClient> = (0..n)
        .map(|i| NewClient {
            phone: format!("79{i:09}").parse().ok(),
            name: format!("client {i}"),
            telegram_chat_id: Some(10_000_000 + i as i64),
            timezone: "UTC".into(),
            tags: vec!["bench".into()],
            ..NewClient::default()
        })
        .collect();
    store.import_clients(tenant, &clients, |_| {}).await?;

    let options = TelegramStubOptions::default();
    let per_second = options.bot_per_second;
    let stub = TelegramStub::start(options).await?;
    let mut settings = Settings {
        database_url: url,
        ..Settings::default()
    };
    settings.telegram.bot_token = Secret::new(BOT_TOKEN);
    settings.telegram.api_url = stub.url();
    settings.telegram.bot_per_second = per_second;
    let now = blast::now_ms();
    let mailing = blast::app::mailings::create(
        &store,
        tenant,
        NewMailing {
            filter: AudienceFilter {
                tags: vec!["bench".into()],
                operator_codes: vec![],
            },
            telegram: Some(TelegramContent::text_message()),
            ..NewMailing::new(
                ChannelKind::Telegram,
                "Hello {{ name }}",
                now,
                now + 3 * 3_600_000,
            )
        },
        blast::template::TextLimits::with_default_budget(4096),
    )
    .await?;
    let started = Instant::now();
    let worker = blast_testkit::fixtures::RunningWorker::start(&store, settings);
    let expected = Duration::from_secs_f64(n as f64 / f64::from(per_second));
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if store.mailing(tenant, mailing.id).await?.state == MailingState::Done {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "  … {} of {n} sent after {:.0} s",
                stub.delivered().len(),
                started.elapsed().as_secs_f64()
            );
        }
        if started.elapsed() > expected * 2 + Duration::from_secs(60) {
            return Err("the mailing did not finish in twice the expected time".into());
        }
    }
    let took = started.elapsed();
    worker.join().await??;

    let delivered = stub.delivered();
    let span = match (delivered.first(), delivered.last()) {
        (Some(first), Some(last)) => last.at - first.at,
        _ => Duration::ZERO,
    };
    // n sends at the rate need n - 1 intervals between the first and the last.
    let ideal = Duration::from_secs_f64((n.max(1) - 1) as f64 / f64::from(per_second));
    let overhead = (took.as_secs_f64() / expected.as_secs_f64() - 1.0) * 100.0;
    let too_many = stub.too_many_requests();
    println!(
        "blast Telegram benchmark ({n} recipients, {per_second}/s per bot, Bot API stub on 127.0.0.1)"
    );
    println!(
        "  delivered         {} of {n}, {} requests, {too_many} answered 429",
        delivered.len(),
        stub.requests().len()
    );
    println!(
        "  first to last     {:.2} s at the stub (the limit allows {:.2} s at best)",
        span.as_secs_f64(),
        ideal.as_secs_f64()
    );
    println!(
        "  start to done     {:.2} s; N/{per_second} = {:.2} s; overhead {overhead:+.2} %",
        took.as_secs_f64(),
        expected.as_secs_f64()
    );
    println!(
        "  throughput        {:.2} messages/s",
        delivered.len() as f64 / span.as_secs_f64().max(0.001)
    );
    if delivered.len() != n {
        return Err(format!("expected {n} messages delivered, got {}", delivered.len()).into());
    }
    if too_many > 0 || overhead >= 2.0 {
        return Err(format!(
            "target missed: {too_many} 429s, overhead {overhead:.2} % (target: none, under 2 %)"
        )
        .into());
    }
    Ok(())
}
