//! Delivery behaviour on the embedded profile: a real worker against a local SMS stub that
//! injects the provider's failures.

use crate::common::{RunningWorker, TOKEN, TestDb, mailing_state, now_ms, wait_done, wait_until};
use blast::domain::{MailingState, MessageState};
use blast::ids::MailingId;
use blast_testkit::{Fault, SmsStub};
use sqlx::Row;
use std::collections::HashMap;
use std::time::Duration;

/// message id → (phone, client name, state, attempts, last_error)
async fn rows(
    db: &TestDb,
    mailing: MailingId,
) -> HashMap<i64, (String, String, String, i64, Option<String>)> {
    sqlx::query(
        "SELECT s.id, c.phone, c.name, s.state, s.attempts, s.last_error
         FROM messages s JOIN clients c ON c.id = s.client_id WHERE s.mailing_id = $1",
    )
    .bind(mailing)
    .fetch_all(&db.sql)
    .await
    .expect("rows")
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_delivered_exactly_once_through_provider_faults() {
    let db = TestDb::new().await;
    db.seed_clients(400, "all").await;
    // A provider on a bad day: by message id, 500s, a hang past our timeout, resets, garbage.
    let stub = SmsStub::with_faults(TOKEN, Duration::ZERO, |id, nth| match (id % 10, nth) {
        (0, 1..=2) => Fault::Status(500),
        (1, 1) => Fault::Hang(Duration::from_millis(600)),
        (2, 1) => Fault::Reset,
        (3, 1..=2) => Fault::Malformed200,
        (4, 1) => Fault::Status(503),
        _ => Fault::None,
    })
    .await
    .expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    let m = db
        .mailing("Hi {{ name }}", "all", now_ms(), now_ms() + 120_000)
        .await;
    wait_done(&db, m.id, Duration::from_secs(180)).await;
    worker.stop().await;

    let rows = rows(&db, m.id).await;
    assert_eq!(rows.len(), 400);
    let deliveries = stub.deliveries();
    let requests = stub.requests();
    assert_eq!(
        stub.rejected(),
        0,
        "every request carried the token and a valid body"
    );
    for (id, (phone, name, state, attempts, _)) in &rows {
        assert_eq!(state, "sent", "message {id}");
        assert!(
            deliveries.contains_key(id),
            "message {id} reached the provider"
        );
        let expected_attempts = match id % 10 {
            0 | 3 => 3,
            1 | 2 | 4 => 2,
            _ => 1,
        };
        assert_eq!(*attempts, expected_attempts, "attempts of message {id}");
        for r in requests.iter().filter(|r| r.id == *id) {
            assert_eq!(r.phone.to_string(), *phone);
            assert_eq!(r.text, format!("Hi {name}"));
        }
    }
    assert_eq!(deliveries.len(), 400);
    assert!(
        requests.iter().all(|r| !r.repeat_ack),
        "no message is sent again after the provider acknowledged it"
    );
    for (id, times) in &deliveries {
        // A provider that answers after our timeout has delivered, but we could not know:
        // that message goes again under the same id (the provider's deduplication key).
        let expected = if id % 10 == 1 { 2 } else { 1 };
        assert_eq!(*times, expected, "deliveries of message {id}");
    }
    let counts = db.store.mailing_counts(m.id).await.expect("counts");
    assert_eq!(counts.get(MessageState::Sent), 400);
    assert_eq!(counts.total(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_back_off_exponentially_then_give_up_and_permanent_ones_stop() {
    let db = TestDb::new().await;
    db.seed_clients(3, "all").await;
    // The first message always fails transiently, the second is refused, the third goes.
    let stub = SmsStub::with_faults(TOKEN, Duration::ZERO, |id, _| match id {
        1 => Fault::Status(502),
        2 => Fault::Status(400),
        _ => Fault::None,
    })
    .await
    .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.retry.base_delay_ms = 100;
    settings.retry.max_delay_ms = 10_000;
    settings.retry.max_attempts = 4;
    let worker = RunningWorker::start(&db.store, settings);
    let m = db.mailing("x", "all", now_ms(), now_ms() + 120_000).await;
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;

    let rows = rows(&db, m.id).await;
    let (_, _, state, attempts, error) = &rows[&1];
    assert_eq!((state.as_str(), *attempts), ("failed_permanent", 4));
    assert!(
        error
            .as_deref()
            .unwrap_or("")
            .contains("gave up after 4 attempts"),
        "{error:?}"
    );
    let (_, _, state, attempts, error) = &rows[&2];
    assert_eq!((state.as_str(), *attempts), ("failed_permanent", 1));
    assert!(error.as_deref().unwrap_or("").contains("400"), "{error:?}");
    assert_eq!(rows[&3].2, "sent");

    let requests = stub.requests();
    assert_eq!(
        requests.iter().filter(|r| r.id == 2).count(),
        1,
        "a permanent error is not retried"
    );
    let times: Vec<i64> = requests
        .iter()
        .filter(|r| r.id == 1)
        .map(|r| r.received_at)
        .collect();
    assert_eq!(times.len(), 4);
    // Jitter only lengthens a delay: gap k is at least base * 2^(k-1).
    for (k, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let floor = 100 * (1 << k);
        assert!(
            gap >= floor,
            "gap {k} was {gap} ms, expected at least {floor} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_survives_a_restart_without_being_reset() {
    let db = TestDb::new().await;
    db.seed_clients(1, "all").await;
    let stub = SmsStub::with_faults(TOKEN, Duration::ZERO, |_, nth| {
        if nth == 1 {
            Fault::Status(500)
        } else {
            Fault::None
        }
    })
    .await
    .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.retry.base_delay_ms = 2000;
    settings.retry.max_delay_ms = 4000;
    let worker = RunningWorker::start(&db.store, settings.clone());
    let m = db.mailing("x", "all", now_ms(), now_ms() + 120_000).await;
    wait_until(
        Duration::from_secs(60),
        "the first attempt to fail",
        || async {
            rows(&db, m.id)
                .await
                .values()
                .any(|r| r.2 == "failed_temporary")
        },
    )
    .await;
    worker.stop().await;
    let next_attempt_at: i64 = sqlx::query("SELECT next_attempt_at FROM messages")
        .fetch_one(&db.sql)
        .await
        .expect("row")
        .get(0);

    let worker = RunningWorker::start(&db.store, settings);
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;
    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].received_at >= next_attempt_at,
        "the retry waited for its time across the restart"
    );
    let (_, _, state, attempts, _) = rows(&db, m.id).await.into_values().next().expect("row");
    assert_eq!(
        (state.as_str(), attempts),
        ("sent", 2),
        "the attempt count carried over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_before_the_start() {
    let db = TestDb::new().await;
    db.seed_clients(20, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    let start_at = now_ms() + 1500;
    let m = db.mailing("x", "all", start_at, start_at + 60_000).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(stub.requests().len(), 0);
    assert_eq!(mailing_state(&db, m.id).await, MailingState::Scheduled);
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;
    let requests = stub.requests();
    assert_eq!(stub.delivered_count(), 20);
    assert!(requests.iter().all(|r| r.received_at >= start_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_after_the_end_and_the_rest_expires() {
    let db = TestDb::new().await;
    db.seed_clients(30, "all").await;
    // The provider is down for the whole window.
    let stub = SmsStub::with_faults(TOKEN, Duration::ZERO, |_, _| Fault::Status(503))
        .await
        .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.retry.base_delay_ms = 100;
    settings.retry.max_delay_ms = 300;
    settings.retry.max_attempts = 1000;
    let worker = RunningWorker::start(&db.store, settings);
    let end_at = now_ms() + 1500;
    let m = db.mailing("x", "all", now_ms(), end_at).await;
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;

    let counts = db.store.mailing_counts(m.id).await.expect("counts");
    assert_eq!(counts.get(MessageState::Expired), 30, "{counts:?}");
    let requests = stub.requests();
    assert!(!requests.is_empty());
    // The window is checked right before each request; allow loopback transit time.
    let late: Vec<i64> = requests
        .iter()
        .map(|r| r.received_at - end_at)
        .filter(|d| *d > 250)
        .collect();
    assert!(late.is_empty(), "requests after the end: {late:?} ms late");
    for (_, _, _, attempts, error) in rows(&db, m.id).await.values() {
        assert!(*attempts >= 1);
        assert!(error.as_deref().unwrap_or("").contains("503"), "{error:?}");
    }
}

/// Pause, resume and cancel reach the running batches of the same process at once: the
/// periodic check is set to ten minutes here, so only the store's own notice can stop them.
/// What goes out after each is acknowledged is bounded by the sends in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_reach_running_batches_at_once() {
    const SLOTS: usize = 4;
    let db = TestDb::new().await;
    db.seed_clients(3000, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::from_millis(5))
        .await
        .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.max_in_flight = SLOTS as u32;
    settings.sms.rate_limit_per_second = 200;
    settings.worker.cancel_check_interval_ms = 600_000;
    let worker = RunningWorker::start(&db.store, settings);
    let m = db.mailing("x", "all", now_ms(), now_ms() + 300_000).await;
    let sent_after = |since: i64| {
        stub.requests()
            .iter()
            .filter(|r| r.received_at > since)
            .count()
    };
    wait_until(Duration::from_secs(60), "some messages out", || async {
        stub.delivered_count() >= 100
    })
    .await;
    db.store
        .pause_mailing(db.tenant, m.id)
        .await
        .expect("pause");
    let paused_at = now_ms();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_pause = sent_after(paused_at);
    assert!(after_pause <= SLOTS, "{after_pause} sends after the pause");

    db.store
        .resume_mailing(db.tenant, m.id)
        .await
        .expect("resume");
    let resumed_at = now_ms();
    wait_until(
        Duration::from_secs(30),
        "sends again after the resume",
        || async { sent_after(resumed_at) >= 50 },
    )
    .await;

    db.store
        .cancel_mailing(db.tenant, m.id)
        .await
        .expect("cancel");
    let cancelled_at = now_ms();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_cancel = sent_after(cancelled_at);
    assert!(
        after_cancel <= SLOTS,
        "{after_cancel} sends after the cancel"
    );
    wait_until(Duration::from_secs(60), "every row to settle", || async {
        let c = db.store.mailing_counts(m.id).await.expect("counts");
        c.get(MessageState::Sent) + c.get(MessageState::Cancelled) == 3000
    })
    .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_every_pending_send_within_a_second() {
    let db = TestDb::new().await;
    db.seed_clients(1000, "all").await;
    // Every third message fails transiently on its first try, so retries are open at the cancel.
    let stub = SmsStub::with_faults(TOKEN, Duration::from_millis(20), |id, nth| {
        if id % 3 == 0 && nth == 1 {
            Fault::Status(503)
        } else {
            Fault::None
        }
    })
    .await
    .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.max_in_flight = 4;
    settings.retry.base_delay_ms = 300;
    let worker = RunningWorker::start(&db.store, settings);
    let m = db.mailing("x", "all", now_ms(), now_ms() + 120_000).await;
    wait_until(
        Duration::from_secs(120),
        "some messages to go out",
        || async { stub.delivered_count() >= 50 },
    )
    .await;
    db.store
        .cancel_mailing(db.tenant, m.id)
        .await
        .expect("cancel");
    let cancelled_at = now_ms();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<i64> = stub
        .requests()
        .iter()
        .map(|r| r.received_at - cancelled_at)
        .filter(|d| *d > 1000)
        .collect();
    assert!(
        after.is_empty(),
        "sends more than 1 s after the cancel: {after:?}"
    );
    wait_until(Duration::from_secs(60), "every row to settle", || async {
        let c = db.store.mailing_counts(m.id).await.expect("counts");
        c.get(MessageState::Sent) + c.get(MessageState::Cancelled) == 1000
    })
    .await;
    worker.stop().await;
    let counts = db.store.mailing_counts(m.id).await.expect("counts");
    assert_eq!(
        counts.get(MessageState::Sent) as usize,
        stub.delivered_count(),
        "the store agrees with the provider"
    );
    assert!(counts.get(MessageState::Cancelled) > 500, "{counts:?}");
    assert_eq!(mailing_state(&db, m.id).await, MailingState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_the_audience_and_templates_use_attributes() {
    let db = TestDb::new().await;
    let add = |phone: &str, tags: &[&str], city: &str| blast::store::NewClient {
        phone: Some(phone.parse().expect("phone")),
        name: phone[7..].to_owned(),
        timezone: "UTC".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        attributes: [("city".to_owned(), city.to_owned())].into(),
        ..Default::default()
    };
    for c in [
        add("79001110001", &["vip"], "Kazan"),
        add("79001110002", &["vip", "new"], "Omsk"),
        add("79161110003", &["vip"], "Tver"),
        add("79001110004", &["new"], "Perm"),
    ] {
        db.store.add_client(db.tenant, c).await.expect("client");
    }
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    let m = db
        .create_mailing(blast::store::NewMailing {
            filter: blast::domain::AudienceFilter {
                tags: vec!["vip".into()],
                operator_codes: vec!["900".into()],
            },
            priority: blast::domain::Priority::High,
            ..blast::store::NewMailing::new(
                blast::domain::ChannelKind::Sms,
                "{{ name }} in {{ city }}",
                now_ms(),
                now_ms() + 60_000,
            )
        })
        .await;
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;
    let mut got: Vec<(i64, String)> = stub
        .requests()
        .into_iter()
        .map(|r| (r.phone, r.text))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (79001110001, "0001 in Kazan".to_owned()),
            (79001110002, "0002 in Omsk".to_owned())
        ]
    );
    assert_eq!(
        db.store
            .mailing(db.tenant, m.id)
            .await
            .expect("m")
            .recipients,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_new_mailings_without_waiting_for_its_heartbeat() {
    // apalis parks an idle poller until its 30 s heartbeat when a wake-up is lost; each round
    // below starts from an idle worker, so a lost wake-up shows as a round that takes 30 s.
    let db = TestDb::new().await;
    db.seed_clients(3, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    for round in 1..=6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = db.mailing("x", "all", now_ms(), now_ms() + 60_000).await;
        wait_until(
            Duration::from_secs(10),
            &format!("round {round} to be picked up"),
            || async { mailing_state(&db, m.id).await == MailingState::Done },
        )
        .await;
    }
    worker.stop().await;
    assert_eq!(stub.requests().len(), 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailing_cancelled_before_its_start_sends_nothing() {
    let db = TestDb::new().await;
    db.seed_clients(10, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    let start_at = now_ms() + 500;
    let m = db.mailing("x", "all", start_at, start_at + 60_000).await;
    db.store
        .cancel_mailing(db.tenant, m.id)
        .await
        .expect("cancel");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    worker.stop().await;
    assert!(stub.requests().is_empty());
    assert_eq!(
        db.store.mailing_counts(m.id).await.expect("counts").total(),
        0
    );
    assert_eq!(mailing_state(&db, m.id).await, MailingState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_slower_than_the_lease_gets_each_message_once() {
    let db = TestDb::new().await;
    db.seed_clients(40, "all").await;
    // One request at a time, 150 ms each: a batch of 20 takes 3 s, three times the lease.
    let stub = SmsStub::start(TOKEN, Duration::from_millis(150))
        .await
        .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.max_in_flight = 1;
    settings.sms.timeout_ms = 2000;
    settings.worker.batch_size = 20;
    settings.worker.sending_lease_secs = 1;
    settings.worker.queued_lease_secs = 1;
    let worker = RunningWorker::start(&db.store, settings);
    let m = db.mailing("x", "all", now_ms(), now_ms() + 120_000).await;
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;
    let deliveries = stub.deliveries();
    assert_eq!(deliveries.len(), 40);
    assert!(
        deliveries.values().all(|n| *n == 1),
        "a message went out twice: {deliveries:?}"
    );
    assert_eq!(stub.requests().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_with_the_same_tag_name_do_not_share_audiences() {
    let db = TestDb::new().await;
    db.seed_clients(3, "vip").await;
    let other = db
        .store
        .add_user("other", "another password")
        .await
        .expect("user");
    for phone in ["79990000001", "79990000002"] {
        let client = blast::store::NewClient {
            phone: Some(phone.parse().expect("phone")),
            timezone: "UTC".into(),
            tags: vec!["vip".into()],
            ..Default::default()
        };
        db.store.add_client(other.id, client).await.expect("client");
    }
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    let m = db.mailing("x", "vip", now_ms(), now_ms() + 60_000).await;
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;
    assert_eq!(stub.requests().len(), 3);
    assert!(
        stub.requests()
            .iter()
            .all(|r| !r.phone.to_string().starts_with("7999"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_lost_mid_send_are_resent_only_where_the_channel_deduplicates() {
    let db = TestDb::new().await;
    db.seed_clients(2, "all").await;
    let sms = db.mailing("x", "all", now_ms(), now_ms() + 60_000).await;
    let log = db
        .create_mailing(blast::store::NewMailing {
            priority: blast::domain::Priority::Low,
            ..blast::store::NewMailing::new(
                blast::domain::ChannelKind::Log,
                "x",
                now_ms(),
                now_ms() + 60_000,
            )
        })
        .await;
    db.store.start_due_mailings(now_ms()).await.expect("start");
    // As if a worker died while these were in flight.
    sqlx::query("UPDATE messages SET state = 'sending', claim = 1")
        .execute(&db.sql)
        .await
        .expect("simulate");
    let recovered = db
        .store
        .recover_lost_rows(
            now_ms(),
            0,
            0,
            &db.settings("").resend_policy().unsafe_channels(),
        )
        .await
        .expect("recover");
    assert_eq!(recovered, 4);
    let sms_counts = db.store.mailing_counts(sms.id).await.expect("counts");
    let log_counts = db.store.mailing_counts(log.id).await.expect("counts");
    assert_eq!(
        sms_counts.get(MessageState::Pending),
        2,
        "SMS is resent under the same id"
    );
    assert_eq!(
        log_counts.get(MessageState::Unknown),
        2,
        "the log channel would write twice"
    );

    // With sms.resend_unacknowledged = false the provider is not trusted to deduplicate.
    sqlx::query("UPDATE messages SET state = 'sending', claim = 1 WHERE mailing_id = $1")
        .bind(sms.id)
        .execute(&db.sql)
        .await
        .expect("simulate");
    let mut settings = db.settings("");
    settings.sms.resend_unacknowledged = false;
    let policy = settings.resend_policy();
    db.store
        .recover_lost_rows(now_ms(), 0, 0, &policy.unsafe_channels())
        .await
        .expect("recover");
    let sms_counts = db.store.mailing_counts(sms.id).await.expect("counts");
    assert_eq!(
        sms_counts.get(MessageState::Unknown),
        2,
        "never resent when the provider may not deduplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_rate_limit_holds() {
    let db = TestDb::new().await;
    db.seed_clients(40, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.rate_limit_per_second = 10;
    let worker = RunningWorker::start(&db.store, settings);
    let m = db.mailing("x", "all", now_ms(), now_ms() + 120_000).await;
    wait_done(&db, m.id, Duration::from_secs(120)).await;
    worker.stop().await;
    let mut times: Vec<i64> = stub.requests().iter().map(|r| r.received_at).collect();
    times.sort_unstable();
    assert_eq!(times.len(), 40);
    // 10/s with a burst of 10: any 21 consecutive requests span at least a second (less a
    // little arrival jitter on loopback).
    for w in times.windows(21) {
        assert!(
            w[20] - w[0] >= 900,
            "21 requests within {} ms",
            w[20] - w[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mailing_on_the_log_channel_writes_every_line_once() {
    // The log channel marks each row `sending` on its own, so sends use database connections
    // concurrently with the batch's flushes; with the production defaults this once exhausted
    // the pool and deadlocked.
    let db = TestDb::new().await;
    db.seed_clients(3000, "all").await;
    let mut settings = db.settings("http://127.0.0.1:9");
    settings.worker = blast::settings::WorkerSettings {
        pump_interval_ms: 20,
        schedule_interval_ms: 50,
        ..Default::default()
    };
    settings.log_channel.max_in_flight = 64;
    let path = settings.log_channel.path.clone();
    let worker = RunningWorker::start(&db.store, settings);
    let m = db
        .create_mailing(blast::store::NewMailing::new(
            blast::domain::ChannelKind::Log,
            "Hi {{ name }}",
            now_ms(),
            now_ms() + 300_000,
        ))
        .await;
    wait_done(&db, m.id, Duration::from_secs(180)).await;
    worker.stop().await;
    let counts = db.store.mailing_counts(m.id).await.expect("counts");
    assert_eq!(counts.get(MessageState::Sent), 3000, "{counts:?}");
    let text = std::fs::read_to_string(path).expect("deliveries");
    let mut ids: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 3000);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3000, "no line written twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_to_the_same_recipient_goes_once_within_the_dedup_window() {
    let db = TestDb::new().await;
    db.seed_clients(5, "all").await;
    // The first message fails once: its own retry must not count as a duplicate. The second is
    // refused for good: its key must not keep the next mailing's copy from going out.
    let stub = SmsStub::with_faults(TOKEN, Duration::ZERO, |id, nth| match (id, nth) {
        (1, 1) => Fault::Status(503),
        (2, _) => Fault::Status(400),
        _ => Fault::None,
    })
    .await
    .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.mailing.dedup_window_secs = 3600;
    let worker = RunningWorker::start(&db.store, settings);
    let first = db
        .mailing("Hello {{ name }}", "all", now_ms(), now_ms() + 60_000)
        .await;
    wait_done(&db, first.id, Duration::from_secs(120)).await;
    let again = db
        .mailing("Hello {{ name }}", "all", now_ms(), now_ms() + 60_000)
        .await;
    wait_done(&db, again.id, Duration::from_secs(120)).await;
    let other = db
        .mailing("Bye {{ name }}", "all", now_ms(), now_ms() + 60_000)
        .await;
    wait_done(&db, other.id, Duration::from_secs(120)).await;
    worker.stop().await;

    let store = &db.store;
    let counts = |id| async move { store.mailing_counts(id).await.expect("counts") };
    let first_counts = counts(first.id).await;
    assert_eq!(
        (
            first_counts.get(MessageState::Sent),
            first_counts.get(MessageState::FailedPermanent)
        ),
        (4, 1),
        "a retry is not its own duplicate"
    );
    let repeated = counts(again.id).await;
    assert_eq!(
        (
            repeated.get(MessageState::Skipped),
            repeated.get(MessageState::Sent)
        ),
        (4, 1),
        "the copy whose first never went out is sent"
    );
    assert_eq!(
        counts(other.id).await.get(MessageState::Sent),
        5,
        "another text is not a duplicate"
    );
    let hellos = stub
        .requests()
        .iter()
        .filter(|r| r.text.starts_with("Hello") && r.answer == Fault::None)
        .count();
    assert_eq!(hellos, 5, "each recipient got the greeting once");
    let stats = db.store.stats(db.tenant, None).await.expect("stats");
    assert_eq!(
        stats
            .iter()
            .find(|s| s.mailing_id == again.id)
            .map(|s| s.counts.get(MessageState::Skipped)),
        Some(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_the_recipients_local_hours() {
    let db = TestDb::new().await;
    for (phone, tz) in [("79001110001", "UTC"), ("79001110002", "Asia/Kathmandu")] {
        let client = blast::store::NewClient {
            phone: Some(phone.parse().expect("phone")),
            timezone: tz.into(),
            tags: vec!["all".into()],
            ..Default::default()
        };
        db.store
            .add_client(db.tenant, client)
            .await
            .expect("client");
    }
    // Open from five minutes ago to an hour ahead, in UTC terms: open now in UTC, closed now
    // in Kathmandu (UTC+05:45), where it next opens in 18 h 10 min.
    let now = chrono::Utc::now();
    let hhmm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let hours = format!(
        "{}-{}",
        hhmm(now - chrono::Duration::minutes(5)),
        hhmm(now + chrono::Duration::minutes(60))
    );
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    let m = db
        .create_mailing(blast::store::NewMailing {
            local_hours: Some(hours.parse().expect("hours")),
            ..blast::store::NewMailing::new(
                blast::domain::ChannelKind::Sms,
                "x",
                now_ms(),
                now_ms() + 2 * 86_400_000,
            )
        })
        .await;
    wait_until(
        Duration::from_secs(60),
        "the UTC client's message",
        || async { stub.delivered_count() == 1 },
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the other message to be deferred",
        || async {
            db.store
                .mailing_counts(m.id)
                .await
                .expect("counts")
                .get(MessageState::Pending)
                == 1
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(stub.requests()[0].phone, 79001110001);
    let (attempts, next_at): (i64, i64) = sqlx::query_as(
        "SELECT s.attempts, s.next_attempt_at FROM messages s JOIN clients c ON c.id = s.client_id
         WHERE c.phone = '79001110002'",
    )
    .fetch_one(&db.sql)
    .await
    .expect("row");
    assert_eq!(attempts, 0, "waiting for local hours is not an attempt");
    let expected = (now - chrono::Duration::minutes(5) + chrono::Duration::hours(24)
        - chrono::Duration::minutes(5 * 60 + 45))
    .timestamp_millis();
    assert!(
        (next_at - expected).abs() < 120_000,
        "next attempt at {next_at}, expected about {expected}"
    );
    assert_eq!(mailing_state(&db, m.id).await, MailingState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_client_or_a_mailing_deletes_its_messages_and_a_vanished_client_is_skipped() {
    let db = TestDb::new().await;
    db.seed_clients(10, "all").await;
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let m = db.mailing("x", "all", now_ms(), now_ms() + 60_000).await;
    // Materialize without a worker, so nothing is sent yet.
    db.store.start_due_mailings(now_ms()).await.expect("start");
    let clients: Vec<blast::ids::ClientId> = sqlx::query("SELECT id FROM clients ORDER BY id")
        .fetch_all(&db.sql)
        .await
        .expect("clients")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows(&db, m.id).await.len(), 10);

    db.store
        .delete_client(db.tenant, clients[0])
        .await
        .expect("delete client");
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM messages WHERE mailing_id = $1")
        .bind(m.id)
        .fetch_one(&db.sql)
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 9, "the deleted client's row went with it");

    // A client deleted behind the store's back, as by a delete racing the materialization:
    // PostgreSQL (no foreign key on messages) keeps the row, SQLite cascades.
    sqlx::query("DELETE FROM clients WHERE id = $1")
        .bind(clients[1])
        .execute(&db.sql)
        .await
        .expect("raw delete");
    let worker = RunningWorker::start(&db.store, db.settings(&stub.base_url()));
    wait_done(&db, m.id, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(stub.deliveries().len(), 8, "nobody deleted was sent to");
    let orphan = sqlx::query("SELECT state, last_error FROM messages WHERE client_id = $1")
        .bind(clients[1])
        .fetch_optional(&db.sql)
        .await
        .expect("orphan");
    if let Some(orphan) = orphan {
        assert_eq!(orphan.get::<String, _>(0), "skipped");
        assert_eq!(
            orphan.get::<Option<String>, _>(1).as_deref(),
            Some("the client was deleted")
        );
    }
    // The listing shows every row, a vanished client's too.
    let listed = db
        .store
        .list_messages(db.tenant, m.id, None, None, 100)
        .await
        .expect("list");
    assert_eq!(
        listed.len() as i64,
        left - i64::from(!crate::common::production_profile())
    );

    db.store
        .delete_mailing(db.tenant, m.id)
        .await
        .expect("delete mailing");
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM messages")
        .fetch_one(&db.sql)
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "a deleted mailing's rows went with it");
}

/// A provider on its worst day: resets, answers cut off halfway, garbled 200s, a hang past our
/// timeout, and then it is killed mid-mailing (every connection reset, mid-request or
/// mid-answer) and started again on the same port. Whatever `sms.resend_unacknowledged` says,
/// no row is recorded `sent` unless the provider wrote it a whole `200 {"code":0}`.
async fn through_a_killed_provider(resend_unacknowledged: bool) {
    const N: usize = 1000;
    let db = TestDb::new().await;
    db.seed_clients(N, "all").await;
    let stub = SmsStub::with_faults(TOKEN, Duration::from_millis(5), |id, nth| {
        match (id % 10, nth) {
            (1, 1) => Fault::Reset,
            (2, 1) => Fault::Truncated200,
            (3, 1) => Fault::Malformed200,
            (4, 1) => Fault::Status(503),
            (5, 1) => Fault::Hang(Duration::from_millis(600)),
            _ => Fault::None,
        }
    })
    .await
    .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.resend_unacknowledged = resend_unacknowledged;
    let max_in_flight = settings.sms.max_in_flight as usize;
    let worker = RunningWorker::start(&db.store, settings);
    let m = db
        .mailing("Hi {{ name }}", "all", now_ms(), now_ms() + 300_000)
        .await;
    wait_until(Duration::from_secs(120), "a third through", || async {
        stub.requests_count() >= N / 3
    })
    .await;
    stub.kill();
    let at_kill = stub.requests_count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted_at = now_ms();
    stub.restart().await.expect("restart on the same port");
    wait_done(&db, m.id, Duration::from_secs(240)).await;
    worker.stop().await;

    let sent = crate::common::ids_in_state(&db, "sent").await;
    let unknown = crate::common::ids_in_state(&db, "unknown").await;
    let answered = stub.answered();
    let requests = stub.requests();
    let unacknowledged: Vec<&i64> = sent.difference(&answered).collect();
    eprintln!(
        "resend_unacknowledged = {resend_unacknowledged}: killed after {at_kill} requests; \
         {} sent, {} unknown; {} requests in all",
        sent.len(),
        unknown.len(),
        requests.len()
    );
    assert!(at_kill < N, "the kill came mid-mailing");
    assert!(
        requests.iter().any(|r| r.received_at >= restarted_at),
        "the mailing went on after the restart"
    );
    assert!(
        unacknowledged.is_empty(),
        "recorded sent without an acknowledgement: {unacknowledged:?}"
    );
    let counts = db.store.mailing_counts(m.id).await.expect("counts");
    assert_eq!(counts.total(), N as i64);
    assert_eq!(counts.get(MessageState::Sent), sent.len() as i64);
    if resend_unacknowledged {
        assert_eq!(sent.len(), N, "every message is acknowledged in the end");
        return;
    }
    // Never asked twice once the provider may have taken it: every request of an id but its
    // last was refused outright (a 503, or a connection never made).
    let mut by_id: HashMap<i64, Vec<Fault>> = HashMap::new();
    for r in &requests {
        by_id.entry(r.id).or_default().push(r.answer);
    }
    for (id, answers) in &by_id {
        let earlier = &answers[..answers.len() - 1];
        assert!(
            earlier.iter().all(|a| matches!(a, Fault::Status(_))),
            "message {id} was sent again after {earlier:?}"
        );
    }
    let ambiguous: std::collections::HashSet<i64> = by_id
        .keys()
        .copied()
        .filter(|id| matches!(id % 10, 1 | 2 | 3 | 5))
        .collect();
    assert!(
        ambiguous.is_subset(&unknown),
        "a reset, a cut-off or garbled answer or a timeout leaves the message unknown"
    );
    assert!(
        unknown.len() - ambiguous.len() <= max_in_flight,
        "beyond those, only requests the kill cut off are unknown: {} more",
        unknown.len() - ambiguous.len()
    );
    assert_eq!(sent.len() + unknown.len(), N, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_mailing_leaves_no_row_sent_without_its_acknowledgement() {
    through_a_killed_provider(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resending_unacknowledged_sends_nothing_reaches_the_provider_twice() {
    through_a_killed_provider(false).await;
}
