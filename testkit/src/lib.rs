//! Local test peers for blast's tests and benchmarks (they listen on 127.0.0.1 only), and the
//! fixtures both build blast's values with.

pub mod browser;
pub mod fixtures;
pub mod sms;
pub mod smtp;
pub mod telegram;
pub mod webpush;

pub use browser::{Browser, BrowserError};
/// The WebDriver client page tests drive [`Browser`] with.
pub use fantoccini;
pub use sms::{Fault, SmsStub, StubRequest};
pub use smtp::{CapturedMail, SmtpPeer, SmtpPeerOptions};
pub use telegram::{BotRequest, ChatFault, TelegramStub, TelegramStubOptions};
pub use webpush::{PeerSubscription, WebPushPeer};

/// The `p` quantile (0..=1) of values sorted ascending, by nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// The peak resident set size of process `pid` ("self" for this one) in MB, from
/// `/proc/{pid}/status` (VmHWM); 0 where that file cannot be read.
pub fn peak_rss_mb(pid: &str) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// The resident set size of process `pid` now, in MB (VmRSS); 0 where it cannot be read.
pub fn rss_mb(pid: &str) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// A size in kB of `/proc/{pid}/status` (the line starting with `field`), in MB.
fn status_mb(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
