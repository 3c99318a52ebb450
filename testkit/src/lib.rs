//! Local test peers for blast's tests and benchmarks. They listen on 127.0.0.1 only.

pub mod sms;

pub use sms::{Fault, SmsStub, StubRequest};

/// The `p` quantile (0..=1) of values sorted ascending, by nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}
