//! Email against a real SMTP server on 127.0.0.1 (aiosmtpd, installed by scripts/peers): email
//! mailings with their parts and headers, the SMTP error split (451 transient, 550 permanent,
//! refused AUTH transient), unsubscribe links, and the daily statistics email, once per day
//! across three workers and again after the SMTP server was down.

use crate::common::{ApiServer, RunningWorker, TestDb, mailing_state, now_ms, wait_until};
use blast::domain::{AudienceFilter, ChannelKind, MailingState, Priority};
use blast::ids::MailingId;
use blast::settings::{EmailSecurity, Secret, Settings};
use blast::store::{NewClient, NewMailing};
use blast_testkit::{SmtpPeer, SmtpPeerOptions};
use sqlx::Row;
use std::time::Duration;

const HOUR: i64 = 3_600_000;

fn email_settings(db: &TestDb, port: u16) -> Settings {
    let mut s = db.settings("http://127.0.0.1:9");
    s.email.smtp_host = "127.0.0.1".into();
    s.email.smtp_port = port;
    s.email.security = EmailSecurity::Plain;
    s.email.from = "blast <noreply@blast.test>".into();
    s.email.timeout_ms = 5000;
    s
}

async fn add_email_clients(db: &TestDb, tag: &str, addresses: &[Option<&str>]) {
    let clients: Vec<NewClient> = addresses
        .iter()
        .enumerate()
        .map(|(i, email)| NewClient {
            phone: Some(format!("7901{:07}", 1_000_000 + i).parse().expect("phone")),
            name: format!("n{i}"),
            email: email.map(str::to_owned),
            timezone: "UTC".into(),
            tags: vec![tag.to_owned()],
            ..NewClient::default()
        })
        .collect();
    db.store
        .import_clients(db.tenant, &clients, |_| {})
        .await
        .expect("import");
}

async fn email_mailing(db: &TestDb, tag: &str) -> MailingId {
    let start = now_ms();
    blast::app::mailings::create(
        &db.store,
        db.tenant,
        NewMailing {
            subject: Some("News for {{ name }}".into()),
            html: Some("<p>Hello <b>{{ name }}</b></p>".into()),
            filter: AudienceFilter {
                tags: vec![tag.into()],
                operator_codes: vec![],
            },
            priority: Priority::High,
            ..NewMailing::new(
                ChannelKind::Email,
                "Hello {{ name }}. Unsubscribe: {{ unsubscribe_url }}",
                start,
                start + HOUR,
            )
        },
        blast::template::TextLimits::with_default_budget(100_000),
    )
    .await
    .expect("create email mailing")
    .id
}

async fn states(db: &TestDb, mailing: MailingId) -> Vec<(String, String, i64, Option<String>)> {
    sqlx::query(
        "SELECT c.email, s.state, s.attempts, s.last_error FROM messages s
         JOIN clients c ON c.id = s.client_id WHERE s.mailing_id = $1 ORDER BY c.email",
    )
    .bind(mailing)
    .fetch_all(&db.sql)
    .await
    .expect("states")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_mailing_reaches_every_address_and_smtp_answers_drive_retries() {
    let db = TestDb::new().await;
    let peer = SmtpPeer::start(SmtpPeerOptions {
        tempfail_once: vec!["later@x.test".into()],
        reject: vec!["nobody@x.test".into()],
        ..SmtpPeerOptions::default()
    })
    .expect("smtp peer");
    add_email_clients(
        &db,
        "news",
        &[
            Some("ann@x.test"),
            Some("bob@x.test"),
            Some("later@x.test"),
            Some("nobody@x.test"),
            None,
        ],
    )
    .await;
    let mut settings = email_settings(&db, peer.port());
    settings.api.public_url = "https://blast.example".into();
    let mailing = email_mailing(&db, "news").await;
    let worker = RunningWorker::start(&db.store, settings);
    wait_until(Duration::from_secs(20), "the mailing is done", || async {
        mailing_state(&db, mailing).await == MailingState::Done
    })
    .await;
    worker.stop().await;

    // The client without an address is not in the audience at all.
    let rows = states(&db, mailing).await;
    let summary: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|(e, s, a, _)| (e.as_str(), s.as_str(), *a))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ann@x.test", "sent", 1),
            ("bob@x.test", "sent", 1),
            ("later@x.test", "sent", 2),
            ("nobody@x.test", "failed_permanent", 1),
        ]
    );
    let refused = rows[3].3.clone().unwrap_or_default();
    assert!(refused.contains("550"), "{refused}");

    // Sends run concurrently: compare in address order.
    let mut mails = peer.messages();
    mails.sort_by(|a, b| a.rcpt_tos.cmp(&b.rcpt_tos));
    assert_eq!(mails.len(), 3, "{mails:?}");
    for (mail, (name, address)) in mails.iter().zip([
        ("n0", "ann@x.test"),
        ("n1", "bob@x.test"),
        ("n2", "later@x.test"),
    ]) {
        assert_eq!(mail.rcpt_tos, vec![address.to_owned()]);
        assert_eq!(mail.mail_from, "noreply@blast.test");
        assert_eq!(
            mail.subject.as_deref(),
            Some(format!("News for {name}").as_str())
        );
        let text = mail.text.clone().unwrap_or_default();
        assert!(text.contains(&format!("Hello {name}.")), "{text}");
        let html = mail.html.clone().unwrap_or_default();
        assert!(html.contains(&format!("<b>{name}</b>")), "{html}");
        let unsubscribe = &mail.headers["list-unsubscribe"];
        assert!(
            unsubscribe.starts_with("<https://blast.example/u/") && unsubscribe.ends_with('>'),
            "{unsubscribe}"
        );
        // The same link is in the text, rendered from the template.
        assert!(
            text.contains(unsubscribe.trim_matches(['<', '>'])),
            "{text}"
        );
        assert_eq!(
            mail.headers["list-unsubscribe-post"],
            "List-Unsubscribe=One-Click"
        );
        assert!(
            mail.headers["message-id"].starts_with(&format!("<blast.{mailing}.")),
            "{:?}",
            mail.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_make_messages_wait_without_spending_attempts() {
    let db = TestDb::new().await;
    let peer = SmtpPeer::start(SmtpPeerOptions {
        auth: Some(("blast".into(), "right".into())),
        ..SmtpPeerOptions::default()
    })
    .expect("smtp peer");
    add_email_clients(&db, "news", &[Some("ann@x.test")]).await;
    let mut settings = email_settings(&db, peer.port());
    settings.email.username = "blast".into();
    settings.email.password = Secret::new("wrong");
    let mailing = email_mailing(&db, "news").await;
    let worker = RunningWorker::start(&db.store, settings);
    wait_until(Duration::from_secs(20), "a refused send", || async {
        states(&db, mailing)
            .await
            .first()
            .is_some_and(|(_, state, _, error)| state == "failed_temporary" && error.is_some())
    })
    .await;
    // Longer than 8 attempts (max_attempts) take with these delays: a refused login is the
    // channel's failure, so the message spends no attempt and does not fail for good.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    worker.stop().await;
    let rows = states(&db, mailing).await;
    // Waiting; or, when the stop came while a retry was in flight, given back to `pending`
    // (embedded) or still carried by its Redis job as `queued` (production). Never failed for
    // good, and no attempt spent.
    assert!(
        matches!(
            rows[0].1.as_str(),
            "failed_temporary" | "pending" | "queued"
        ),
        "{rows:?}"
    );
    assert_eq!(rows[0].2, 0, "{rows:?}");
    let error = rows[0].3.clone().unwrap_or_default();
    assert!(error.contains("credentials"), "{error}");
    assert!(peer.messages().is_empty());

    // With the right password the same message goes out.
    let mut settings = email_settings(&db, peer.port());
    settings.email.username = "blast".into();
    settings.email.password = Secret::new("right");
    let worker = RunningWorker::start(&db.store, settings);
    wait_until(Duration::from_secs(20), "the mailing is done", || async {
        mailing_state(&db, mailing).await == MailingState::Done
    })
    .await;
    worker.stop().await;
    assert_eq!(states(&db, mailing).await[0].1, "sent");
    assert_eq!(peer.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_link_opts_the_client_out_of_later_email_mailings() {
    let db = TestDb::new().await;
    let peer = SmtpPeer::start(SmtpPeerOptions::default()).expect("smtp peer");
    add_email_clients(&db, "news", &[Some("ann@x.test"), Some("bob@x.test")]).await;
    let api = ApiServer::start(&db.store, db.settings("http://127.0.0.1:9")).await;
    let mut settings = email_settings(&db, peer.port());
    settings.api.public_url = api.base.clone();
    let first = email_mailing(&db, "news").await;
    let worker = RunningWorker::start(&db.store, settings.clone());
    wait_until(
        Duration::from_secs(20),
        "the first mailing is done",
        || async { mailing_state(&db, first).await == MailingState::Done },
    )
    .await;
    let ann = peer
        .messages()
        .into_iter()
        .find(|m| m.rcpt_tos == ["ann@x.test"])
        .expect("ann's email");
    let link = ann.headers["list-unsubscribe"]
        .trim_matches(['<', '>'])
        .to_owned();

    // A forged token is refused without revealing anything.
    let forged = format!("{}0", link.trim_end_matches(|c: char| c != '.'));
    let answer = api.http.get(&forged).send().await.expect("forged");
    assert_eq!(answer.status(), 404);

    // A GET (a browser, or a mail scanner opening every link) only shows the button.
    let answer = api.http.get(&link).send().await.expect("get");
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .expect("body")
            .contains(r#"method="post""#)
    );
    let opted_out: Option<i64> =
        sqlx::query("SELECT email_opted_out_at FROM clients WHERE email = 'ann@x.test'")
            .fetch_one(&db.sql)
            .await
            .expect("client")
            .get(0);
    assert_eq!(opted_out, None);
    // The POST (the button, or RFC 8058 one-click) unsubscribes; twice is fine.
    for _ in 0..2 {
        let answer = api.http.post(&link).send().await.expect("post");
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.expect("body").contains("unsubscribed"));
    }

    let second = email_mailing(&db, "news").await;
    wait_until(
        Duration::from_secs(20),
        "the second mailing is done",
        || async { mailing_state(&db, second).await == MailingState::Done },
    )
    .await;
    worker.stop().await;
    let rows = states(&db, second).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "bob@x.test");
    let to_ann = peer
        .messages()
        .iter()
        .filter(|m| m.rcpt_tos == ["ann@x.test"])
        .count();
    assert_eq!(to_ann, 1);
}

/// A day's worth of history: a log-channel mailing whose rows changed yesterday (UTC).
async fn yesterday_history(db: &TestDb) -> String {
    db.seed_clients(4, "hist").await;
    let start = now_ms();
    let mailing = db
        .mailing("hello {{ name }}", "hist", start, start + HOUR)
        .await;
    let yesterday = now_ms() - 24 * HOUR;
    // It ran for 90 s up to `yesterday`, so the duration is whole whatever the time of day.
    sqlx::query(
        "UPDATE mailings SET state = 'done', started_at = $1, finished_at = $2 WHERE id = $3",
    )
    .bind(yesterday - 90_000)
    .bind(yesterday)
    .bind(mailing.id)
    .execute(&db.sql)
    .await
    .expect("mailing");
    // The scheduler never starts it (done): make its rows by hand, 3 sent and 1 failed.
    for (i, (state, error)) in [
        ("sent", None),
        ("sent", None),
        ("sent", None),
        ("failed_permanent", Some("provider rejected the message")),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO messages (mailing_id, client_id, state, next_attempt_at, updated_at, last_error)
             SELECT $1, id, $2, $3, $3, $4 FROM clients WHERE name = $5",
        )
        .bind(mailing.id)
        .bind(state)
        .bind(yesterday)
        .bind(error)
        .bind(format!("c{i}"))
        .execute(&db.sql)
        .await
        .expect("row");
    }
    chrono::DateTime::from_timestamp_millis(yesterday)
        .expect("time")
        .format("%Y-%m-%d")
        .to_string()
}

fn stats_settings(db: &TestDb, port: u16) -> Settings {
    let mut s = email_settings(db, port);
    s.stats.schedule = "* * * * * *".into();
    s.stats.timezone = "UTC".into();
    s.stats.recipients = vec!["ops@x.test".into(), "boss@x.test".into()];
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_statistics_email_goes_out_once_across_three_workers() {
    let db = TestDb::new().await;
    let day = yesterday_history(&db).await;
    let peer = SmtpPeer::start(SmtpPeerOptions::default()).expect("smtp peer");
    let workers: Vec<RunningWorker> = (0..3)
        .map(|_| RunningWorker::start_shared(&db.store, stats_settings(&db, peer.port())))
        .collect();
    wait_until(Duration::from_secs(20), "the daily email", || async {
        !peer.messages().is_empty()
    })
    .await;
    // Three workers tick every second: give them several ticks to send it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for w in workers {
        w.stop().await;
    }
    let mails = peer.messages();
    assert_eq!(mails.len(), 1, "sent once, not once per worker or tick");
    let mail = &mails[0];
    assert_eq!(mail.rcpt_tos, vec!["ops@x.test", "boss@x.test"]);
    let subject = mail.subject.clone().unwrap_or_default();
    assert!(
        subject.contains(&day) && subject.contains("3 sent, 1 failed"),
        "{subject}"
    );
    let text = mail.text.clone().unwrap_or_default();
    assert!(text.contains("Total: sent 3, failed 1"), "{text}");
    assert!(text.contains("1 x provider rejected the message"), "{text}");
    assert!(text.contains("90s"), "{text}");
    let html = mail.html.clone().unwrap_or_default();
    assert!(html.contains("<td>3</td>"), "{html}");
    assert_eq!(
        db.store
            .cron_run_state("daily-stats", &day)
            .await
            .expect("state"),
        Some(("done".to_owned(), 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_email_that_failed_goes_out_at_a_later_tick() {
    let db = TestDb::new().await;
    let day = yesterday_history(&db).await;
    // A port with nothing listening yet: the SMTP server is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let worker = RunningWorker::start_shared(&db.store, stats_settings(&db, port));
    wait_until(Duration::from_secs(20), "a failed run", || async {
        db.store
            .cron_run_state("daily-stats", &day)
            .await
            .expect("state")
            .is_some_and(|(state, _)| state == "failed")
    })
    .await;
    let peer = SmtpPeer::start(SmtpPeerOptions {
        port: Some(port),
        ..SmtpPeerOptions::default()
    })
    .expect("smtp peer");
    wait_until(Duration::from_secs(20), "the daily email", || async {
        !peer.messages().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.stop().await;
    assert_eq!(peer.messages().len(), 1);
    let (state, attempts) = db
        .store
        .cron_run_state("daily-stats", &day)
        .await
        .expect("state")
        .expect("a run");
    assert_eq!(state, "done");
    assert!(attempts >= 2, "{attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_whose_tick_nobody_saw_is_sent_at_the_next_tick() {
    let db = TestDb::new().await;
    let yesterday = yesterday_history(&db).await;
    let day = |back: u64| {
        (blast::report::parse_day(&yesterday).expect("day") - chrono::Days::new(back))
            .format("%Y-%m-%d")
            .to_string()
    };
    // The job last ran three days ago; the day after, every worker was down at the hour.
    sqlx::query(
        "INSERT INTO cron_runs (job, day, state, instance, attempts, updated_at)
         VALUES ('daily-stats', $1, 'done', 'gone', 1, $2)",
    )
    .bind(day(2))
    .bind(now_ms())
    .execute(&db.sql)
    .await
    .expect("earlier run");
    let peer = SmtpPeer::start(SmtpPeerOptions::default()).expect("smtp peer");
    let worker = RunningWorker::start_shared(&db.store, stats_settings(&db, peer.port()));
    wait_until(Duration::from_secs(20), "two daily emails", || async {
        peer.messages().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.stop().await;
    let mut subjects: Vec<String> = peer
        .messages()
        .iter()
        .map(|m| m.subject.clone().unwrap_or_default())
        .collect();
    subjects.sort();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].contains(&day(1)), "{subjects:?}");
    assert!(subjects[1].contains(&yesterday), "{subjects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blast_stats_prints_the_report_and_mails_it_by_hand() {
    let db = TestDb::new().await;
    let day = yesterday_history(&db).await;
    let peer = SmtpPeer::start(SmtpPeerOptions::default()).expect("smtp peer");
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_blast"));
        // The test's own BLAST_TEST_* variables are not blast settings.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("BLAST_")) {
            command.env_remove(name);
        }
        let output = command
            .args(args)
            .current_dir(db.dir.path())
            .env("BLAST_DATABASE_URL", &db.url)
            .env("BLAST_EMAIL__SMTP_HOST", "127.0.0.1")
            .env("BLAST_EMAIL__SMTP_PORT", peer.port().to_string())
            .env("BLAST_EMAIL__SECURITY", "plain")
            .env("BLAST_STATS__RECIPIENTS", "[\"ops@x.test\"]")
            .output()
            .expect("run blast");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["stats", "--day", &day]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("blast daily statistics for {day} (UTC)")),
        "{out}"
    );
    assert!(out.contains("Total: sent 3, failed 1"), "{out}");
    assert!(peer.messages().is_empty());

    let (code, _, err) = run(&["stats", "--day", &day, "--email"]);
    assert_eq!(code, Some(0), "{err}");
    let mails = peer.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_tos, vec!["ops@x.test"]);
    assert!(
        mails[0]
            .text
            .clone()
            .unwrap_or_default()
            .contains("Total: sent 3, failed 1")
    );

    let (code, _, err) = run(&["stats", "--day", "2026-02-30"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid day"), "{err}");
}
