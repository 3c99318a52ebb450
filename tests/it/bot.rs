//! The subscriber bot against the Bot API stub (testkit::TelegramStub, which holds getUpdates
//! like Telegram and answers a second concurrent poll with 409): /start with and without a
//! deep-link tag, /stop, re-subscribing, the webhook mode and its secret, workers that run the
//! bot taking turns at polling, and the SQLite migration that made a client's phone optional.

use crate::common::{RunningWorker, TestDb, now_ms, wait_done, wait_until};
use blast::bot::SubscriberBot;
use blast::domain::{AudienceFilter, ChannelKind};
use blast::ids::{ClientId, TenantId};
use blast::settings::{BotMode, Secret, Settings};
use blast::store::{Client, NewMailing, Store};
use blast_testkit::{TelegramStub, TelegramStubOptions};
use serde_json::json;
use sqlx::Row;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BOT_TOKEN: &str = "5151:subscriber-bot-secret";

fn bot_settings(db: &TestDb, stub: &TelegramStub) -> Settings {
    let mut s = db.settings("http://127.0.0.1:9");
    s.telegram.bot_token = Secret::new(BOT_TOKEN);
    s.telegram.api_url = stub.url();
    s.telegram.timeout_ms = 5_000;
    s.bot.tenant = "tester".into();
    s.bot.tags = vec!["promo".into(), "vip".into()];
    s.bot.poll_timeout_secs = 1;
    s
}

async fn blocked(db: &TestDb, chat: i64) -> bool {
    sqlx::query("SELECT telegram_blocked_at FROM clients WHERE telegram_chat_id = $1")
        .bind(chat)
        .fetch_one(&db.sql)
        .await
        .expect("client")
        .get::<Option<i64>, _>(0)
        .is_some()
}

/// The texts the bot sent to `chat`.
fn answers(stub: &TelegramStub, chat: i64) -> Vec<String> {
    stub.requests()
        .iter()
        .filter(|r| r.method == "sendmessage" && r.status == 200)
        .filter(|r| r.fields.get("chat_id").and_then(|v| v.as_i64()) == Some(chat))
        .filter_map(|r| {
            r.fields
                .get("text")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// The client of this chat, if the bot made one.
async fn subscriber(db: &TestDb, chat: i64) -> Option<Client> {
    db.store
        .client_by_telegram_chat(db.tenant, chat)
        .await
        .expect("lookup")
}

async fn subscribed(db: &TestDb, chat: i64) -> bool {
    subscriber(db, chat).await.is_some()
}

/// A mailing to the clients tagged `tag`, starting now.
fn mailing_to(tag: &str, channel: ChannelKind, text: &str) -> NewMailing {
    NewMailing {
        filter: AudienceFilter {
            tags: vec![tag.into()],
            operator_codes: vec![],
        },
        ..NewMailing::new(channel, text, now_ms(), now_ms() + 60_000)
    }
}

/// Start (not run) a mailing to `tag` on `channel`; returns how many recipients it has.
async fn recipients(db: &TestDb, tag: &str, channel: ChannelKind) -> i64 {
    let m = db.create_mailing(mailing_to(tag, channel, "news")).await;
    let started = db.store.start_due_mailings(now_ms()).await.expect("start");
    let started = started
        .iter()
        .find(|s| s.mailing_id == m.id)
        .expect("started");
    db.store
        .cancel_mailing(db.tenant, m.id)
        .await
        .expect("cancel");
    started.recipients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_subscribes_a_chat_with_its_tag_and_stop_opts_it_out() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let settings = bot_settings(&db, &stub);
    let bot = SubscriberBot::from_settings(db.store.clone(), &settings)
        .await
        .expect("bot")
        .expect("configured");
    let stop = CancellationToken::new();
    let polling = tokio::spawn(bot.poll(stop.clone()));

    stub.push_user_message(BOT_TOKEN, 7001, "Ann", "/start promo");
    stub.push_user_message(BOT_TOKEN, 7002, "Bob", "/start staff");
    stub.push_user_message(BOT_TOKEN, 7003, "Cid", "hello");
    wait_until(Duration::from_secs(10), "both /start handled", || async {
        subscribed(&db, 7001).await && subscribed(&db, 7002).await
    })
    .await;
    let ann = subscriber(&db, 7001).await.expect("ann");
    assert_eq!(ann.name, "Ann");
    assert_eq!(ann.phone, None, "a subscriber gives no phone");
    assert_eq!(ann.tags, vec!["promo".to_string()]);
    let bob = subscriber(&db, 7002).await.expect("bob");
    assert!(
        bob.tags.is_empty(),
        "a deep link cannot give a tag outside bot.tags"
    );
    assert!(!subscribed(&db, 7003).await, "only commands are answered");
    assert_eq!(
        answers(&stub, 7001),
        vec![settings.bot.welcome_text.clone()]
    );

    // Subscribers get Telegram mailings; SMS mailings leave the phoneless out.
    assert_eq!(recipients(&db, "promo", ChannelKind::Telegram).await, 1);
    assert_eq!(recipients(&db, "promo", ChannelKind::Sms).await, 0);

    stub.push_user_message(BOT_TOKEN, 7001, "Ann", "/stop");
    wait_until(Duration::from_secs(10), "/stop handled", || {
        blocked(&db, 7001)
    })
    .await;
    assert_eq!(recipients(&db, "promo", ChannelKind::Telegram).await, 0);
    wait_until(Duration::from_secs(10), "the goodbye", || async {
        answers(&stub, 7001).len() == 2
    })
    .await;
    assert_eq!(answers(&stub, 7001)[1], settings.bot.goodbye_text);

    // /start again: the same client, reachable again, its tag kept.
    stub.push_user_message(BOT_TOKEN, 7001, "Ann", "/start@blast_test_bot");
    wait_until(Duration::from_secs(10), "/start again", || async {
        !blocked(&db, 7001).await
    })
    .await;
    let again = subscriber(&db, 7001).await.expect("ann");
    assert_eq!(again.id, ann.id);
    assert_eq!(again.tags, vec!["promo".to_string()]);
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM clients")
        .fetch_one(&db.sql)
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2);

    // A Telegram mailing reaches the subscriber through the worker.
    let worker = RunningWorker::start(&db.store, settings.clone());
    let m = db
        .create_mailing(mailing_to(
            "promo",
            ChannelKind::Telegram,
            "Hello {{ name }}",
        ))
        .await;
    wait_done(&db, m.id, Duration::from_secs(30)).await;
    worker.stop().await;
    assert!(answers(&stub, 7001).contains(&"Hello Ann".to_string()));

    let before_stop = stub.elapsed();
    stop.cancel();
    polling.await.expect("join").expect("bot");
    assert_eq!(
        db.store
            .lease_holder("telegram-polling:5151")
            .await
            .expect("lease"),
        None,
        "a bot that stops gives its polling lease up"
    );
    assert!(
        stub.requests()
            .iter()
            .all(|r| r.method != "getupdates" || r.at > before_stop || r.status == 200),
        "no poll was refused"
    );
}

/// POST `body` to the bot's webhook with `secret` (if any); returns the status.
async fn post_update(url: &str, secret: Option<&str>, body: reqwest::Body) -> reqwest::StatusCode {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request.send().await.expect("post").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_registered_with_its_secret_and_updates_without_it_are_refused() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let mut settings = bot_settings(&db, &stub);
    settings.bot.mode = BotMode::Webhook;
    settings.bot.webhook_url = "https://blast.example.com/telegram".into();
    settings.bot.webhook_secret = Secret::new("hook-secret_42");
    let bot = SubscriberBot::from_settings(db.store.clone(), &settings)
        .await
        .expect("bot")
        .expect("configured");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/telegram", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let serving = tokio::spawn(bot.serve_webhook(listener, stop.clone()));

    wait_until(Duration::from_secs(10), "setWebhook", || async {
        stub.requests().iter().any(|r| r.method == "setwebhook")
    })
    .await;
    let registered = stub
        .requests()
        .into_iter()
        .find(|r| r.method == "setwebhook")
        .expect("setWebhook");
    assert_eq!(
        registered.fields.get("url").and_then(|v| v.as_str()),
        Some("https://blast.example.com/telegram")
    );
    assert_eq!(
        registered
            .fields
            .get("secret_token")
            .and_then(|v| v.as_str()),
        Some("hook-secret_42")
    );

    let update = json!({
        "update_id": 10,
        "message": {
            "message_id": 1, "date": 1_700_000_000,
            "chat": {"id": 8001, "type": "private", "first_name": "Dee"},
            "from": {"id": 8001, "is_bot": false, "first_name": "Dee", "last_name": "Ray"},
            "text": "/start vip"
        }
    });
    for secret in [None, Some("wrong")] {
        let status = post_update(&url, secret, update.to_string().into()).await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    }
    assert!(!subscribed(&db, 8001).await);

    let status = post_update(&url, Some("hook-secret_42"), update.to_string().into()).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let dee = subscriber(&db, 8001)
        .await
        .expect("subscribed by the webhook");
    assert_eq!(dee.name, "Dee Ray");
    assert_eq!(dee.tags, vec!["vip".to_string()]);

    // The user blocks the bot: Telegram says so with a my_chat_member update.
    let blocked_update = json!({
        "update_id": 11,
        "my_chat_member": {
            "chat": {"id": 8001, "type": "private", "first_name": "Dee"},
            "from": {"id": 8001, "is_bot": false, "first_name": "Dee"},
            "date": 1_700_000_100,
            "old_chat_member": {"user": {"id": 5151, "is_bot": true, "first_name": "bot"}, "status": "member"},
            "new_chat_member": {"user": {"id": 5151, "is_bot": true, "first_name": "bot"}, "status": "kicked", "until_date": 0}
        }
    });
    let status = post_update(
        &url,
        Some("hook-secret_42"),
        blocked_update.to_string().into(),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(blocked(&db, 8001).await);

    // Something that is no update is acknowledged (Telegram would only resend it).
    let status = post_update(&url, Some("hook-secret_42"), "not json".into()).await;
    assert_eq!(status, reqwest::StatusCode::OK);

    stop.cancel();
    serving.await.expect("join").expect("webhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_running_the_bot_poll_one_at_a_time() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let mut settings = bot_settings(&db, &stub);
    settings.bot.in_worker = true;
    let first = RunningWorker::start_shared(&db.store, settings.clone());
    let second = RunningWorker::start_shared(&db.store, settings);
    for chat in 9001..=9005 {
        stub.push_user_message(BOT_TOKEN, chat, "Eve", "/start");
    }
    wait_until(Duration::from_secs(15), "five /start", || async {
        let mut all = true;
        for chat in 9001..=9005 {
            all &= subscribed(&db, chat).await;
        }
        all
    })
    .await;
    // Both had time to ask for the lease a few times over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A stopping worker abandons its poll mid-flight, and the stub may still count it when
    // the other worker's poll comes: only polls while both ran tell whether they took turns.
    let both_running = stub.elapsed();
    first.stop().await;
    second.stop().await;

    let polls: Vec<_> = stub
        .requests()
        .into_iter()
        .filter(|r| r.method == "getupdates" && r.at < both_running)
        .collect();
    assert!(polls.len() >= 2);
    assert!(
        polls.iter().all(|r| r.status == 200),
        "two processes polled at once: {:?}",
        polls.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for chat in 9001..=9005 {
        assert_eq!(answers(&stub, chat).len(), 1, "chat {chat} answered once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_polling_process_stops_another_takes_over() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let settings = bot_settings(&db, &stub);
    let mut running = Vec::new();
    for _ in 0..2 {
        let bot = SubscriberBot::from_settings(db.store.clone(), &settings)
            .await
            .expect("bot")
            .expect("configured");
        let holder = bot.holder().to_owned();
        let stop = CancellationToken::new();
        let task = tokio::spawn(bot.poll(stop.clone()));
        running.push((holder, stop, task));
    }
    stub.push_user_message(BOT_TOKEN, 9101, "Gus", "/start");
    wait_until(Duration::from_secs(10), "the first /start", || {
        subscribed(&db, 9101)
    })
    .await;
    let lease = "telegram-polling:5151";
    let holder = db
        .store
        .lease_holder(lease)
        .await
        .expect("lease")
        .expect("someone polls");
    let at = running
        .iter()
        .position(|(h, _, _)| *h == holder)
        .expect("the holder is one of ours");
    let (_, stop, task) = running.remove(at);
    stop.cancel();
    task.await.expect("join").expect("bot");

    stub.push_user_message(BOT_TOKEN, 9102, "Hal", "/start");
    wait_until(Duration::from_secs(15), "the handover", || {
        subscribed(&db, 9102)
    })
    .await;
    let (other, stop, task) = running.remove(0);
    assert_eq!(
        db.store.lease_holder(lease).await.expect("lease"),
        Some(other),
        "the other process polls now"
    );
    stop.cancel();
    task.await.expect("join").expect("bot");
    assert_eq!(
        answers(&stub, 9101).len(),
        1,
        "handled once, not again by the next holder"
    );
    assert_eq!(answers(&stub, 9102).len(), 1);
}

#[tokio::test]
async fn the_sqlite_rebuild_that_made_phones_optional_keeps_every_client_and_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    // The database as the release before the subscriber bot left it.
    {
        let all = sqlx::migrate!("./migrations/sqlite");
        let mut before = sqlx::migrate::Migrator {
            migrations: all
                .migrations
                .iter()
                .filter(|m| m.version < 7)
                .cloned()
                .collect(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        before.dangerous_set_table_name("_blast_migrations");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
        before.run(&pool).await.expect("old migrations");
        for sql in [
            "INSERT INTO users (id, name, password_hash, created_at) VALUES (1, 'old', 'x', 0)",
            "INSERT INTO clients (id, tenant_id, phone, operator_code, name, telegram_chat_id, created_at, updated_at, email_opted_out_at)
             VALUES (5, 1, '79001234567', '900', 'Old', 42, 1, 2, 3)",
            "INSERT INTO tags (id, tenant_id, name) VALUES (1, 1, 'vip')",
            "INSERT INTO client_tags (client_id, tag_id) VALUES (5, 1)",
            "INSERT INTO mailings (id, tenant_id, channel, text, filter, priority, start_at, end_at, state, created_at)
             VALUES (1, 1, 'sms', 'x', '{}', 'low', 0, 1, 'done', 0)",
            "INSERT INTO messages (mailing_id, client_id, state, next_attempt_at, updated_at) VALUES (1, 5, 'sent', 0, 0)",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        pool.close().await;
    }
    let store = Store::open(&format!("sqlite://{}", dir.path().join("old.db").display()))
        .await
        .expect("migrate to now");
    // The rows as sqlite3 sees them.
    let sql = sqlx::SqlitePool::connect(&url).await.expect("connect");
    let messages: i64 = sqlx::query("SELECT COUNT(*) FROM messages WHERE client_id = 5")
        .fetch_one(&sql)
        .await
        .expect("count")
        .get(0);
    assert_eq!(messages, 1, "the client's message row survived the rebuild");
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&sql)
        .await
        .expect("foreign_key_check");
    assert!(dangling.is_empty(), "every reference still resolves");
    let old = store
        .client(TenantId(1), ClientId(5))
        .await
        .expect("client kept");
    assert_eq!(old.phone.as_deref(), Some("79001234567"));
    assert_eq!(old.tags, vec!["vip".to_string()]);
    assert_eq!(old.telegram_chat_id, Some(42));
    let opted_out: Option<i64> = sqlx::query("SELECT email_opted_out_at FROM clients WHERE id = 5")
        .fetch_one(&sql)
        .await
        .expect("row")
        .get(0);
    assert_eq!(opted_out, Some(3));
    // Phoneless clients now fit, and deleting a client still cascades on SQLite.
    store
        .subscribe_telegram(TenantId(1), 43, "New", None)
        .await
        .expect("a client without a phone");
    store
        .delete_client(TenantId(1), ClientId(5))
        .await
        .expect("delete");
    for table in ["client_tags", "messages"] {
        let left: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&sql)
            .await
            .expect("count")
            .get(0);
        assert_eq!(left, 0, "{table} rows of the deleted client");
    }
}
