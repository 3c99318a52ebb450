//! Render benchmark of the web console: one tenant with 10,000 mailings and 1,000,000
//! messages (one running mailing of half of them, the rest 50 each), written straight into a
//! fresh database, and the console served on 127.0.0.1. Prints how long the server takes to
//! answer each page (signed in, one request at a time): the dashboard (its board has the big
//! mailing), its activity (the first read is the one a background refresh does every
//! `console.activity_refresh_secs`), the mailing list, and the page of the big mailing and of
//! a small one, unfiltered and filtered by state.
//!
//! `cargo bench --bench console` (embedded SQLite), or `BENCH_PROFILE=production` for a fresh
//! PostgreSQL database on `BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`);
//! `BENCH_MESSAGES` and `BENCH_MAILINGS` change the sizes, `BENCH_REQUESTS` the samples.

use blast::settings::Settings;
use blast::store::Store;
use blast_testkit::percentile;
use sqlx::Connection;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PASSWORD: &str = "bench password";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sizes of the seeded data.
struct Sizes {
    mailings: u64,
    messages: u64,
}

impl Sizes {
    /// The big mailing's messages: half of them; the other mailings share the rest.
    fn big(&self) -> u64 {
        self.messages / 2
    }
    fn per_small(&self) -> u64 {
        (self.messages - self.big()) / (self.mailings - 1).max(1)
    }
}

/// Write the tenant's clients, mailings and messages in a few statements. The messages'
/// states, errors and times spread as a busy day's: most sent over the last two hours, some
/// failed with one of a few errors, the big mailing's rest still queued.
async fn seed(url: &str, tenant: i64, sizes: &Sizes, now: i64) -> Result<(), BoxError> {
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(url).await?;
    let clients = sizes.big().max(sizes.per_small());
    let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    let mut tx = db.begin().await?;
    run(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {clients})
         INSERT INTO clients (tenant_id, phone, operator_code, name, created_at, updated_at)
         SELECT {tenant}, '7900' || (1000000 + i), '900', 'client ' || i, {now}, {now} FROM n"
    ))
    .execute(&mut *tx)
    .await?;
    // The first mailing is the big running one; the 10 newest are scheduled, the rest done:
    // the dashboard's board has the big one too.
    let mailings = sizes.mailings;
    run(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {mailings})
         INSERT INTO mailings (tenant_id, channel, text, filter, priority, start_at, end_at,
                               state, recipients, created_at)
         SELECT {tenant}, CASE WHEN i % 3 = 0 THEN 'email' ELSE 'sms' END, 'Hello number ' || i,
                '{{\"tags\":[],\"operator_codes\":[]}}', 'medium', {now} - 3600000,
                {now} + 3600000,
                CASE WHEN i = 1 THEN 'running' WHEN i > {mailings} - 10 THEN 'scheduled'
                     ELSE 'done' END,
                CASE WHEN i = 1 THEN {big} ELSE {small} END, {now} - 7200000 + i FROM n",
        big = sizes.big(),
        small = sizes.per_small(),
    ))
    .execute(&mut *tx)
    .await?;
    let first: i64 = sqlx::Row::get(
        &run(format!(
            "SELECT MIN(id) FROM mailings WHERE tenant_id = {tenant}"
        ))
        .fetch_one(&mut *tx)
        .await?,
        0,
    );
    let first_client: i64 = sqlx::Row::get(
        &run(format!(
            "SELECT MIN(id) FROM clients WHERE tenant_id = {tenant}"
        ))
        .fetch_one(&mut *tx)
        .await?,
        0,
    );
    // Message i of a mailing goes to client i; its state and error follow from i.
    let messages = |mailing: String, count: u64, rest: &str| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
             INSERT INTO messages (mailing_id, client_id, state, attempts, next_attempt_at,
                                   last_error, updated_at, sent_at)
             SELECT {mailing}, {first_client} + n.i,
                    CASE WHEN i % 20 = 7 THEN 'failed_permanent' WHEN i % 100 < 60 THEN 'sent'
                         ELSE '{rest}' END,
                    CASE WHEN i % 100 < 60 OR i % 20 = 7 THEN 1 ELSE 0 END, {now},
                    CASE WHEN i % 20 = 7 THEN 'provider said no: code ' || (i % 9) END,
                    {now} - (i % 7200) * 1000,
                    CASE WHEN i % 100 < 60 THEN {now} - (i % 7200) * 1000 END
             FROM n{mailings_join}",
            last = count - 1,
            mailings_join = if mailing == "m.id" {
                format!(" CROSS JOIN mailings m WHERE m.tenant_id = {tenant} AND m.id > {first}")
            } else {
                String::new()
            },
        )
    };
    run(messages(first.to_string(), sizes.big(), "queued"))
        .execute(&mut *tx)
        .await?;
    run(messages("m.id".into(), sizes.per_small(), "sent"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // The planner's statistics and (on PostgreSQL) the visibility map, as autovacuum leaves a
    // table some time after a bulk write: a count then reads the index alone.
    let settle = if url.starts_with("postgres") {
        "VACUUM ANALYZE"
    } else {
        "ANALYZE"
    };
    run(settle.into()).execute(&mut db).await?;
    db.close().await?;
    Ok(())
}

/// Sign in as the bench user; the session cookie (`name=value`).
async fn sign_in(http: &reqwest::Client, base: &str) -> Result<String, BoxError> {
    // The form's token and its cookie first, as a browser has them.
    let form = http.get(format!("{base}/sign-in")).send().await?;
    let form_cookie = form
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("the sign-in page set no cookie")?
        .to_owned();
    let html = form.text().await?;
    let token = html
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("the sign-in form has no token")?;
    let response = http
        .post(format!("{base}/sign-in"))
        .header(reqwest::header::COOKIE, form_cookie)
        .form(&[
            ("username", "bench"),
            ("password", PASSWORD),
            ("token", token),
        ])
        .send()
        .await?;
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("blast_session="))
        .and_then(|v| v.split(';').next())
        .ok_or("the sign-in set no session cookie")?;
    Ok(cookie.to_owned())
}

/// GET `path` `requests` times, one after another; prints the first and the percentiles.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    label: &str,
    path: &str,
    requests: u64,
) -> Result<(), BoxError> {
    let mut times = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        let response = http
            .get(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() || body.is_empty() {
            return Err(format!("{path} answered {status}").into());
        }
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    println!(
        "{label:<34} first {first:>7.1} ms   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1],
    );
    Ok(())
}

async fn run(url: &str, sizes: Sizes, requests: u64) -> Result<(), BoxError> {
    let store = Store::open(url).await?;
    let tenant = store.add_user("bench", PASSWORD).await?.id;
    let started = Instant::now();
    seed(url, tenant.0, &sizes, blast::now_ms()).await?;
    println!(
        "seeded {} mailings and {} messages in {:.1} s",
        sizes.mailings,
        sizes.big() + sizes.per_small() * (sizes.mailings - 1),
        started.elapsed().as_secs_f64()
    );
    let mailings = store.list_mailings(tenant, None, 1).await?;
    let newest = mailings.first().ok_or("no mailing")?.id;
    let all = store.find_mailings(tenant, Default::default(), None, u32::MAX);
    let big = all
        .await?
        .into_iter()
        .min_by_key(|m| m.id)
        .ok_or("no mailing")?
        .id;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let settings = Settings {
        database_url: url.to_owned(),
        ..Settings::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(blast::api::serve(
        listener,
        store.clone(),
        settings,
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let cookie = sign_in(&http, &base).await?;
    println!("{requests} requests a page, one at a time:");
    for (label, path) in [
        // First: its first answer waits for the read the sign-in started.
        ("dashboard's activity", "/dashboard/activity".to_owned()),
        ("dashboard", "/".to_owned()),
        ("mailing list", "/mailings".to_owned()),
        (
            "mailing list, done, email",
            "/mailings?state=done&channel=email".to_owned(),
        ),
        (
            "big mailing (half the messages)",
            format!("/mailings/{big}"),
        ),
        (
            "big mailing, failed only",
            format!("/mailings/{big}?state=failed_permanent"),
        ),
        ("small mailing", format!("/mailings/{newest}")),
    ] {
        measure(&http, &base, &cookie, label, &path, requests).await?;
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let sizes = Sizes {
        mailings: env_or("BENCH_MAILINGS", 10_000).max(2),
        messages: env_or("BENCH_MESSAGES", 1_000_000).max(2),
    };
    let requests = env_or("BENCH_REQUESTS", 20).max(1);
    let production = std::env::var("BENCH_PROFILE").as_deref() == Ok("production");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if !production {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("console.db").display());
            println!("embedded profile (SQLite)");
            return run(&url, sizes, requests).await;
        }
        let server = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let database = format!("blast_console_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await?;
        println!("production profile (PostgreSQL)");
        let result = run(&format!("{server}/{database}"), sizes, requests).await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        result
    })
}
