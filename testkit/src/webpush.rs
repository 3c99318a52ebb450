//! A local web push service for tests: the npm package `web-push-testing` (installed by
//! `scripts/peers` under `.peers/node`) run with Node as a child process. It checks the VAPID
//! signature against the subscription's applicationServerKey, decrypts the aes128gcm payload
//! and keeps it; an expired subscription answers 410.
//!
//! Node is `$BLAST_TEST_NODE` if set, else `node` on the PATH.

use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`WebPushPeer::start`] waits for the service to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A subscription the service made, as a browser would hand it to a site.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerSubscription {
    pub endpoint: String,
    pub keys: PeerKeys,
    /// The service's name for the subscription (to read or expire it).
    #[serde(rename = "clientHash")]
    pub client_hash: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerKeys {
    pub p256dh: String,
    pub auth: String,
}

/// The running service; dropping it kills the process.
pub struct WebPushPeer {
    child: Child,
    base: String,
    http: reqwest::Client,
}

fn server_script() -> io::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    let script = root.join(".peers/node/node_modules/web-push-testing/src/bin/server.js");
    if script.exists() {
        Ok(script)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "web push test peer: {} is missing: run scripts/peers",
                script.display()
            ),
        ))
    }
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl WebPushPeer {
    /// Spawn the service on a free port and wait until it answers.
    pub async fn start() -> io::Result<WebPushPeer> {
        let script = server_script()?;
        let node = std::env::var_os("BLAST_TEST_NODE")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "node".into());
        let port = free_port()?;
        let child = Command::new(node)
            .arg(script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // The service names its endpoints after "localhost".
        let peer = WebPushPeer {
            child,
            base: format!("http://localhost:{port}"),
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            let status = peer.http.post(format!("{}/status", peer.base)).send().await;
            if matches!(&status, Ok(r) if r.status().is_success()) {
                return Ok(peer);
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "web push test peer did not start",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new subscription for a site whose VAPID public key is `application_server_key`.
    pub async fn subscribe(&self, application_server_key: &str) -> io::Result<PeerSubscription> {
        #[derive(Deserialize)]
        struct Answer {
            data: PeerSubscription,
        }
        let answer: Answer = self
            .post(
                "/subscribe",
                serde_json::json!({"userVisibleOnly": "true", "applicationServerKey": application_server_key}),
            )
            .await?;
        Ok(answer.data)
    }

    /// The decrypted payloads the service took for a subscription, in order.
    pub async fn messages(&self, client_hash: &str) -> io::Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Messages {
            messages: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            data: Messages,
        }
        let answer: Answer = self
            .post(
                "/get-notifications",
                serde_json::json!({"clientHash": client_hash}),
            )
            .await?;
        Ok(answer.data.messages)
    }

    /// From now on the service answers 410 Gone for this subscription.
    pub async fn expire(&self, client_hash: &str) -> io::Result<()> {
        self.http
            .post(format!("{}/expire-subscription/{client_hash}", self.base))
            .send()
            .await
            .map_err(io::Error::other)?
            .error_for_status()
            .map_err(io::Error::other)?;
        Ok(())
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> io::Result<T> {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(io::Error::other)?
            .error_for_status()
            .map_err(io::Error::other)?
            .json()
            .await
            .map_err(io::Error::other)
    }
}

impl Drop for WebPushPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
