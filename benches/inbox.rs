//! Benchmark of the in-app inbox: one `blast up` process (embedded profile, API and worker)
//! holds 10,000 WebSockets of 10,000 clients, opened from this process over 127.0.0.1; an
//! `inapp` mailing to all of them is then stored by the worker and pushed to every socket,
//! and each app acknowledges its item. Prints how long the sockets took to open, the server's
//! resident memory with them open and at its peak, and the fan-out latency (from the item
//! stored to its frame read by the app) at p50, p99 and worst.
//!
//! `cargo bench --bench inbox`, or BENCH_SOCKETS for another count.

use blast::domain::ChannelKind;
use blast::ids::ClientId;
use blast_testkit::{fixtures, peak_rss_mb, percentile, rss_mb};
use futures::{SinkExt, StreamExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sockets opened at once while connecting.
const CONNECTING_AT_ONCE: usize = 200;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server, stopped when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open one client's socket and wait for its `ready` frame.
async fn open(ws_base: &str, token: &str) -> Result<Socket, BoxError> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(
        format!("{ws_base}/api/v1/inbox/ws?token={token}"),
        Some(config),
        true,
    )
    .await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"ready\"") => return Ok(socket),
            Some(Ok(_)) => {}
            _ => return Err("the socket closed before it was ready".into()),
        }
    }
}

/// Wait for the socket's first item, acknowledge it, and answer how long it took from being
/// stored (ms).
async fn first_item(mut socket: Socket) -> Result<f64, BoxError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text)?;
                if frame["type"] != "item" {
                    continue;
                }
                let latency =
                    (blast::now_ms() - frame["item"]["created_at"].as_i64().unwrap_or(0)) as f64;
                let ack = serde_json::json!({"type": "ack", "ids": [frame["item"]["id"]]});
                socket.send(Message::Text(ack.to_string().into())).await?;
                return Ok(latency);
            }
            Some(Ok(_)) => {}
            _ => return Err("the socket closed before its item".into()),
        }
    }
}

fn main() -> Result<(), BoxError> {
    let sockets = env_or("BENCH_SOCKETS", 10_000) as usize;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = blast::store::Store::open(&url).await?;
            let tenant = store.add_user("bench", "bench password").await?.id;
            let clients = fixtures::numbered_clients("79", "client ", sockets, "bench");
            store.import_clients(tenant, &clients, |_| {}).await?;
            let signer = blast::app::inbox::tokens(&store).await?;
            let mut tokens = Vec::with_capacity(sockets);
            for client in store
                .list_clients(
                    tenant,
                    &blast::store::ClientQuery {
                        limit: sockets as u32,
                        ..Default::default()
                    },
                )
                .await?
            {
                let id: ClientId = client.id;
                let token = blast::app::inbox::token(&store, &signer, tenant, id, 3600).await?;
                tokens.push(token.token);
            }

            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let log = std::fs::File::create(dir.path().join("blast-up.log"))?;
            let server = Server(
                Command::new(env!("CARGO_BIN_EXE_blast"))
                    .args(["up", "--listen", &format!("127.0.0.1:{port}")])
                    .current_dir(dir.path())
                    .env("BLAST_DATABASE_URL", &url)
                    .env("BLAST_INAPP__MAX_IN_FLIGHT", "256")
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?,
            );
            let pid = server.0.id();
            let health = format!("http://127.0.0.1:{port}/health");
            let deadline = Instant::now() + Duration::from_secs(60);
            while reqwest::get(&health).await.is_err() {
                if Instant::now() > deadline {
                    return Err("blast up did not answer /health within 60 s".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let idle_mb = rss_mb(&pid.to_string());

            println!(
                "blast in-app inbox benchmark (embedded profile, {sockets} WebSockets on one `blast up`, 127.0.0.1)"
            );
            let ws_base = format!("ws://127.0.0.1:{port}");
            let connecting = Instant::now();
            let mut open_sockets = Vec::with_capacity(sockets);
            for chunk in tokens.chunks(CONNECTING_AT_ONCE) {
                let opened = futures::future::join_all(
                    chunk.iter().map(|token| open(&ws_base, token)),
                )
                .await;
                for socket in opened {
                    open_sockets.push(socket?);
                }
            }
            let connect_secs = connecting.elapsed().as_secs_f64();
            let open_mb = rss_mb(&pid.to_string());
            println!(
                "  {sockets} sockets open in {connect_secs:.1} s; server RSS {idle_mb:.0} MB before, {open_mb:.0} MB with them open ({:.1} KB a socket)",
                (open_mb - idle_mb) * 1024.0 / sockets as f64
            );

            let waiting: Vec<_> = open_sockets
                .into_iter()
                .map(|socket| tokio::spawn(first_item(socket)))
                .collect();
            let now = blast::now_ms();
            let started = Instant::now();
            blast::app::mailings::create(
                &store,
                tenant,
                fixtures::mailing_to_tag(
                    ChannelKind::InApp,
                    "Hello {{ name }}",
                    "bench",
                    now,
                    now + 3_600_000,
                ),
                blast::template::TextLimits::with_default_budget(4000),
            )
            .await?;
            let mut latencies = Vec::with_capacity(sockets);
            for task in waiting {
                latencies.push(task.await??);
            }
            let fan_out_secs = started.elapsed().as_secs_f64();
            latencies.sort_by(f64::total_cmp);
            println!(
                "  fan-out: {sockets} items stored and pushed in {fan_out_secs:.1} s ({:.0} items/s); stored → read by the app p50 {:.0} ms, p99 {:.0} ms, worst {:.0} ms",
                sockets as f64 / fan_out_secs,
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                latencies.last().copied().unwrap_or_default(),
            );
            println!(
                "  server RSS at its peak: {:.0} MB",
                peak_rss_mb(&pid.to_string())
            );
            Ok(())
        })
}
