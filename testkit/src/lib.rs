//! Local test peers for blast's tests and benchmarks. They listen on 127.0.0.1 only.

pub mod sms;

pub use sms::{Fault, SmsStub, StubRequest};
