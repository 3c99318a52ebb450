//! Kill -9 the real `blast up` process in the middle of a mailing, start it again: nothing is
//! lost and nothing the store had recorded as sent goes out again. With
//! `sms.resend_unacknowledged = false` nothing goes out twice at all; the duplicates each
//! setting leaves are measured and printed.

use crate::common::{TOKEN, TestDb, ids_in_state, now_ms, wait_until};
use blast_testkit::SmsStub;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn spawn_blast_up(db: &TestDb, stub: &SmsStub, log_name: &str, resend: bool) -> Child {
    let log_dir = std::env::var("CRASH_TEST_LOG_DIR").map_or(db.dir.path().to_owned(), Into::into);
    let log = std::fs::File::create(log_dir.join(log_name)).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_blast"))
        .arg("up")
        .current_dir(db.dir.path())
        .env("BLAST_DATABASE_URL", &db.url)
        .env("BLAST_SMS__BASE_URL", stub.base_url())
        .env("BLAST_SMS__TOKEN", TOKEN)
        .env("BLAST_SMS__MAX_IN_FLIGHT", "4")
        .env("BLAST_SMS__RESEND_UNACKNOWLEDGED", resend.to_string())
        .env("BLAST_API__LISTEN", "127.0.0.1:0")
        .env("BLAST_WORKER__BATCH_SIZE", "50")
        .env("BLAST_WORKER__PUMP_INTERVAL_MS", "20")
        .env("BLAST_WORKER__SCHEDULE_INTERVAL_MS", "50")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn blast up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_resends_nothing_acknowledged() {
    kill_mid_mailing(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resending_unacknowledged_a_killed_worker_sends_nothing_twice() {
    kill_mid_mailing(false).await;
}

async fn kill_mid_mailing(resend: bool) {
    let db = TestDb::new().await;
    db.seed_clients(2000, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::from_millis(10))
        .await
        .expect("stub");
    let m = db
        .mailing("Hi {{ name }}", "all", now_ms(), now_ms() + 300_000)
        .await;

    let mut first = spawn_blast_up(&db, &stub, "first.log", resend);
    wait_until(
        Duration::from_secs(180),
        "400 deliveries before the kill",
        || async { stub.delivered_count() >= 400 },
    )
    .await;
    eprintln!("killing after {} deliveries", stub.delivered_count());
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let sent_before = ids_in_state(&db, "sent").await;
    let in_flight_at_kill = ids_in_state(&db, "sending").await;
    assert!(sent_before.len() >= 200, "the kill came mid-mailing");
    assert!(sent_before.len() < 2000, "the kill came mid-mailing");

    let restarted_at = now_ms();
    let mut second = spawn_blast_up(&db, &stub, "second.log", resend);
    let settled = |ids: std::collections::HashSet<i64>, unknown: usize| ids.len() + unknown;
    wait_until(
        Duration::from_secs(300),
        "the mailing to finish after the restart",
        || async {
            settled(
                ids_in_state(&db, "sent").await,
                ids_in_state(&db, "unknown").await.len(),
            ) == 2000
        },
    )
    .await;
    eprintln!("done {} ms after the restart", now_ms() - restarted_at);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(second.id().to_string())
        .status();
    let status = second.wait().expect("second exits");
    assert!(status.success(), "blast up stops cleanly on SIGTERM");

    let deliveries = stub.deliveries();
    let twice = deliveries.values().filter(|n| **n > 1).count();
    let unknown = ids_in_state(&db, "unknown").await;
    eprintln!(
        "resend_unacknowledged = {resend}: {} in flight at the kill; {twice} delivered twice, {} unknown",
        in_flight_at_kill.len(),
        unknown.len()
    );
    if !resend {
        assert_eq!(twice, 0, "nothing reaches the provider twice");
        assert!(
            unknown.is_subset(&in_flight_at_kill),
            "only rows cut off mid-send are unknown"
        );
        let counts = db.store.mailing_counts(m.id).await.expect("counts");
        assert_eq!(counts.total(), 2000);
        assert_eq!(
            counts.get(blast::domain::MessageState::Sent) + unknown.len() as i64,
            2000
        );
        return;
    }
    assert_eq!(deliveries.len(), 2000, "every message reached the provider");
    let requests = stub.requests();
    let resent_after_record: Vec<i64> = requests
        .iter()
        .filter(|r| r.received_at >= restarted_at && sent_before.contains(&r.id))
        .map(|r| r.id)
        .collect();
    assert!(
        resent_after_record.is_empty(),
        "recorded as sent, then sent again: {resent_after_record:?}"
    );
    // A message the provider acknowledged while its outcome was not yet written can go out
    // again, under the same id (the provider's deduplication key) — and only such a message.
    for r in requests.iter().filter(|r| r.repeat_ack) {
        assert!(
            in_flight_at_kill.contains(&r.id),
            "message {} was acknowledged twice",
            r.id
        );
    }
    let counts = db.store.mailing_counts(m.id).await.expect("counts");
    assert_eq!(counts.total(), 2000);
    assert_eq!(counts.get(blast::domain::MessageState::Sent), 2000);
}
