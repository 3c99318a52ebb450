//! blast's integration tests, one binary: each module is the suite of one area, and `common`
//! is the harness they share (a fresh database per test, the app spawned on port 0, the test
//! peers). `BLAST_TEST_PROFILE=production` runs the behaviour suites on PostgreSQL + Redis;
//! `production` and `crash` are the production profile's own (scripts/test runs them alone).

mod api;
mod bot;
mod cli;
mod common;
mod console;
mod crash;
mod delivery;
mod email;
mod hardening;
mod inbox;
mod notifications;
mod production;
mod telegram;
mod webhooks;
