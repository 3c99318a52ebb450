//! Notifications and web push against real peers on 127.0.0.1: web-push-testing (npm) as the
//! push service (it checks the VAPID signature and decrypts the aes128gcm payload), the Bot
//! API stub, and aiosmtpd as the SMTP server. Everything goes through the HTTP API and a
//! running worker. Push endpoints on non-public addresses are refused at subscription, and
//! again at every push by a worker whose settings do not allow them.

use crate::common::{ApiServer, RunningWorker, TestDb, wait_until};
use blast::channels::VapidKeys;
use blast::settings::{EmailSecurity, Secret, Settings};
use blast::store::NewClient;
use blast_testkit::{SmtpPeer, SmtpPeerOptions, TelegramStub, TelegramStubOptions, WebPushPeer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;
use std::time::Duration;

const BOT_TOKEN: &str = "4242:test-secret-token";

struct Setup {
    db: TestDb,
    api: ApiServer,
    token: String,
    http: reqwest::Client,
    keys: VapidKeys,
    settings: Settings,
}

impl Setup {
    async fn new(tweak: impl FnOnce(&mut Settings)) -> Setup {
        let db = TestDb::new().await;
        let keys = VapidKeys::generate();
        let mut settings = db.settings("http://127.0.0.1:9");
        settings.webpush.vapid_private_key = Secret::new(keys.private_key.clone());
        settings.webpush.subject = "mailto:ops@blast.test".into();
        settings.webpush.allow_loopback_http = true;
        settings.webpush.allow_private_addresses = true;
        tweak(&mut settings);
        let user = db.store.user_by_name("tester").await.expect("user");
        let token = db.store.create_token(&user, "test").await.expect("token");
        let api = ApiServer::start(&db.store, settings.clone()).await;
        Setup {
            db,
            api,
            token,
            http: reqwest::Client::new(),
            keys,
            settings,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_keyed(method, path, body, None).await
    }

    async fn call_keyed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.api.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let response = req.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn client(
        &self,
        name: &str,
        email: Option<&str>,
        chat: Option<i64>,
    ) -> blast::ids::ClientId {
        self.db
            .store
            .add_client(
                self.db.tenant,
                NewClient {
                    // A phone of its own per name: clients need one.
                    phone: Some(
                        format!("7900{:07}", name.bytes().map(u64::from).sum::<u64>() * 131)
                            .parse()
                            .expect("phone"),
                    ),
                    name: name.into(),
                    email: email.map(Into::into),
                    telegram_chat_id: chat,
                    timezone: "UTC".into(),
                    ..NewClient::default()
                },
            )
            .await
            .expect("client")
            .id
    }

    async fn notification(&self, id: i64) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/notifications/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn wait_state(&self, id: i64, state: &str) -> Value {
        wait_until(
            Duration::from_secs(30),
            &format!("notification {id} {state}"),
            || async { self.notification(id).await["state"] == state },
        )
        .await;
        self.notification(id).await
    }

    async fn notify(&self, body: Value) -> i64 {
        let (status, answer) = self
            .call(reqwest::Method::POST, "/api/v1/notifications", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["id"].as_i64().expect("id")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_push_arrives_decrypted_and_an_expired_subscription_is_deleted() {
    let push = WebPushPeer::start()
        .await
        .expect("web push peer (run scripts/peers)");
    let s = Setup::new(|_| {}).await;
    let client = s.client("ann", None, None).await;
    let path = format!("/api/v1/clients/{client}/push-subscriptions");

    // What a browser would hand over; a bad one is refused with the reason.
    let live = push.subscribe(&s.keys.public_key).await.expect("subscribe");
    let dead = push.subscribe(&s.keys.public_key).await.expect("subscribe");
    for sub in [&live, &dead] {
        let (status, body) = s
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"endpoint": sub.endpoint, "expirationTime": null,
                            "keys": {"p256dh": sub.keys.p256dh, "auth": sub.keys.auth}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for (bad, why) in [
        (
            json!({"endpoint": live.endpoint, "keys": {"p256dh": live.keys.p256dh, "auth": "c2hvcnQ"}}),
            "16 bytes",
        ),
        (
            json!({"endpoint": live.endpoint, "keys": {"p256dh": "AAAA", "auth": live.keys.auth}}),
            "P-256",
        ),
        (
            json!({"endpoint": "http://push.example.com/x", "keys": {"p256dh": live.keys.p256dh, "auth": live.keys.auth}}),
            "https",
        ),
    ] {
        let (status, body) = s.call(reqwest::Method::POST, &path, Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "{body}"
        );
    }
    push.expire(&dead.client_hash).await.expect("expire");

    let worker = RunningWorker::start(&s.db.store, s.settings.clone());
    let id = s
        .notify(json!({"client_id": client, "title": "Order shipped", "body": "It is on its way {{ not a template }}",
                       "data": {"order": 42}, "link": "https://shop.test/o/42"}))
        .await;
    let done = s.wait_state(id, "delivered").await;
    assert_eq!(done["channel"], "webpush");
    assert_eq!(done["tried"], json!(["webpush"]));

    let got = push.messages(&live.client_hash).await.expect("messages");
    assert_eq!(got.len(), 1, "{got:?}");
    let payload: Value = serde_json::from_str(&got[0]).expect("payload is JSON");
    assert_eq!(payload["title"], "Order shipped");
    assert_eq!(payload["body"], "It is on its way {{ not a template }}");
    assert_eq!(payload["data"], json!({"order": 42}));
    assert_eq!(payload["link"], "https://shop.test/o/42");
    assert_eq!(payload["notification_id"], id);
    assert!(
        push.messages(&dead.client_hash)
            .await
            .expect("messages")
            .is_empty()
    );

    // Web push is a mailing channel too: the subject is the title, the text a template.
    let mailing =
        s.db.create_mailing(blast::store::NewMailing {
            subject: Some("Sale".into()),
            ..blast::store::NewMailing::new(
                blast::domain::ChannelKind::WebPush,
                "Hi {{ name }}",
                crate::common::now_ms(),
                crate::common::now_ms() + 300_000,
            )
        })
        .await;
    crate::common::wait_done(&s.db, mailing.id, Duration::from_secs(30)).await;
    let got = push.messages(&live.client_hash).await.expect("messages");
    assert_eq!(got.len(), 2, "{got:?}");
    let payload: Value = serde_json::from_str(&got[1]).expect("payload is JSON");
    assert_eq!(
        (payload["title"].as_str(), payload["body"].as_str()),
        (Some("Sale"), Some("Hi ann"))
    );

    // The push service said 410 for the expired one: it is gone, the live one stays.
    let (_, list) = s.call(reqwest::Method::GET, &path, None).await;
    let endpoints: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["endpoint"].as_str())
        .collect();
    assert_eq!(endpoints, [live.endpoint.as_str()]);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_falls_back_through_the_clients_channels_in_order() {
    let push = WebPushPeer::start()
        .await
        .expect("web push peer (run scripts/peers)");
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let smtp = SmtpPeer::start(SmtpPeerOptions::default()).expect("smtp peer");
    let s = Setup::new(|s| {
        s.telegram.bot_token = Secret::new(BOT_TOKEN);
        s.telegram.api_url = stub.url();
        s.email.smtp_host = "127.0.0.1".into();
        s.email.smtp_port = smtp.port();
        s.email.security = EmailSecurity::Plain;
        s.email.from = "blast <noreply@blast.test>".into();
    })
    .await;
    // Ann's only browser unsubscribed: web push fails for good, Telegram takes it.
    let ann = s.client("ann", Some("ann@x.test"), Some(7001)).await;
    let sub = push.subscribe(&s.keys.public_key).await.expect("subscribe");
    let (status, _) = s
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/clients/{ann}/push-subscriptions"),
            Some(json!({"endpoint": sub.endpoint, "keys": {"p256dh": sub.keys.p256dh, "auth": sub.keys.auth}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    push.expire(&sub.client_hash).await.expect("expire");
    // Bob has no browser and no chat: straight to email.
    let bob = s.client("bob", Some("bob@x.test"), None).await;
    // Cid has nothing at all.
    let cid = s.client("cid", None, None).await;

    let worker = RunningWorker::start(&s.db.store, s.settings.clone());
    let to_ann = s
        .notify(json!({"client_id": ann, "title": "Hello Ann", "body": "Your code is 1234"}))
        .await;
    let to_bob = s
        .notify(
            json!({"client_id": bob, "title": "Hello Bob", "body": "Your code is 5678",
                                 "link": "https://x.test/b"}),
        )
        .await;
    let to_cid = s
        .notify(json!({"client_id": cid, "title": "Hello Cid"}))
        .await;

    let ann_done = s.wait_state(to_ann, "delivered").await;
    assert_eq!(
        ann_done["tried"],
        json!(["webpush", "telegram"]),
        "{ann_done}"
    );
    assert!(
        ann_done["last_error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("webpush:"),
        "{ann_done}"
    );
    let sent: Vec<_> = stub
        .requests()
        .into_iter()
        .filter(|r| r.method == "sendmessage")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].fields["chat_id"], json!(7001));
    assert_eq!(sent[0].fields["text"], "Hello Ann\n\nYour code is 1234");

    let bob_done = s.wait_state(to_bob, "delivered").await;
    assert_eq!(bob_done["tried"], json!(["email"]));
    wait_until(Duration::from_secs(10), "bob's email", || async {
        !smtp.messages().is_empty()
    })
    .await;
    let mail = &smtp.messages()[0];
    assert_eq!(mail.rcpt_tos, ["bob@x.test"]);
    assert_eq!(mail.subject.as_deref(), Some("Hello Bob"));
    assert_eq!(
        mail.text.as_deref().map(str::trim_end),
        Some("Your code is 5678\n\nhttps://x.test/b")
    );

    let cid_done = s.wait_state(to_cid, "failed").await;
    assert!(
        cid_done["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be reached"),
        "{cid_done}"
    );

    // Notification tries are not mailings an operator lists.
    let (_, mailings) = s.call(reqwest::Method::GET, "/api/v1/mailings", None).await;
    assert_eq!(mailings["items"], json!([]), "{mailings}");
    let try_id: i64 = sqlx::query("SELECT id FROM mailings WHERE notification_id = $1")
        .bind(to_bob)
        .fetch_one(&s.db.sql)
        .await
        .expect("bob's try")
        .get(0);
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/v1/mailings/{try_id}")),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{try_id}/retry-failed"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/mailings/{try_id}"),
        ),
    ] {
        let (status, body) = s.call(method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_notification_unless_urgent_and_a_repeated_key_notifies_once() {
    let smtp = SmtpPeer::start(SmtpPeerOptions::default()).expect("smtp peer");
    let s = Setup::new(|s| {
        s.email.smtp_host = "127.0.0.1".into();
        s.email.smtp_port = smtp.port();
        s.email.security = EmailSecurity::Plain;
        s.email.from = "blast <noreply@blast.test>".into();
    })
    .await;
    let ann = s.client("ann", Some("ann@x.test"), None).await;
    // Quiet from an hour ago to an hour from now, in ann's zone (UTC).
    let now = chrono::Utc::now();
    let quiet = format!(
        "{}-{}",
        (now - chrono::Duration::hours(1)).format("%H:%M"),
        (now + chrono::Duration::hours(1)).format("%H:%M")
    );
    let prefs = format!("/api/v1/clients/{ann}/notification-preferences");
    let (status, body) = s
        .call(
            reqwest::Method::PUT,
            &prefs,
            Some(json!({"channels": ["email"], "quiet_hours": quiet})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .call(
            reqwest::Method::PUT,
            &prefs,
            Some(json!({"channels": ["email", "email"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, body) = s.call(reqwest::Method::GET, &prefs, None).await;
    assert_eq!(body, json!({"channels": ["email"], "quiet_hours": quiet}));

    let worker = RunningWorker::start(&s.db.store, s.settings.clone());
    let quiet_one = s
        .notify(json!({"client_id": ann, "title": "Weekly digest"}))
        .await;
    let urgent = s
        .notify(json!({"client_id": ann, "title": "Your account was locked", "urgent": true}))
        .await;
    s.wait_state(urgent, "delivered").await;
    wait_until(Duration::from_secs(10), "the urgent email", || async {
        !smtp.messages().is_empty()
    })
    .await;
    // The quiet one waits for the end of the quiet hours, its row deferred to then.
    let deferred = || async {
        sqlx::query(
            "SELECT m.state, m.next_attempt_at FROM messages m JOIN mailings g ON g.id = m.mailing_id
             WHERE g.notification_id = $1",
        )
        .bind(quiet_one)
        .fetch_optional(&s.db.sql)
        .await
        .expect("row")
        .is_some_and(|row| {
            row.get::<String, _>(0) == "pending"
                && row.get::<i64, _>(1) > crate::common::now_ms() + 30 * 60_000
        })
    };
    wait_until(Duration::from_secs(10), "the quiet one deferred", deferred).await;
    let held = s.notification(quiet_one).await;
    assert_eq!(held["state"], "sending", "{held}");
    let subjects: Vec<Option<String>> = smtp.messages().into_iter().map(|m| m.subject).collect();
    assert_eq!(subjects, [Some("Your account was locked".to_string())]);

    // The same Idempotency-Key twice: one notification, the second answer is 200 with it.
    let body = json!({"client_id": ann, "title": "Payment received", "urgent": true});
    let (first, a) = s
        .call_keyed(
            reqwest::Method::POST,
            "/api/v1/notifications",
            Some(body.clone()),
            Some("pay-1"),
        )
        .await;
    let (second, b) = s
        .call_keyed(
            reqwest::Method::POST,
            "/api/v1/notifications",
            Some(body),
            Some("pay-1"),
        )
        .await;
    assert_eq!(first, StatusCode::CREATED, "{a}");
    assert_eq!(
        second,
        StatusCode::CREATED,
        "the first answer, replayed: {b}"
    );
    assert_eq!(a["id"], b["id"]);
    let id = a["id"].as_i64().expect("id");
    s.wait_state(id, "delivered").await;
    let count: i64 =
        sqlx::query("SELECT COUNT(*) FROM notification_events WHERE idempotency_key = 'pay-1'")
            .fetch_one(&s.db.sql)
            .await
            .expect("count")
            .get(0);
    assert_eq!(count, 1);
    // The store holds the key past the API's replay cache: a direct repeat finds it too.
    let again = blast::app::notifications::notify(
        &s.db.store,
        s.db.tenant,
        blast::store::NewNotification {
            client_id: ann,
            event: blast::notify::Event {
                title: "Payment received".into(),
                body: String::new(),
                data: Value::Null,
                link: None,
            },
            priority: blast::domain::Priority::High,
            urgent: true,
            coalesce_minutes: 0,
            coalesce_key: None,
            idempotency_key: Some("pay-1".into()),
        },
        &s.settings.notifications,
    )
    .await
    .expect("notify");
    assert_eq!((again.0.id, again.1), (id, false));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_inside_the_coalescing_window_go_out_as_one_digest() {
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let s = Setup::new(|s| {
        s.telegram.bot_token = Secret::new(BOT_TOKEN);
        s.telegram.api_url = stub.url();
    })
    .await;
    let ann = s.client("ann", None, Some(8001)).await;
    let worker = RunningWorker::start(&s.db.store, s.settings.clone());
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(
            s.notify(json!({"client_id": ann, "title": format!("New comment {i}"), "body": format!("text {i}"),
                            "coalesce_minutes": 5, "coalesce_key": "comments"}))
                .await,
        );
    }
    let other = s
        .notify(json!({"client_id": ann, "title": "New follower", "coalesce_minutes": 5, "coalesce_key": "follows"}))
        .await;
    assert_eq!(ids, [ids[0]; 3], "same key, same window: one notification");
    assert_ne!(other, ids[0]);
    let waiting = s.notification(ids[0]).await;
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["events"].as_array().map(Vec::len), Some(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        stub.requests().is_empty(),
        "nothing goes out inside the window"
    );

    // The window ends (moved forward here instead of waiting five minutes).
    sqlx::query("UPDATE notifications SET deliver_after = 0 WHERE id = $1")
        .bind(ids[0])
        .execute(&s.db.sql)
        .await
        .expect("end the window");
    s.wait_state(ids[0], "delivered").await;
    let texts: Vec<Value> = stub
        .requests()
        .into_iter()
        .map(|r| r.fields["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [json!(
            "3 new notifications\n\n• New comment 1: text 1\n• New comment 2: text 2\n• New comment 3: text 3"
        )]
    );
    // Once started, a digest takes no more events: the next one starts a new window.
    let later = s
        .notify(json!({"client_id": ann, "title": "New comment 4", "coalesce_minutes": 5, "coalesce_key": "comments"}))
        .await;
    assert_ne!(later, ids[0]);
    assert_eq!(s.notification(other).await["state"], "waiting");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_endpoints_on_non_public_addresses_are_refused_unless_allowed() {
    let strict = Setup::new(|s| s.webpush.allow_private_addresses = false).await;
    let client = strict.client("ann", None, None).await;
    let path = format!("/api/v1/clients/{client}/push-subscriptions");
    // Keys that decode: a P-256 public key and 16 bytes.
    let keys = json!({"p256dh": strict.keys.public_key, "auth": "AAAAAAAAAAAAAAAAAAAAAA"});
    let endpoints = [
        (
            "https://127.0.0.1/push/1",
            "127.0.0.1 is a loopback address",
        ),
        (
            "https://localhost/push/1",
            "its host localhost resolves to ",
        ),
        ("https://10.1.2.3/push/1", "10.1.2.3 is a private address"),
        (
            "https://169.254.169.254/push/1",
            "169.254.169.254 is a link-local address",
        ),
        ("https://[::1]/push/1", "::1 is a loopback address"),
        ("https://[fd00::1]/push/1", "fd00::1 is a private address"),
        ("https://no-such-host.invalid/push/1", "does not resolve"),
    ];
    for (endpoint, why) in endpoints {
        let (status, body) = strict
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"endpoint": endpoint, "keys": keys})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{endpoint}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("the endpoint is refused") && message.contains(why),
            "{endpoint}: {message}"
        );
        if !why.contains("resolve") {
            assert!(
                message.contains("webpush.allow_private_addresses = true"),
                "{message}"
            );
        }
    }
    let (_, list) = strict.call(reqwest::Method::GET, &path, None).await;
    assert_eq!(list, json!([]), "nothing stored");

    let allowed = Setup::new(|_| {}).await;
    let client = allowed.client("ann", None, None).await;
    let path = format!("/api/v1/clients/{client}/push-subscriptions");
    for (endpoint, _) in &endpoints[..6] {
        let (status, body) = allowed
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"endpoint": endpoint, "keys": keys})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_stored_private_endpoint_fails_when_the_worker_does_not_allow_it() {
    let push = WebPushPeer::start()
        .await
        .expect("web push peer (run scripts/peers)");
    // Stored while allowed: one endpoint by the peer's name (localhost), one by its address.
    let s = Setup::new(|_| {}).await;
    let by_name = push.subscribe(&s.keys.public_key).await.expect("subscribe");
    let by_address = push.subscribe(&s.keys.public_key).await.expect("subscribe");
    let ann = s.client("ann", None, None).await;
    let bob = s.client("bob", None, None).await;
    for (client, sub, endpoint) in [
        (ann, &by_name, by_name.endpoint.clone()),
        (
            bob,
            &by_address,
            by_address.endpoint.replace("localhost", "127.0.0.1"),
        ),
    ] {
        let (status, body) = s
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/clients/{client}/push-subscriptions"),
                Some(json!({"endpoint": endpoint,
                            "keys": {"p256dh": sub.keys.p256dh, "auth": sub.keys.auth}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let mut strict = s.settings.clone();
    strict.webpush.allow_private_addresses = false;
    let worker = RunningWorker::start(&s.db.store, strict);
    let to_ann = s
        .notify(json!({"client_id": ann, "title": "Hello Ann"}))
        .await;
    let to_bob = s
        .notify(json!({"client_id": bob, "title": "Hello Bob"}))
        .await;
    for (id, why) in [
        (to_ann, "its host localhost resolves to "),
        (to_bob, "127.0.0.1 is a loopback address"),
    ] {
        let done = s.wait_state(id, "failed").await;
        let error = done["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("the endpoint is refused")
                && error.contains(why)
                && error.contains("a loopback address")
                && error.contains("webpush.allow_private_addresses = true"),
            "{done}"
        );
    }
    worker.stop().await;
    for sub in [&by_name, &by_address] {
        let got = push.messages(&sub.client_hash).await.expect("messages");
        assert!(got.is_empty(), "nothing reached the push service: {got:?}");
    }
    // A refusal is not the push service saying the subscription is gone: it is kept.
    let (_, list) = s
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/clients/{ann}/push-subscriptions"),
            None,
        )
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}
