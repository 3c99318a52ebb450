//! A stand-in for the SMS provider: `POST /v1/send/{id}`, `Authorization: Bearer <JWT>`,
//! `{"id": int64, "phone": int64, "text": string}` → 200 `{"code":0,"message":"OK"}`.
//!
//! It speaks HTTP/1.1 by hand (keep-alive, Content-Length bodies) so that it can misbehave
//! exactly like a real provider on a bad day: answer 5xx, hang past the client's timeout, reset
//! the connection, cut its answer off halfway, or send a malformed 200; it can also be killed
//! (every connection reset at once, mid-request or mid-answer) and started again on the same
//! port. Like the real provider it deduplicates by message id: a second successful request for
//! an id is recorded but delivers nothing new. What it acknowledged (a whole `200 {"code":0}`
//! written to the socket) is kept across a kill, as a real provider's records would be.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the stub answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 200 `{"code":0}`: delivered.
    None,
    /// This HTTP status with a small error body; nothing delivered.
    Status(u16),
    /// Wait this long, then answer 200 (the client has usually given up by then). Delivered.
    Hang(Duration),
    /// Close the connection with a TCP reset before answering; nothing delivered.
    Reset,
    /// 200 with a body that is not the documented JSON; nothing delivered.
    Malformed200,
    /// 200 with the documented JSON's Content-Length, but only half of it written before the
    /// connection is reset. Delivered: the provider took it and its answer was cut off.
    Truncated200,
}

/// One request as the stub saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRequest {
    pub id: i64,
    pub phone: i64,
    pub text: String,
    /// Unix milliseconds when the request arrived.
    pub received_at: i64,
    pub answer: Fault,
    /// The answer was a clean acknowledgement of an id acknowledged before.
    pub repeat_ack: bool,
}

type FaultPlan = dyn Fn(i64, u32) -> Fault + Send + Sync;

struct State {
    token: String,
    latency: Duration,
    plan: Box<FaultPlan>,
    requests: Mutex<Vec<StubRequest>>,
    attempts: Mutex<HashMap<i64, u32>>,
    /// Ids acknowledged as delivered, to mark repeats without scanning every request.
    acknowledged: Mutex<HashSet<i64>>,
    /// How many times the stub was started again after a kill.
    lives: std::sync::atomic::AtomicU64,
    /// Ids whose whole `200 {"code":0}` answer was written to the socket: the only messages a
    /// client can have seen acknowledged.
    answered: Mutex<HashSet<i64>>,
    rejected: Mutex<u64>,
}

/// A running stub; stops when dropped.
pub struct SmsStub {
    addr: SocketAddr,
    state: Arc<State>,
    /// `Some(n)` while the stub's `n`th life is serving; `None` while it is killed. Connections
    /// of an earlier life are reset as soon as it changes; dropping it stops everything.
    life: watch::Sender<Option<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    id: i64,
    phone: i64,
    text: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl SmsStub {
    /// A stub that accepts everything after `latency`.
    pub async fn start(token: &str, latency: Duration) -> std::io::Result<SmsStub> {
        SmsStub::with_faults(token, latency, |_, _| Fault::None).await
    }

    /// A stub whose answer to the `n`th request (1-based) for message `id` is `plan(id, n)`.
    pub async fn with_faults(
        token: &str,
        latency: Duration,
        plan: impl Fn(i64, u32) -> Fault + Send + Sync + 'static,
    ) -> std::io::Result<SmsStub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            token: token.to_owned(),
            latency,
            plan: Box::new(plan),
            requests: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            acknowledged: Mutex::new(HashSet::new()),
            answered: Mutex::new(HashSet::new()),
            lives: std::sync::atomic::AtomicU64::new(0),
            rejected: Mutex::new(0),
        });
        let (life, watching) = watch::channel(Some(0));
        tokio::spawn(accept_loop(listener, state.clone(), watching, 0));
        Ok(SmsStub { addr, state, life })
    }

    /// Kill the provider as `kill -9` would: stop listening and reset every connection at
    /// once, whatever it was doing (reading a request, waiting, writing an answer). New
    /// connections are refused until [`SmsStub::restart`].
    pub fn kill(&self) {
        self.life.send_replace(None);
    }

    /// Start serving again on the same port after [`SmsStub::kill`], with the same records.
    pub async fn restart(&self) -> std::io::Result<()> {
        let previous = self.life.borrow().is_none().then(|| {
            self.state
                .lives
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1
        });
        let Some(generation) = previous else {
            return Ok(()); // not killed: still serving
        };
        // The killed accept loop drops its listener as soon as it sees the kill; until then
        // the port may still be taken.
        let mut tries = 0;
        let listener = loop {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            match socket.bind(self.addr).and_then(|()| socket.listen(1024)) {
                Ok(listener) => break listener,
                Err(e) if tries >= 100 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.life.send_replace(Some(generation));
        tokio::spawn(accept_loop(
            listener,
            self.state.clone(),
            self.life.subscribe(),
            generation,
        ));
        Ok(())
    }

    /// Ids whose whole `200 {"code":0}` answer the stub wrote to a socket: a client can have
    /// seen an acknowledgement for these and no others.
    pub fn answered(&self) -> HashSet<i64> {
        self.state
            .answered
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request that carried a valid token and body, in arrival order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many requests were recorded, without copying them.
    pub fn requests_count(&self) -> usize {
        self.state
            .requests
            .lock()
            .map(|r| r.len())
            .unwrap_or_default()
    }

    /// Requests refused for a wrong token or a malformed body.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.lock().map(|r| *r).unwrap_or_default()
    }

    /// Message id → how many requests delivered it (None, Hang or Truncated200 answers,
    /// including requests whose answer a kill cut off).
    pub fn deliveries(&self) -> HashMap<i64, u32> {
        let mut out = HashMap::new();
        for r in self.requests() {
            if matches!(r.answer, Fault::None | Fault::Hang(_) | Fault::Truncated200) {
                *out.entry(r.id).or_insert(0) += 1;
            }
        }
        out
    }

    /// Unique ids delivered so far.
    pub fn delivered_count(&self) -> usize {
        self.deliveries().len()
    }
}

/// Whether life `generation` is over (killed, or the stub dropped).
fn over(life: &watch::Receiver<Option<u64>>, generation: u64) -> bool {
    *life.borrow() != Some(generation)
}

/// Wait until life `generation` is over.
async fn ended(mut life: watch::Receiver<Option<u64>>, generation: u64) {
    while !over(&life, generation) {
        if life.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    life: watch::Receiver<Option<u64>>,
    generation: u64,
) {
    loop {
        tokio::select! {
            _ = ended(life.clone(), generation) => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, state.clone(), life.clone(), generation));
                }
            }
        }
    }
}

/// A parsed request: path, authorization header, body.
struct Http {
    path: String,
    auth: Option<String>,
    body: Vec<u8>,
    close: bool,
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Http> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let request_line = lines.next()?;
            let path = request_line.split(' ').nth(1)?.to_owned();
            let mut length = 0usize;
            let mut auth = None;
            let mut close = false;
            for line in lines {
                let (name, value) = line.split_once(':')?;
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().ok()?,
                    "authorization" => auth = Some(value.to_owned()),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
            let total = end + 4 + length;
            while buf.len() < total {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Some(Http {
                path,
                auth,
                body,
                close,
            });
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(
    mut stream: TcpStream,
    state: Arc<State>,
    life: watch::Receiver<Option<u64>>,
    generation: u64,
) {
    let mut buf = Vec::new();
    // Killed at any point of a request, the connection is reset, as the kernel does for a
    // process killed with data unread: the client sees it cut off, with or without an answer.
    tokio::select! {
        _ = ended(life.clone(), generation) => {}
        () = exchange(&mut stream, &mut buf, &state) => return,
    }
    let _ = stream.set_zero_linger();
}

/// Answer requests on one connection until it closes.
async fn exchange(stream: &mut TcpStream, buf: &mut Vec<u8>, state: &State) {
    loop {
        let Some(req) = read_request(stream, buf).await else {
            return;
        };
        let answer = handle(state, &req).await;
        match answer {
            Answer::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Answer::Cut(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.flush().await;
                let _ = stream.set_zero_linger();
                return;
            }
            Answer::Bytes(bytes, acknowledged) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
                if let (Some(id), Ok(mut answered)) = (acknowledged, state.answered.lock()) {
                    answered.insert(id);
                }
            }
        }
        if req.close {
            return;
        }
    }
}

enum Answer {
    /// A whole answer; with the message id when it acknowledges that message.
    Bytes(Vec<u8>, Option<i64>),
    /// The first part of an answer, then a reset.
    Cut(Vec<u8>),
    Reset,
}

async fn handle(state: &State, req: &Http) -> Answer {
    let expected = format!("Bearer {}", state.token);
    if req.auth.as_deref() != Some(expected.as_str()) {
        if let Ok(mut n) = state.rejected.lock() {
            *n += 1;
        }
        return Answer::Bytes(response(401, r#"{"code":401,"message":"bad token"}"#), None);
    }
    let url_id = req
        .path
        .strip_prefix("/v1/send/")
        .and_then(|id| id.parse::<i64>().ok());
    let body: Option<Body> = serde_json::from_slice(&req.body).ok();
    let (Some(url_id), Some(body)) = (url_id, body) else {
        if let Ok(mut n) = state.rejected.lock() {
            *n += 1;
        }
        return Answer::Bytes(
            response(400, r#"{"code":400,"message":"bad request"}"#),
            None,
        );
    };
    if body.id != url_id {
        if let Ok(mut n) = state.rejected.lock() {
            *n += 1;
        }
        return Answer::Bytes(
            response(400, r#"{"code":400,"message":"id mismatch"}"#),
            None,
        );
    }
    let nth = match state.attempts.lock() {
        Ok(mut attempts) => {
            let n = attempts.entry(body.id).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    let fault = (state.plan)(body.id, nth);
    let received_at = now_ms();
    let repeat_ack = matches!(fault, Fault::None)
        && state
            .acknowledged
            .lock()
            .is_ok_and(|mut acked| !acked.insert(body.id));
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(StubRequest {
            id: body.id,
            phone: body.phone,
            text: body.text,
            received_at,
            answer: fault,
            repeat_ack,
        });
    }
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let ok = || response(200, r#"{"code":0,"message":"OK"}"#);
    match fault {
        Fault::None => Answer::Bytes(ok(), Some(body.id)),
        Fault::Status(status) => Answer::Bytes(
            response(
                status,
                &format!(r#"{{"code":{status},"message":"injected"}}"#),
            ),
            None,
        ),
        Fault::Hang(delay) => {
            tokio::time::sleep(delay).await;
            Answer::Bytes(ok(), Some(body.id))
        }
        Fault::Reset => Answer::Reset,
        Fault::Malformed200 => Answer::Bytes(response(200, "<html>gateway hiccup</html>"), None),
        Fault::Truncated200 => {
            let mut bytes = ok();
            bytes.truncate(bytes.len() - 12);
            Answer::Cut(bytes)
        }
    }
}
