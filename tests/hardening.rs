//! One tenant cannot take the service down: templates that loop or multiply, requests that
//! answer 404 without side effects. The real API on port 0, the worker in-process.

mod common;

use blast_testkit::SmsStub;
use common::api_client::{Api, error_code, setup};
use common::{ApiServer, RunningWorker, TOKEN, TestDb, wait_done, wait_until};
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
    let id = m["id"].as_i64().expect("id");
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
            .fetch_optional(db.store.pool())
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
    worker.stop().await;
}
