//! One tenant cannot take the service down: templates that loop or multiply, requests that
//! answer 404 without side effects. The real API on port 0, the worker in-process.

use crate::common::api_client::{Api, error_code, setup};
use crate::common::{ApiServer, RunningWorker, TOKEN, TestDb, wait_done, wait_until};
use blast_testkit::SmsStub;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn window() -> (String, String) {
    let now = chrono::Utc::now();
    (
        now.to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    )
}

/// The API answers its health check while (and after) `what` was thrown at it.
async fn still_responsive(api: &Api, what: &str) {
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        api.server.http.get(api.server.url("/health")).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("/health did not answer after {what}"))
    .expect("health");
    assert_eq!(health.status(), StatusCode::OK, "after {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_that_loop_or_multiply_are_refused_and_the_process_stays_responsive() {
    let (db, api) = setup(|_| {}).await;
    db.seed_clients(2, "all").await;
    let (start, end) = window();
    for (text, why) in [
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}",
            "",
        ),
        ("{% for a in range(10000) %}{{ a }}{% endfor %}", "limit"),
        (r#"{{ "x" * 99999999 }}{{ "y" * 99999999 }}"#, "multiply"),
        ("{% set a = name %}{% set a = a ~ a %}{{ a }}", "set"),
        (
            "{% for a in [range(99999)|join] %}{% for b in [a ~ a] %}{% for c in [b ~ b] %}{{ c|length }}{% endfor %}{% endfor %}{% endfor %}",
            "join",
        ),
        (
            "{{ name|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa') }}",
            "limit",
        ),
    ] {
        let (status, body) = api
            .post(
                "/api/v1/mailings",
                json!({"text": text, "tags": ["all"], "start_at": start, "end_at": end}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}: {body}");
        assert_eq!(error_code(&body), "validation_failed", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{text}: {message}");
        still_responsive(&api, text).await;
    }
    let (_, list) = api.get("/api/v1/mailings").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_too_long_for_one_recipient_fails_that_message_with_a_clear_error() {
    let db = TestDb::new().await;
    let stub = SmsStub::start(TOKEN, Duration::ZERO).await.expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.max_text_chars = 200;
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    let api = Api {
        server: ApiServer::start(&db.store, settings.clone()).await,
        token,
    };
    for (phone, bio) in [
        ("79001110001", "short"),
        ("79001110002", &"long ".repeat(100)),
    ] {
        let (status, body) = api
            .post(
                "/api/v1/clients",
                json!({"phone": phone, "name": "N", "tags": ["bio"], "attributes": {"bio": bio}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (start, end) = window();
    let (status, m) = api
        .post(
            "/api/v1/mailings",
            json!({"text": "About you: {{ bio }}", "tags": ["bio"], "start_at": start, "end_at": end}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let id = blast::ids::MailingId(m["id"].as_i64().expect("id"));
    let worker = RunningWorker::start(&db.store, settings);
    wait_done(&db, id, Duration::from_secs(60)).await;
    worker.stop().await;
    assert_eq!(stub.delivered_count(), 1, "only the short text went out");
    let (_, failed) = api
        .get(&format!(
            "/api/v1/mailings/{id}/messages?state=failed_permanent"
        ))
        .await;
    let items = failed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{failed}");
    let error = items[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("longer than the channel's limit of 200"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifications_own_mailing_answers_404_and_stays_as_it_was() {
    let db = TestDb::new().await;
    let mut settings = db.settings("http://127.0.0.1:9");
    // Email to a port nobody listens on: the notification's try keeps running.
    settings.notifications.default_channels = vec![blast::domain::ChannelKind::Email];
    settings.email.smtp_host = "127.0.0.1".into();
    settings.email.smtp_port = 9;
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    let api = Api {
        server: ApiServer::start(&db.store, settings.clone()).await,
        token,
    };
    let (status, client) = api
        .post(
            "/api/v1/clients",
            json!({"phone": "79001110003", "name": "N", "email": "n@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let (status, n) = api
        .post(
            "/api/v1/notifications",
            json!({"client_id": client["id"], "title": "Hello"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{n}");
    let worker = RunningWorker::start(&db.store, settings);
    let state_of_try = || async {
        use sqlx::Row;
        sqlx::query("SELECT id, state FROM mailings WHERE notification_id IS NOT NULL")
            .fetch_optional(&db.sql)
            .await
            .expect("try")
            .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
    };
    // Running: the state a pause would have changed.
    wait_until(
        Duration::from_secs(30),
        "the notification's try to run",
        || async {
            state_of_try()
                .await
                .is_some_and(|(_, state)| state == "running")
        },
    )
    .await;
    let (id, before) = state_of_try().await.expect("try");
    for action in ["pause", "resume", "cancel", "retry-failed"] {
        let (status, body): (StatusCode, Value) = api
            .post(&format!("/api/v1/mailings/{id}/{action}"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {body}");
        let (_, after) = state_of_try().await.expect("try");
        assert_eq!(after, before, "{action} changed the try");
    }
    // Dropped, not stopped: this test is about the 404s. Stopping a worker whose email try
    // keeps failing against a closed port sometimes waited out SQLite's 30 s busy timeout on
    // this machine (an open question on the shutdown path, noted on issue 26); clean stops are
    // tested by the delivery suite.
    drop(worker);
}

/// A request body the test feeds by hand: each `send` is one chunk; dropping the sender ends
/// the body.
fn hand_fed_body() -> (tokio::sync::mpsc::Sender<Vec<u8>>, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

fn start_import(api: &Api, body: reqwest::Body) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let request = api
        .req(reqwest::Method::POST, "/api/v1/clients/import")
        .header("content-type", "text/csv")
        .body(body);
    tokio::spawn(crate::common::api_client::send(request))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_hold_no_connection_and_are_cut_off() {
    let (db, api) = setup(|s| {
        s.api.max_concurrent_imports_per_tenant = 8;
        s.api.body_read_timeout_secs = 3;
        s.api.upload_min_bytes_per_sec = 1;
    })
    .await;
    let other = crate::common::api_client::second_tenant(&db, &api).await;
    // Eight uploads of one tenant, each sending its header row and then nothing: as many as
    // the embedded pool has connections.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let (tx, body) = hand_fed_body();
        tx.send(b"phone,name\n".to_vec())
            .await
            .expect("first chunk");
        stalled.push((tx, start_import(&api, body)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A ninth of the same tenant is refused at once (once the eight hold their slots: an
    // earlier ninth, empty, ends at once and gives its slot back).
    wait_until(
        Duration::from_secs(20),
        "a ninth upload refused",
        || async {
            let (tx, body) = hand_fed_body();
            drop(tx);
            let (status, _) = start_import(&api, body).await.expect("ninth");
            status == StatusCode::TOO_MANY_REQUESTS
        },
    )
    .await;
    // With an Idempotency-Key too; and that refusal is not what the key answers later.
    let keyed = || {
        api.req(reqwest::Method::POST, "/api/v1/clients/import")
            .header("content-type", "text/csv")
            .header("idempotency-key", "retry-me")
            .body("phone,name\n79001110077,n\n")
    };
    let (status, body) = crate::common::api_client::send(keyed()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // The other tenant is served as usual.
    for path in ["/api/v1/clients", "/api/v1/mailings"] {
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), other.get(path))
            .await
            .expect("another tenant's read answers while the uploads stall");
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let ready = api
        .server
        .http
        .get(api.server.url("/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::OK);
    // The stalled bodies are cut off with 408 after body_read_timeout_secs.
    for (tx, upload) in stalled {
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), upload)
            .await
            .expect("cut off")
            .expect("upload task");
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
        drop(tx);
    }
    let (_, clients) = api.get("/api/v1/clients").await;
    assert_eq!(clients["items"].as_array().map(Vec::len), Some(0));
    let retried = keyed().send().await.expect("retry");
    assert_eq!(retried.status(), StatusCode::OK);
    assert!(retried.headers().get("idempotent-replayed").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408_with_or_without_an_idempotency_key() {
    let (_db, api) = setup(|s| s.api.body_read_timeout_secs = 1).await;
    // (path, content type, first half of the body, idempotency key)
    let cases = [
        (
            "/api/v1/clients",
            "application/json",
            "{\"phone\": \"7900",
            None,
        ),
        (
            "/api/v1/clients",
            "application/json",
            "{\"phone\": \"7900",
            Some("k1"),
        ),
        (
            "/api/v1/clients/import",
            "text/csv",
            "phone,name\n",
            Some("k2"),
        ),
    ];
    let mut stalled = Vec::new();
    for (path, content_type, half, key) in cases {
        let (tx, body) = hand_fed_body();
        tx.send(half.as_bytes().to_vec()).await.expect("first half");
        let mut request = api
            .req(reqwest::Method::POST, path)
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        stalled.push((
            format!("{path} key={key:?}"),
            tx,
            tokio::spawn(crate::common::api_client::send(request)),
        ));
    }
    for (what, tx, request) in stalled {
        let (status, body) = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .unwrap_or_else(|_| panic!("{what}: not cut off"))
            .expect("request task");
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{what}: {body}");
        drop(tx);
    }
    let (_, clients) = api.get("/api/v1/clients").await;
    assert_eq!(clients["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_below_the_minimum_rate_gets_408() {
    let (_db, api) = setup(|s| {
        s.api.body_read_timeout_secs = 2;
        s.api.upload_min_bytes_per_sec = 100_000;
    })
    .await;
    let (tx, body) = hand_fed_body();
    let upload = start_import(&api, body);
    tx.send(b"phone,name\n".to_vec()).await.expect("header");
    let feeder = tokio::spawn(async move {
        for i in 0..100 {
            let row = format!("7900{i:07},n\n").into_bytes();
            if tx.send(row).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), upload)
        .await
        .expect("cut off")
        .expect("upload task");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bytes/s"),
        "{body}"
    );
    feeder.abort();
}

#[tokio::test]
async fn a_request_head_that_never_ends_loses_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_db, api) = setup(|s| s.api.header_read_timeout_secs = 1).await;
    let addr = api.server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: blast\r\n")
        .await
        .expect("half a head");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn an_import_reports_its_first_errors_and_counts_the_rest() {
    let (_db, api) = setup(|s| s.api.import_max_errors = 5).await;
    let mut csv = String::from("phone,name\n");
    let huge = "9".repeat(10_000);
    for i in 0..100 {
        csv.push_str(&format!("{huge}{i},n\n"));
    }
    csv.push_str("79001234567,ok\n");
    let response = api
        .req(reqwest::Method::POST, "/api/v1/clients/import")
        .header("content-type", "text/csv")
        .header("idempotency-key", "bounded-report")
        .body(csv.clone())
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = response.text().await.expect("body");
    assert!(text.len() < 5_000, "the report is {} bytes", text.len());
    let report: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(report["error_count"], 100, "{report}");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 5);
    assert_eq!(errors[0]["line"], 2);
    for e in errors {
        assert!(
            e["message"].as_str().expect("message").chars().count() <= 201,
            "{e}"
        );
    }
    // The replay of the same request answers the same bounded report.
    let replay = api
        .req(reqwest::Method::POST, "/api/v1/clients/import")
        .header("content-type", "text/csv")
        .header("idempotency-key", "bounded-report")
        .body(csv)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.expect("body"), text);
}

#[tokio::test]
async fn the_auth_scheme_is_case_insensitive_and_a_401_names_it() {
    let (_db, api) = setup(|_| {}).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = api
            .server
            .http
            .get(api.server.url("/api/v1/clients"))
            .header("authorization", format!("{scheme} {}", api.token))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    let refused = api
        .server
        .http
        .get(api.server.url("/api/v1/clients"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"blast\""
    );
}

#[tokio::test]
async fn a_nul_character_in_text_is_a_422_on_every_profile() {
    let (_db, api) = setup(|_| {}).await;
    let (status, body) = api
        .post(
            "/api/v1/clients",
            json!({"phone": "79001110009", "name": "a\u{0}b"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("NUL")
    );
    // An escaped backslash followed by u0000 is no NUL.
    let (status, body) = api
        .post(
            "/api/v1/clients",
            json!({"phone": "79001110009", "name": "a\\u0000b"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // In an imported row: that row is refused, on both profiles alike.
    let import = api
        .req(reqwest::Method::POST, "/api/v1/clients/import")
        .header("content-type", "text/csv")
        .body("phone,name\n79001110010,ok\n79001110011,a\u{0}b\n");
    let (status, report) = crate::common::api_client::send(import).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["errors"][0]["line"], 3, "{report}");
    // In a query string too: never a server error.
    let (status, body) = api.get("/api/v1/clients?tag=%00").await;
    assert!(!status.is_server_error(), "{status}: {body}");
}

#[tokio::test]
async fn webhooks_are_capped_per_tenant_and_their_secret_is_never_replayed() {
    let (_db, api) = setup(|s| {
        s.webhooks.max_per_tenant = 2;
        s.webhooks.allow_loopback_http = true;
        s.webhooks.allow_private_addresses = true;
    })
    .await;
    let create = |key: &'static str| {
        api.req(reqwest::Method::POST, "/api/v1/webhooks")
            .header("idempotency-key", key)
            .json(&json!({"url": "http://127.0.0.1:9/hook"}))
    };
    let (status, first) = crate::common::api_client::send(create("hook-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(first["secret"].as_str().is_some_and(|s| !s.is_empty()));
    let replay = create("hook-1").send().await.expect("replay");
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed: Value = replay.json().await.expect("json");
    assert_eq!(replayed["id"], first["id"]);
    assert!(replayed.get("secret").is_none(), "{replayed}");
    let (status, _) = crate::common::api_client::send(create("hook-2")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, third) = crate::common::api_client::send(create("hook-3")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{third}");
    let (_, list) = api.get("/api/v1/webhooks").await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
}

#[tokio::test]
async fn a_tenant_holds_a_bounded_number_of_event_streams() {
    let (db, api) = setup(|s| s.api.max_event_streams_per_tenant = 1).await;
    db.seed_clients(1, "all").await;
    let (start, end) = window();
    let (status, m) = api
        .post(
            "/api/v1/mailings",
            json!({"text": "x", "tags": ["all"], "start_at": start, "end_at": end}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let path = format!("/api/v1/mailings/{}/events", m["id"]);
    let first = api
        .req(reqwest::Method::GET, &path)
        .send()
        .await
        .expect("first stream");
    assert_eq!(first.status(), StatusCode::OK);
    let (status, body) = api.get(&path).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    drop(first);
    wait_until(Duration::from_secs(40), "the slot to come back", || async {
        let response = api
            .req(reqwest::Method::GET, &path)
            .send()
            .await
            .expect("stream");
        response.status() == StatusCode::OK
    })
    .await;
}

async fn login(api: &Api, forwarded_for: &str, password: &str) -> StatusCode {
    api.server
        .http
        .post(api.server.url("/api/v1/auth/token"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": "tester", "password": password}))
        .send()
        .await
        .expect("login")
        .status()
}

#[tokio::test]
async fn a_stranger_guessing_passwords_does_not_lock_the_user_out() {
    let (_db, api) = setup(|s| {
        s.api.login_attempts_per_minute = 3;
        s.api.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(login(&api, "203.0.113.5", "a guess").await);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // The user, from their own address behind the same proxy, gets in.
    assert_eq!(
        login(&api, "198.51.100.7, 127.0.0.1", "correct horse battery").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let (_db, api) = setup(|s| s.api.login_attempts_per_minute = 3).await;
    let mut statuses = Vec::new();
    // A client naming a new address each time is still one address: the peer's.
    for i in 0..5 {
        statuses.push(login(&api, &format!("203.0.113.{i}"), "a guess").await);
    }
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

#[tokio::test]
async fn tenant_secrets_are_sealed_at_rest_and_survive_a_key_rotation() {
    use blast::settings::Secret;
    use blast::store::{SecretKeys, StoreError};
    let db = TestDb::new().await;
    let old_key = SecretKeys::generate();
    let sealing = |current: &str, previous: &[&str]| {
        db.store
            .clone()
            .with_secret_keys(SecretKeys::new(current, previous).expect("keys"))
    };
    // One bot registered before any key was set, one after; one webhook.
    let unsealed = blast::store::Store::connect(&db.url).await.expect("store");
    unsealed
        .add_telegram_bot(db.tenant, "legacy", &Secret::new("111:legacy-token"))
        .await
        .expect("legacy bot");
    let store = sealing(&old_key, &[]);
    store
        .add_telegram_bot(db.tenant, "sealed", &Secret::new("222:sealed-token"))
        .await
        .expect("sealed bot");
    let hook = store
        .add_webhook(db.tenant, "http://127.0.0.1:9/hook", 10)
        .await
        .expect("webhook");
    let secret = hook.secret.expect("shown once");
    let stored = || async {
        use sqlx::Row;
        let mut values: Vec<String> = Vec::new();
        for sql in [
            "SELECT token FROM telegram_bots ORDER BY name",
            "SELECT secret FROM webhooks",
        ] {
            for row in sqlx::query(sql).fetch_all(&db.sql).await.expect("raw") {
                values.push(row.get(0));
            }
        }
        values
    };
    let raw = stored().await;
    assert_eq!(
        raw[0], "111:legacy-token",
        "stored before the key: as it was"
    );
    assert!(raw[1].starts_with("sealed1:") && !raw[1].contains("sealed-token"));
    assert!(raw[2].starts_with("sealed1:") && !raw[2].contains(&secret));
    let token = |s: blast::store::Store, name: &'static str| async move {
        s.telegram_bot(db.tenant, name)
            .await
            .map(|bot| bot.expect("bot").token.expose().to_owned())
    };
    assert_eq!(
        token(store.clone(), "sealed").await.expect("opens"),
        "222:sealed-token"
    );
    assert_eq!(
        token(store.clone(), "legacy").await.expect("plain"),
        "111:legacy-token"
    );
    // Without its key, a sealed value is a clear error, never garbage.
    assert!(matches!(
        token(unsealed.clone(), "sealed").await,
        Err(StoreError::Secret(_))
    ));

    // Rotation: the new key with the old one kept; everything sealed again under the new key.
    let new_key = SecretKeys::generate();
    let rotated = sealing(&new_key, &[&old_key]);
    assert_eq!(rotated.reseal_secrets().await.expect("reseal"), 3);
    assert_eq!(rotated.reseal_secrets().await.expect("again"), 0);
    let only_new = sealing(&new_key, &[]);
    assert_eq!(
        token(only_new.clone(), "sealed").await.expect("opens"),
        "222:sealed-token"
    );
    assert_eq!(
        token(only_new.clone(), "legacy").await.expect("opens"),
        "111:legacy-token"
    );
    for value in stored().await {
        assert!(value.starts_with("sealed1:"), "{value}");
    }
    assert!(
        token(store, "sealed").await.is_err(),
        "the old key alone no longer opens it"
    );
}

/// Media files go with their mailing (and with an edit that replaces them), and a tenant's
/// files stay within its quota.
#[tokio::test]
async fn media_files_are_deleted_with_their_mailing_and_held_to_a_quota() {
    use base64::Engine;
    let db = TestDb::new().await;
    db.seed_clients(1, "tg").await;
    let store = db.store.clone().with_media_quota(12_000);
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    let api = Api {
        server: ApiServer::start(&store, db.settings("http://127.0.0.1:9")).await,
        token,
    };
    let start = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let end = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let with_file = |name: &str| {
        json!({
            "channel": "telegram", "text": "Your invoice", "tags": ["tg"],
            "start_at": start, "end_at": end,
            "telegram": {"kind": "document", "media": {"file": {
                "name": name,
                "base64": base64::engine::general_purpose::STANDARD.encode(vec![7u8; 5000]),
            }}},
        })
    };
    let files = || async {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) FROM media_files")
            .fetch_one(&db.sql)
            .await
            .expect("count")
            .get::<i64, _>(0)
    };
    let (status, a) = api.post("/api/v1/mailings", with_file("a.pdf")).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let (status, b) = api.post("/api/v1/mailings", with_file("b.pdf")).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!(files().await, 2);
    let (status, c) = api.post("/api/v1/mailings", with_file("c.pdf")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{c}");
    assert!(
        c["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("quota"),
        "{c}"
    );
    assert_eq!(files().await, 2, "nothing stored for the refused mailing");
    let (status, _) = api.delete(&format!("/api/v1/mailings/{}", a["id"])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(files().await, 1, "the deleted mailing's file went with it");
    let (status, c) = api.post("/api/v1/mailings", with_file("c.pdf")).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    // An edit that brings a new file frees the one it replaces.
    let (status, edited) = api
        .put(
            &format!("/api/v1/mailings/{}", b["id"]),
            with_file("b2.pdf"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(files().await, 2);
}

/// A mailing carries its media inline up to api.import_body_limit_bytes, past the 2 MiB the
/// JSON extractor would allow by itself.
#[tokio::test]
async fn a_mailing_with_a_large_inline_file_is_accepted() {
    use base64::Engine;
    let (db, api) = setup(|_| {}).await;
    db.seed_clients(1, "tg").await;
    let (start, end) = window();
    let (status, created) = api
        .post(
            "/api/v1/mailings",
            json!({
                "channel": "telegram", "text": "The catalogue", "tags": ["tg"],
                "start_at": start, "end_at": end,
                "telegram": {"kind": "document", "media": {"file": {
                    "name": "catalogue.pdf",
                    "base64": base64::engine::general_purpose::STANDARD.encode(vec![1u8; 3 << 20]),
                }}},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

/// Every state-changing endpoint, aimed by one tenant at another's resources, answers 404 and
/// changes nothing the owner can see.
#[tokio::test]
async fn every_404_on_another_tenants_resource_changes_nothing() {
    let (db, owner) = setup(|s| {
        s.webhooks.allow_loopback_http = true;
        s.webhooks.allow_private_addresses = true;
    })
    .await;
    let intruder = crate::common::api_client::second_tenant(&db, &owner).await;
    db.seed_clients(1, "all").await;
    let (status, client) = owner
        .post(
            "/api/v1/clients",
            json!({"phone": "79001112233", "name": "Owner's", "tags": ["all"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let (start, end) = window();
    let (status, mailing) = owner
        .post(
            "/api/v1/mailings",
            json!({"text": "x", "tags": ["all"], "start_at": "2030-01-01T00:00:00Z", "end_at": "2030-01-02T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mailing}");
    let (status, hook) = owner
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    db.store
        .add_telegram_bot(
            db.tenant,
            "owners",
            &blast::settings::Secret::new("333:owners-token"),
        )
        .await
        .expect("bot");
    let (c, m, w) = (&client["id"], &mailing["id"], &hook["id"]);
    let owner_view = || async {
        vec![
            owner.get(&format!("/api/v1/clients/{c}")).await.1,
            owner.get(&format!("/api/v1/mailings/{m}")).await.1,
            owner.get("/api/v1/webhooks").await.1,
            owner.get("/api/v1/telegram-bots").await.1,
            owner
                .get(&format!("/api/v1/clients/{c}/notification-preferences"))
                .await
                .1,
        ]
    };
    let before = owner_view().await;
    let edit = json!({"text": "hijacked", "tags": ["all"], "start_at": start, "end_at": end});
    let attempts: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (
            reqwest::Method::PUT,
            format!("/api/v1/clients/{c}"),
            Some(json!({"phone": "79001112233", "name": "Hijacked"})),
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/clients/{c}"),
            Some(json!({"name": "Hijacked"})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/clients/{c}"),
            None,
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/clients/{c}/notification-preferences"),
            Some(json!({"channels": ["email"]})),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/mailings/{m}"),
            Some(edit),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{m}/cancel"),
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{m}/pause"),
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{m}/resume"),
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{m}/retry-failed"),
            Some(json!({})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/mailings/{m}"),
            None,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/webhooks/{w}"),
            None,
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/telegram-bots/owners".to_owned(),
            None,
        ),
    ];
    for (method, path, body) in attempts {
        let mut request = intruder.req(method.clone(), &path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, answer) = crate::common::api_client::send(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(
            owner_view().await,
            before,
            "{method} {path} changed something"
        );
    }
}
