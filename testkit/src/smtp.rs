//! A local SMTP server for tests: `peers/smtp_peer.py` (aiosmtpd, set up by `scripts/peers`) run
//! as a child process on 127.0.0.1, which records every accepted message as a JSON line.
//!
//! Per-recipient faults: [`SmtpPeerOptions::reject`] answers `550 5.1.1`, `tempfail` answers
//! `451 4.3.0` every time, `tempfail_once` answers 451 to the first `RCPT TO` of the address
//! (over the peer's whole life, across connections) and 250 after. Addresses compare without
//! regard to case. With `auth`, `AUTH PLAIN`/`LOGIN` (no TLS) must succeed before `MAIL`; wrong
//! credentials get 535. Only accepted recipients are recorded; a message with none is not.
//!
//! The interpreter is `$BLAST_TEST_PYTHON` if set, else `<workspace>/.peers/venv/bin/python`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long [`SmtpPeer::start`] waits for the peer to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the peer refuses, and whether it wants AUTH. The default accepts everything.
#[derive(Debug, Clone, Default)]
pub struct SmtpPeerOptions {
    /// Recipients that always get `451 4.3.0 try again later`.
    pub tempfail: Vec<String>,
    /// Recipients whose first `RCPT TO` gets 451 and later ones 250.
    pub tempfail_once: Vec<String>,
    /// Recipients that get `550 5.1.1 no such user`.
    pub reject: Vec<String>,
    /// `(user, password)` that `AUTH PLAIN`/`LOGIN` must present before `MAIL`.
    pub auth: Option<(String, String)>,
    /// Listen on this port instead of a free one (a server that comes back where it was).
    pub port: Option<u16>,
}

/// One accepted message, as recorded by the peer.
#[derive(Debug, Clone, Deserialize)]
pub struct CapturedMail {
    /// The envelope sender (`MAIL FROM`), "" for the null sender.
    pub mail_from: String,
    /// The accepted envelope recipients, in `RCPT TO` order (refused ones left out).
    pub rcpt_tos: Vec<String>,
    /// The decoded `Subject` header.
    pub subject: Option<String>,
    /// Lower-cased header name → decoded value; for a repeated header, the last one.
    pub headers: BTreeMap<String, String>,
    /// The decoded text/plain body (CRLF turned into LF), if any.
    pub text: Option<String>,
    /// The decoded text/html body (CRLF turned into LF), if any.
    pub html: Option<String>,
    /// The message as received after `DATA` (invalid UTF-8 replaced).
    pub raw: String,
}

/// A running peer; [`SmtpPeer::stop`] or dropping it ends the process and deletes its record.
pub struct SmtpPeer {
    child: Child,
    port: u16,
    out: PathBuf,
    /// Held open: the peer exits when it closes, even if this process dies without `Drop`.
    _stdin: Option<ChildStdin>,
}

impl SmtpPeer {
    /// Spawns the peer and waits (up to 30 s) until it listens.
    pub fn start(options: SmtpPeerOptions) -> io::Result<SmtpPeer> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = match std::env::var_os("BLAST_TEST_PYTHON").filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => {
                let root = manifest.parent().unwrap_or(manifest);
                let venv = root.join(".peers/venv/bin/python");
                if !venv.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "SMTP test peer: {} is missing: run scripts/peers",
                            venv.display()
                        ),
                    ));
                }
                venv
            }
        };
        let out = unique_out_path();

        let mut cmd = Command::new(&python);
        cmd.arg(manifest.join("peers/smtp_peer.py"))
            .arg("--port")
            .arg(options.port.unwrap_or(0).to_string())
            .args(["--exit-on-stdin-eof", "--out"])
            .arg(&out);
        for (flag, addresses) in [
            ("--tempfail", &options.tempfail),
            ("--tempfail-once", &options.tempfail_once),
            ("--reject", &options.reject),
        ] {
            for a in addresses {
                cmd.arg(flag).arg(a);
            }
        }
        if let Some((user, password)) = &options.auth {
            cmd.arg("--auth").arg(format!("{user}:{password}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());

        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "SMTP test peer: cannot run {}: {e}; run scripts/peers",
                    python.display()
                ),
            )
        })?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            kill(&mut child);
            return Err(io::Error::other("SMTP test peer: no stdout pipe"));
        };

        // Read the READY line on a thread so that the wait can time out; the thread then drains
        // stdout until the peer exits.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let port = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(Ok(line))) => line
                .strip_prefix("READY ")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .ok_or_else(|| {
                    io::Error::other(format!("SMTP test peer: unexpected first line {line:?}"))
                }),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(io::Error::other(format!(
                    "SMTP test peer exited before listening ({status}); see its stderr \
                     (is aiosmtpd installed? run scripts/peers)"
                )))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("SMTP test peer did not listen within {READY_TIMEOUT:?}"),
            )),
        };
        match port {
            Ok(port) => Ok(SmtpPeer {
                child,
                port,
                out,
                _stdin: stdin,
            }),
            Err(e) => {
                kill(&mut child);
                let _ = std::fs::remove_file(&out);
                Err(e)
            }
        }
    }

    /// The port on 127.0.0.1 it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message accepted so far, in order; empty before the first.
    pub fn messages(&self) -> Vec<CapturedMail> {
        let content = match std::fs::read_to_string(&self.out) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("SMTP test peer: cannot read {}: {e}", self.out.display()),
        };
        content
            .split_inclusive('\n')
            // A line without its newline is still being written.
            .filter(|line| line.ends_with('\n'))
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("SMTP test peer: bad record in {}: {e}", self.out.display())
                })
            })
            .collect()
    }

    /// Kills the peer and waits for it (dropping it does the same).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        kill(&mut self.child);
        let _ = std::fs::remove_file(&self.out);
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `<temp dir>/blast-smtp-peer-<pid>-<counter>-<nanos>.jsonl`, unique within and across processes.
fn unique_out_path() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "blast-smtp-peer-{}-{n}-{nanos}.jsonl",
        std::process::id()
    ))
}
