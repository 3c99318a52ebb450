//! A real browser for page tests: Debian's `chromium`, headless, driven over WebDriver by its
//! `chromedriver` on a loopback port (`scripts/peers` installs both when missing).

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why no browser could be had.
#[derive(Debug)]
pub enum BrowserError {
    /// chromedriver is not installed or would not start.
    Driver(String),
    /// chromedriver ran, but no browser session could be opened.
    Session(String),
}

impl std::fmt::Display for BrowserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrowserError::Driver(e) => write!(f, "chromedriver: {e} (scripts/peers installs it)"),
            BrowserError::Session(e) => write!(f, "browser session: {e}"),
        }
    }
}

impl std::error::Error for BrowserError {}

/// A headless chromium session; the driver is stopped when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Start chromedriver on a free port and open a session in a fresh headless chromium.
    pub async fn start() -> Result<Browser, BrowserError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| BrowserError::Driver(e.to_string()))?
            .port();
        let driver_bin =
            std::env::var("BLAST_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BrowserError::Driver(format!("cannot run {driver_bin}: {e}")))?;
        let mut browser_driver = DriverGuard(Some(driver));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(BrowserError::Driver("did not listen within 20 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new",
                    // Tests run as root in containers, where chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                ]
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| BrowserError::Session(e.to_string()))?;
        let driver = browser_driver
            .0
            .take()
            .ok_or_else(|| BrowserError::Driver("lost".into()))?;
        Ok(Browser { client, driver })
    }

    /// End the session and stop the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Stops a driver that was started but never handed to a [`Browser`].
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
