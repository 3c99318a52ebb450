//! End-to-end benchmark of the production profile: N clients in a fresh PostgreSQL database,
//! one SMS mailing, W real `blast worker` processes sharing Redis queues, and the Rust SMS stub
//! on 127.0.0.1. Prints import speed, materialization time, messages/s and each worker's peak
//! RSS, and checks that the provider saw every message exactly once.
//!
//! `cargo bench --bench production` (N = 1,000,000, W = 2), or
//! `BENCH_RECIPIENTS=100000 BENCH_WORKERS=3 cargo bench --bench production`.
//! PostgreSQL and Redis come from `BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and `BENCH_REDIS_URL` (default
//! `redis://127.0.0.1:6379`); the database is created and dropped, the Redis keys live under a
//! prefix of their own and are deleted. `BLAST_*` variables set for the benchmark reach the
//! workers, so any worker setting can be tried (`BLAST_WORKER__BATCH_SIZE=500 ...`).
//!
//! `BENCH_FAULT=flushdb` or `BENCH_FAULT=restart` loses Redis's data once the provider has
//! seen `BENCH_FAULT_AT` (default 0.5) of the messages: a `FLUSHDB`, or a `kill -9` of Redis
//! and a start again without persistence. Either runs on a `redis-server` of the benchmark's
//! own (on a free loopback port, nothing on disk), so no other keys are touched. It prints
//! when Redis answered again, the first delivery after that and the longest pause in
//! deliveries. For the figures:
//! `BENCH_RECIPIENTS=20000 BLAST_SMS__RATE_LIMIT_PER_SECOND=1000 BENCH_FAULT=flushdb cargo bench --bench production`.
//!
//! The same run first measures the machine's ceiling: what bare HTTP clients reach against the
//! same stub, in as many processes as there are workers, each with `sms.max_in_flight`
//! requests in flight on kept-alive connections (`BENCH_CEILING_REQUESTS`, default the
//! smaller of N and 200,000), and prints blast's throughput as a share of it.
//!
//! `BENCH_CANCEL_AT=0.3` cancels the mailing once the provider has seen that share of it, as
//! the API does (the store, then the notice on Redis), and prints how many requests the
//! provider still received after the cancel was acknowledged, and the last one's delay.

mod common;

use blast::domain::{MailingState, MessageState};
use blast::store::Store;
use blast_testkit::{SmsStub, peak_rss_mb};
use sqlx::Connection;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench.jwt";

type BoxError = Box<dyn std::error::Error>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `blast worker` process, killed if the benchmark fails before stopping it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn admin_connection(server: &str) -> Result<sqlx::PgConnection, BoxError> {
    Ok(sqlx::PgConnection::connect(&format!("{server}/postgres")).await?)
}

/// Delete every Redis key under `prefix`.
async fn delete_redis_keys(url: &str, prefix: &str) -> Result<(), BoxError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// How Redis loses its data mid-mailing (`BENCH_FAULT`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    FlushDb,
    Restart,
}

/// A `redis-server` of the benchmark's own, on a free loopback port, keeping nothing on disk.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Result<OwnRedis, BoxError> {
        Ok(OwnRedis {
            port,
            child: Self::spawn(port)?,
        })
    }

    fn spawn(port: u16) -> Result<Child, BoxError> {
        Ok(Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server (BENCH_FAULT needs it): {e}"))?)
    }

    /// `kill -9` and start again on the same port, empty.
    async fn restart(&mut self) -> Result<(), BoxError> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = Self::spawn(self.port)?;
        self.answering().await
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Wait until it answers PING.
    async fn answering(&self) -> Result<(), BoxError> {
        let client = redis::Client::open(self.url())?;
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err("the benchmark's redis-server does not answer".into())
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a cancelled mailing has no row left that a worker may still send.
async fn settled(store: &Store, m: &blast::store::Mailing) -> Result<bool, BoxError> {
    let counts = store.mailing_counts(m.id).await?;
    Ok(counts.get(MessageState::Sent) + counts.get(MessageState::Cancelled) == counts.total())
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The environment a bare client process is started with (`BENCH_ROLE=bare-client`).
const ROLE: &str = "BENCH_ROLE";

/// One process of the ceiling measurement: `BENCH_BARE_COUNT` requests to the stub at
/// `BENCH_BARE_URL`, `BENCH_BARE_IN_FLIGHT` at a time, as blast's SMS channel sends them
/// (a kept-alive reqwest client, bearer token, JSON body), and nothing else.
fn bare_client() -> Result<(), BoxError> {
    let url: String = std::env::var("BENCH_BARE_URL")?;
    let count: i64 = env_or("BENCH_BARE_COUNT", 0);
    let first_id: i64 = env_or("BENCH_BARE_FIRST_ID", 1);
    let in_flight: usize = env_or("BENCH_BARE_IN_FLIGHT", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(in_flight)
            .build()?;
        let next = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..in_flight {
            let (http, next, url) = (http.clone(), next.clone(), url.clone());
            senders.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<(), reqwest::Error>(());
                    }
                    let id = first_id + i;
                    let body = serde_json::json!({
                        "id": id,
                        "phone": 79_100_000_000_i64 + i,
                        "text": format!("Hello client {i}, your code is {id}"),
                    });
                    http.post(format!("{url}/v1/send/{id}"))
                        .bearer_auth(TOKEN)
                        .json(&body)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await?;
                }
            });
        }
        while let Some(sent) = senders.join_next().await {
            sent??;
        }
        Ok(())
    })
}

/// Requests per second that `processes` bare clients, each with `in_flight` requests in
/// flight, reach against a stub of their own: what this machine allows blast at most.
async fn ceiling(processes: usize, in_flight: usize, requests: usize) -> Result<f64, BoxError> {
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await?;
    let per_process = requests.div_ceil(processes);
    let started = Instant::now();
    let mut clients = Vec::new();
    for p in 0..processes {
        clients.push(
            tokio::process::Command::new(std::env::current_exe()?)
                .env(ROLE, "bare-client")
                .env("BENCH_BARE_URL", stub.base_url())
                .env("BENCH_BARE_COUNT", per_process.to_string())
                .env("BENCH_BARE_FIRST_ID", (1 + p * per_process).to_string())
                .env("BENCH_BARE_IN_FLIGHT", in_flight.to_string())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    for mut client in clients {
        let status = client.wait().await?;
        if !status.success() {
            return Err(format!("a bare client exited with {status}").into());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let delivered = stub.delivered_count();
    if delivered != per_process * processes {
        return Err(format!(
            "the bare clients delivered {delivered} of {}",
            per_process * processes
        )
        .into());
    }
    Ok(delivered as f64 / secs)
}

fn main() -> Result<(), BoxError> {
    if std::env::var(ROLE).as_deref() == Ok("bare-client") {
        return bare_client();
    }
    let n: usize = env_or("BENCH_RECIPIENTS", 1_000_000);
    let workers: usize = env_or("BENCH_WORKERS", 2);
    let pg_server = std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let fault = match std::env::var("BENCH_FAULT").as_deref() {
        Ok("flushdb") => Some(Fault::FlushDb),
        Ok("restart") => Some(Fault::Restart),
        Ok("") | Err(_) => None,
        Ok(other) => return Err(format!("BENCH_FAULT={other}: expected flushdb or restart").into()),
    };
    let fault_at: f64 = env_or("BENCH_FAULT_AT", 0.5);
    let mut own_redis = match fault {
        Some(_) => Some(OwnRedis::start(free_port()?)?),
        None => None,
    };
    let redis_url = match &own_redis {
        Some(own) => own.url(),
        None => {
            std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
        }
    };
    let database = format!("blast_bench_{}", std::process::id());
    let prefix = format!("blast-bench-{:08x}", rand::random::<u32>());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if let Some(own) = &own_redis {
            own.answering().await?;
        }
        let mut admin = admin_connection(&pg_server).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await?;
        let result = run(
            n,
            workers,
            &format!("{pg_server}/{database}"),
            &redis_url,
            &prefix,
            fault
                .zip(own_redis.as_mut())
                .map(|(f, own)| (f, fault_at, own)),
        )
        .await;
        // Clean up whatever happened.
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        let _ = delete_redis_keys(&redis_url, &prefix).await;
        result
    })
}

async fn run(
    n: usize,
    worker_count: usize,
    url: &str,
    redis_url: &str,
    prefix: &str,
    mut fault: Option<(Fault, f64, &mut OwnRedis)>,
) -> Result<(), BoxError> {
    let in_flight: usize = env_or("BLAST_SMS__MAX_IN_FLIGHT", 64);
    let ceiling_requests: usize = env_or("BENCH_CEILING_REQUESTS", n.min(200_000));
    let ceiling = ceiling(worker_count, in_flight, ceiling_requests).await?;
    let store = Store::open(url).await?;
    let tenant = store.add_user("bench", "bench password").await?.id;
    let import_secs = common::import_audience(&store, tenant, n).await?;

    let stub = SmsStub::start(TOKEN, Duration::ZERO).await?;
    let dir = tempfile::tempdir()?;
    let mut workers: Vec<Worker> = Vec::new();
    for i in 0..worker_count {
        let log = std::fs::File::create(dir.path().join(format!("worker{i}.log")))?;
        let child = Command::new(env!("CARGO_BIN_EXE_blast"))
            .arg("worker")
            .current_dir(dir.path())
            .env("BLAST_DATABASE_URL", url)
            .env("BLAST_REDIS__URL", redis_url)
            .env("BLAST_REDIS__KEY_PREFIX", prefix)
            .env("BLAST_SMS__BASE_URL", stub.base_url())
            .env("BLAST_SMS__TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        workers.push(Worker(child));
    }
    // Let the workers connect and register before the mailing starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let now = blast::now_ms();
    let mailing = common::create_mailing(&store, tenant, now).await?;
    // The scheduler of one worker materializes the rows in one transaction that also marks the
    // mailing running: the first time it is seen running, its rows exist.
    let started = Instant::now();
    let mut materialized_at: Option<i64> = None;
    let mut last_report = Instant::now();
    // When Redis answered again after the fault (ms since the epoch).
    let mut redis_back_at: Option<i64> = None;
    let mut cancel_at: Option<f64> = std::env::var("BENCH_CANCEL_AT")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut cancelled_at: Option<i64> = None;
    let queue = blast::queue::Queue::open(
        &store,
        &blast::settings::RedisSettings {
            url: blast::settings::Secret::new(redis_url),
            key_prefix: prefix.to_owned(),
            ..Default::default()
        },
    )
    .await?;
    let finished = loop {
        if cancel_at
            .take_if(|at| stub.requests_count() as f64 >= *at * n as f64)
            .is_some()
        {
            store.cancel_mailing(tenant, mailing.id).await?;
            blast::halts::announce(&queue, mailing.id).await;
            cancelled_at = Some(blast::now_ms());
            eprintln!(
                "  … cancelled at {} messages at the provider",
                stub.requests_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some((kind, at, own)) =
            fault.take_if(|(_, at, _)| stub.requests_count() as f64 >= *at * n as f64)
        {
            let seen = stub.requests_count();
            match kind {
                Fault::FlushDb => {
                    let client = redis::Client::open(own.url())?;
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("FLUSHDB").query_async::<()>(&mut conn).await?;
                }
                Fault::Restart => own.restart().await?,
            }
            redis_back_at = Some(blast::now_ms());
            eprintln!(
                "  … {kind:?} at {:.0} % ({seen} messages at the provider)",
                at * 100.0
            );
        }
        let m = store.mailing(tenant, mailing.id).await?;
        if materialized_at.is_none() && m.state != MailingState::Scheduled {
            materialized_at = Some(blast::now_ms());
        }
        if m.state == MailingState::Done || (cancelled_at.is_some() && settled(&store, &m).await?) {
            break m;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  … {:.0} s: {} messages at the provider",
                started.elapsed().as_secs_f64(),
                stub.requests_count()
            );
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err("the mailing did not finish in an hour".into());
        }
        for (i, w) in workers.iter_mut().enumerate() {
            if let Some(status) = w.0.try_wait()? {
                return Err(format!(
                    "worker {i} exited with {status}; its log: {}",
                    dir.path().join(format!("worker{i}.log")).display()
                )
                .into());
            }
        }
    };
    let rss: Vec<f64> = workers
        .iter()
        .map(|w| peak_rss_mb(&w.0.id().to_string()))
        .collect();
    for w in &workers {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(w.0.id().to_string())
            .status();
    }
    for w in &mut workers {
        w.0.wait()?;
    }

    let counts = store.mailing_counts(mailing.id).await?;
    let sent = counts.get(MessageState::Sent);
    let started_at = finished.started_at.unwrap_or(now);
    let finished_at = finished
        .finished_at
        .unwrap_or(started_at)
        .max(started_at + 1);
    let materialized_at = materialized_at.unwrap_or(started_at);
    let materialize_ms = (materialized_at - started_at).max(0);
    let total_ms = finished_at - started_at;
    let delivery_ms = (finished_at - materialized_at).max(1);
    let deliveries = stub.deliveries();
    let repeats = deliveries.values().filter(|&&c| c > 1).count();

    println!(
        "blast production-profile benchmark ({n} recipients, PostgreSQL + Redis, {worker_count} worker processes, SMS stub on 127.0.0.1)"
    );
    println!(
        "  import            {n} clients in {import_secs:.2} s ({:.0} rows/s)",
        n as f64 / import_secs
    );
    println!(
        "  materialize       {} message rows in {:.2} s (scheduler start to rows committed, ±0.05 s)",
        finished.recipients,
        materialize_ms as f64 / 1000.0
    );
    println!(
        "  delivered         {sent} of {n} in {:.2} s after materialization ({:.2} s from start)",
        delivery_ms as f64 / 1000.0,
        total_ms as f64 / 1000.0
    );
    let throughput = sent as f64 * 1000.0 / delivery_ms as f64;
    println!(
        "  throughput        {throughput:.0} messages/s ({:.0} messages/s including materialization)",
        sent as f64 * 1000.0 / total_ms as f64
    );
    println!(
        "  ceiling           {ceiling:.0} requests/s from bare clients ({worker_count} processes x {in_flight} in flight, the same stub): blast at {:.0} % of it",
        throughput * 100.0 / ceiling
    );
    println!(
        "  end to end        {:.1} s: import, materialize and deliver {n} recipients",
        import_secs + total_ms as f64 / 1000.0
    );
    for (i, mb) in rss.iter().enumerate() {
        println!("  worker {i} peak RSS {mb:.0} MB");
    }
    if let Some(back_at) = redis_back_at {
        let mut times: Vec<i64> = stub.requests().iter().map(|r| r.received_at).collect();
        times.sort_unstable();
        let first_after = times.iter().find(|&&t| t >= back_at).map(|t| t - back_at);
        let after: Vec<i64> = std::iter::once(back_at)
            .chain(times.iter().copied().filter(|&t| t >= back_at))
            .collect();
        let longest_pause = after.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        println!(
            "  after the fault   first delivery {} ms after Redis answered again; longest pause in deliveries {longest_pause} ms",
            first_after.map_or("never".into(), |ms| ms.to_string())
        );
    }
    println!(
        "  provider saw      {} unique messages, {} requests, {repeats} delivered twice",
        deliveries.len(),
        stub.requests_count()
    );
    if let Some(acknowledged) = cancelled_at {
        let after: Vec<i64> = stub
            .requests()
            .iter()
            .map(|r| r.received_at - acknowledged)
            .filter(|&d| d > 0)
            .collect();
        println!(
            "  after the cancel  {} requests reached the provider after it was acknowledged, the last {} ms after it; {} of {n} sent",
            after.len(),
            after.iter().max().copied().unwrap_or(0),
            sent
        );
        if sent as usize != deliveries.len() || repeats != 0 {
            return Err(format!(
                "{sent} recorded sent, {} at the provider, {repeats} twice",
                deliveries.len()
            )
            .into());
        }
        return Ok(());
    }
    if sent as usize != n || deliveries.len() != n || repeats != 0 {
        return Err(format!(
            "expected {n} messages sent once each; {sent} recorded sent, {} at the provider, {repeats} twice",
            deliveries.len()
        )
        .into());
    }
    Ok(())
}
