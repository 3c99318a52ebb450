//! Status webhooks against a local receiver on 127.0.0.1 that checks every signature: message
//! and mailing events of a real mailing arrive signed, a receiver that fails at first gets the
//! event again, and a cancelled mailing is reported. URLs on non-public addresses (literal or
//! after DNS) are refused at registration, and again at send time by a sender that does not
//! allow them.

use crate::common::{ApiServer, RunningWorker, TestDb, now_ms, wait_until};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use blast::domain::{AudienceFilter, ChannelKind};
use blast::store::NewMailing;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver took: each body with whether its signature checked out.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) events: Vec<(Value, bool, String)>,
    refused: usize,
}

/// A receiver that answers 503 to its first `refuse_first` requests, then 200.
pub(crate) async fn receiver(
    secret: Arc<Mutex<String>>,
    refuse_first: usize,
) -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (state, secret) = (state.clone(), secret.clone());
            async move {
                let mut got = state.lock().expect("lock");
                if got.refused < refuse_first {
                    got.refused += 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let header = headers
                    .get("blast-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let valid = verify(&secret.lock().expect("lock"), &header, &body);
                let delivery = headers
                    .get("blast-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
                got.events.push((event, valid, delivery));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// Check `t=…,v1=…` as a receiver would: HMAC-SHA256 over "<t>.<body>", and a fresh `t`.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_ms() / 1000 - t).abs() > 300 {
        return false;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

fn log_mailing(start_at: i64) -> NewMailing {
    NewMailing {
        filter: AudienceFilter {
            tags: vec!["hook".into()],
            operator_codes: vec![],
        },
        ..NewMailing::new(
            ChannelKind::Log,
            "Hi {{ name }}",
            start_at,
            start_at + 300_000,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_mailing_events_arrive_signed_and_are_retried_until_taken() {
    let db = TestDb::new().await;
    db.seed_clients(3, "hook").await;
    let mut settings = db.settings("http://127.0.0.1:9");
    settings.webhooks.allow_loopback_http = true;
    settings.webhooks.allow_private_addresses = true;
    settings.webhooks.interval_ms = 50;
    settings.webhooks.base_delay_ms = 100;
    settings.webhooks.max_delay_ms = 200;
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    let api = ApiServer::start(&db.store, settings.clone()).await;
    let http = reqwest::Client::new();

    let secret = Arc::new(Mutex::new(String::new()));
    let (url, got) = receiver(secret.clone(), 2).await;
    let bad = http
        .post(api.url("/api/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": "http://hooks.example.com/x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let created: Value = http
        .post(api.url("/api/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": url}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let hook_secret = created["secret"]
        .as_str()
        .expect("the secret, once")
        .to_string();
    assert!(hook_secret.starts_with("whsec_"));
    *secret.lock().expect("lock") = hook_secret.clone();
    let get = |path: String| {
        let request = http.get(api.url(&path)).bearer_auth(&token);
        async move {
            let response = request.send().await.expect("get");
            response.json::<Value>().await.expect("json")
        }
    };
    let listed = get("/api/v1/webhooks".into()).await;
    assert_eq!(listed[0]["url"], url.as_str());
    assert!(
        listed[0].get("secret").is_none(),
        "never shown again: {listed}"
    );

    let worker = RunningWorker::start(&db.store, settings.clone());
    let mailing = db.create_mailing(log_mailing(now_ms())).await;
    let later = db.create_mailing(log_mailing(now_ms() + 3_600_000)).await;
    db.store
        .cancel_mailing(db.tenant, later.id)
        .await
        .expect("cancel");

    let sent_ids = |got: &Received| -> Vec<i64> {
        let mut ids: Vec<i64> = got
            .events
            .iter()
            .filter(|(e, _, _)| e["type"] == "messages" && e["mailing_id"] == mailing.id.0)
            .flat_map(|(e, _, _)| e["messages"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["state"] == "sent")
            .filter_map(|m| m["message_id"].as_i64())
            .collect();
        ids.sort_unstable();
        ids
    };
    // A retried event arrives after later ones: receivers order by `at`.
    let states_of = |got: &Received, id: i64| -> Vec<String> {
        let mut events: Vec<(&Value, i64)> = got
            .events
            .iter()
            .filter(|(e, _, _)| e["type"] == "mailing" && e["mailing_id"] == id)
            .map(|(e, _, delivery)| (e, delivery.parse().unwrap_or(i64::MAX)))
            .collect();
        // In the order they happened, not the order they arrived: a refused event is posted
        // again after later ones. Two in the same millisecond go by their delivery ids, which
        // are given in the order the events are written.
        events.sort_by_key(|(e, delivery)| (e["at"].as_i64(), *delivery));
        events
            .iter()
            .filter_map(|(e, _)| e["state"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until(Duration::from_secs(30), "every event posted", || async {
        let got = got.lock().expect("lock");
        sent_ids(&got).len() == 3
            && states_of(&got, mailing.id.0).len() == 2
            && !states_of(&got, later.id.0).is_empty()
    })
    .await;
    worker.stop().await;
    let rows: Vec<i64> =
        sqlx::query_scalar::<_, i64>("SELECT id FROM messages WHERE mailing_id = $1 ORDER BY id")
            .bind(mailing.id)
            .fetch_all(&db.sql)
            .await
            .expect("ids");

    {
        let got = got.lock().expect("lock");
        assert_eq!(
            got.refused, 2,
            "the receiver refused twice, and was asked again"
        );
        assert!(
            got.events.iter().all(|(_, valid, _)| *valid),
            "every signature checks out"
        );
        let mut deliveries: Vec<&str> = got.events.iter().map(|(_, _, d)| d.as_str()).collect();
        let posted = deliveries.len();
        deliveries.sort_unstable();
        deliveries.dedup();
        assert_eq!(deliveries.len(), posted, "each event taken once");
        assert_eq!(sent_ids(&got), rows);
        assert_eq!(states_of(&got, mailing.id.0), ["running", "done"]);
        assert_eq!(states_of(&got, later.id.0), ["cancelled"]);
    }

    // The API shows what was posted and that the first ones needed more than one attempt.
    let history = get(format!("/api/v1/webhooks/{}/deliveries", created["id"])).await;
    let history = history.as_array().expect("list");
    assert!(
        history.iter().all(|d| d["state"] == "delivered"),
        "{history:?}"
    );
    assert!(
        history.iter().any(|d| d["attempts"].as_i64() > Some(1)),
        "{history:?}"
    );
}

/// POST a webhook URL; the status and the answer.
async fn register(api: &ApiServer, token: &str, url: &str) -> (StatusCode, Value) {
    let response = api
        .http
        .post(api.url("/api/v1/webhooks"))
        .bearer_auth(token)
        .json(&json!({ "url": url }))
        .send()
        .await
        .expect("post");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_public_urls_are_refused_at_registration_and_again_at_send_time() {
    let db = TestDb::new().await;
    db.seed_clients(2, "hook").await;
    let mut strict = db.settings("http://127.0.0.1:9");
    strict.webhooks.interval_ms = 50;
    let mut allowed = strict.clone();
    allowed.webhooks.allow_loopback_http = true;
    allowed.webhooks.allow_private_addresses = true;
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");

    // By default: refused with the reason, nothing stored. `localhost` is refused for what it
    // resolves to.
    let api = ApiServer::start(&db.store, strict.clone()).await;
    for (url, why) in [
        ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("https://localhost/hook", "localhost resolves to "),
        ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
        (
            "https://169.254.169.254/latest/meta-data",
            "169.254.169.254 is a link-local address",
        ),
        ("https://[::1]/hook", "::1 is a loopback address"),
        (
            "https://[::ffff:127.0.0.1]/hook",
            "127.0.0.1 is a loopback address",
        ),
        (
            "https://100.64.0.1/hook",
            "a shared (carrier-grade NAT) address",
        ),
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ] {
        let (status, body) = register(&api, &token, url).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("the webhook URL is refused") && message.contains(why),
            "{url}: {message}"
        );
        if url.contains("localhost") {
            assert!(message.contains("a loopback address"), "{message}");
        }
        if !why.contains("resolve") {
            assert!(
                message.contains("webhooks.allow_private_addresses = true"),
                "the setting is named: {message}"
            );
        }
    }
    let listed = api
        .http
        .get(api.url("/api/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(listed, json!([]), "nothing stored");
    drop(api);

    // Where the operator allows it: accepted (no DNS needed for that).
    let api = ApiServer::start(&db.store, allowed.clone()).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
    ] {
        let (status, body) = register(&api, &token, url).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
        let deleted = api
            .http
            .delete(api.url(&format!("/api/v1/webhooks/{}", body["id"])))
            .bearer_auth(&token)
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    }

    // Two local receivers' URLs stored while allowed, one by address and one by a name that
    // resolves to loopback: a sender that does not allow private addresses posts nothing to
    // either, and fails each event at once with the reason.
    let (url, got) = receiver(Arc::new(Mutex::new(String::new())), 0).await;
    let by_name = url.replace("127.0.0.1", "localhost");
    let mut hooks = Vec::new();
    for url in [url.as_str(), by_name.as_str()] {
        let (status, body) = register(&api, &token, url).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
        hooks.push((body["id"].as_i64().expect("id"), url.to_string()));
    }
    let mut sender = strict.clone();
    sender.webhooks.allow_loopback_http = true;
    let worker = RunningWorker::start(&db.store, sender);
    let mailing = db.create_mailing(log_mailing(now_ms())).await;
    crate::common::wait_done(&db, mailing.id, Duration::from_secs(30)).await;
    let deliveries = |id: i64| {
        let request = api
            .http
            .get(api.url(&format!("/api/v1/webhooks/{id}/deliveries")))
            .bearer_auth(&token);
        async move {
            request
                .send()
                .await
                .expect("deliveries")
                .json::<Vec<Value>>()
                .await
                .expect("json")
        }
    };
    for (id, url) in &hooks {
        wait_until(
            Duration::from_secs(30),
            &format!("the events of {url} end"),
            || async {
                let list = deliveries(*id).await;
                // running, done, and the messages
                list.len() >= 3 && list.iter().all(|d| d["state"] != "pending")
            },
        )
        .await;
        let why = if url.contains("localhost") {
            "its host localhost resolves to "
        } else {
            "127.0.0.1 is a loopback address"
        };
        for delivery in deliveries(*id).await {
            assert_eq!(delivery["state"], "failed", "{url}: {delivery}");
            assert_eq!(delivery["attempts"], 1, "not retried: {delivery}");
            let error = delivery["last_error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with("the webhook URL is refused")
                    && error.contains(why)
                    && error.contains("a loopback address")
                    && error.contains("webhooks.allow_private_addresses = true"),
                "{url}: {error}"
            );
        }
    }
    worker.stop().await;
    let got = got.lock().expect("lock");
    assert!(
        got.events.is_empty() && got.refused == 0,
        "the receiver was never called"
    );
}

/// A receiver that answers each request with the next of `answers` (status and an optional
/// `Retry-After`), then 200; it notes when each request came.
async fn scripted_receiver(
    answers: Vec<(StatusCode, Option<&'static str>)>,
) -> (String, Arc<Mutex<Vec<i64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = (seen.clone(), Arc::new(Mutex::new(answers.into_iter())));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (seen, answers) = state.clone();
            async move {
                seen.lock().expect("lock").push(now_ms());
                let next = answers.lock().expect("lock").next();
                match next {
                    Some((status, Some(after))) => {
                        (status, [(axum::http::header::RETRY_AFTER, after)]).into_response()
                    }
                    Some((status, None)) => status.into_response(),
                    None => StatusCode::OK.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// One event owed to a webhook at `url`, posted by a sender whose own schedule would try
/// again after 100 ms; the sender runs until the event is settled or `for_at_most` passes.
async fn post_one_event(url: &str, for_at_most: Duration) -> Vec<blast::store::WebhookDelivery> {
    let db = TestDb::new().await;
    db.seed_clients(1, "hook").await;
    let mut settings = db.settings("http://127.0.0.1:9");
    settings.webhooks.allow_loopback_http = true;
    settings.webhooks.allow_private_addresses = true;
    settings.webhooks.base_delay_ms = 100;
    settings.webhooks.max_delay_ms = 200;
    let hook = blast::app::webhooks::add_webhook(&db.store, db.tenant, url, &settings.webhooks)
        .await
        .expect("webhook");
    let later = db.create_mailing(log_mailing(now_ms() + 3_600_000)).await;
    db.store
        .cancel_mailing(db.tenant, later.id)
        .await
        .expect("cancel: an event");
    let sender = blast::worker::webhooks::WebhookSender::new(db.store.clone(), &settings.webhooks)
        .expect("sender");
    let started = std::time::Instant::now();
    loop {
        sender.send_due().await.expect("send");
        let history = db
            .store
            .webhook_deliveries(db.tenant, hook.id, 10)
            .await
            .expect("history");
        if history.iter().all(|d| d.state != "pending") || started.elapsed() > for_at_most {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_answers_410_is_not_asked_again() {
    let (url, seen) = scripted_receiver(vec![(StatusCode::GONE, None); 5]).await;
    let history = post_one_event(&url, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, "failed", "{history:?}");
    assert_eq!(history[0].attempts, 1);
    assert!(
        history[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("410"),
        "{history:?}"
    );
    assert_eq!(seen.lock().expect("lock").len(), 1, "asked once");
}

#[tokio::test]
async fn a_receivers_retry_after_is_honoured_and_its_5xx_retried() {
    let (url, seen) = scripted_receiver(vec![
        (StatusCode::TOO_MANY_REQUESTS, Some("2")),
        (StatusCode::SERVICE_UNAVAILABLE, None),
    ])
    .await;
    let history = post_one_event(&url, Duration::from_secs(15)).await;
    assert_eq!(history[0].state, "delivered", "{history:?}");
    assert_eq!(history[0].attempts, 3);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[1] - seen[0] >= 1_900,
        "asked again {} ms after a Retry-After of 2 s",
        seen[1] - seen[0]
    );
    assert!(
        seen[2] - seen[1] < 1_900,
        "a 503 without Retry-After waits the sender's own schedule, not {} ms",
        seen[2] - seen[1]
    );
}
