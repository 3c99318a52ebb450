//! Telegram mailings against a Bot API stub of our own on 127.0.0.1 (testkit::TelegramStub),
//! which enforces Telegram's limits with real 429s and answers as the Bot API documents:
//! every message kind's request shape, a local file uploaded once and then sent by file_id,
//! blocked / deactivated / chat not found / migrated chats, a 429 honoured in place, and three
//! worker processes sharing one bot's limit without a single 429. A tenant's bot token is
//! checked with the stub's getMe before it is registered.

use crate::common::{ApiServer, RunningWorker, TestDb, now_ms, wait_done};
use blast::domain::{AudienceFilter, ChannelKind, Priority};
use blast::ids::MailingId;
use blast::settings::{Secret, Settings};
use blast::store::{MediaUpload, NewClient, NewMailing, StoreError};
use blast::telegram::{
    AlbumItem, MediaSource, ParseMode, TelegramContent, TelegramKind, UrlButton,
};
use blast_testkit::{BotRequest, ChatFault, TelegramStub, TelegramStubOptions};
use serde_json::json;
use sqlx::Row;
use std::time::{Duration, Instant};

const HOUR: i64 = 3_600_000;
const BOT_TOKEN: &str = "4242:test-secret-token";

fn telegram_settings(db: &TestDb, stub: &TelegramStub) -> Settings {
    let mut s = db.settings("http://127.0.0.1:9");
    s.telegram.bot_token = Secret::new(BOT_TOKEN);
    s.telegram.api_url = stub.url();
    s.telegram.timeout_ms = 5_000;
    s
}

/// Clients tagged `tag` with these chat ids (and a phone of their own per chat id).
async fn add_chats(db: &TestDb, tag: &str, chats: &[i64]) {
    let clients: Vec<NewClient> = chats
        .iter()
        .enumerate()
        .map(|(i, chat)| NewClient {
            phone: Some(
                format!("79{:09}", chat.unsigned_abs() * 2 + u64::from(*chat < 0))
                    .parse()
                    .expect("phone"),
            ),
            name: format!("n{i}"),
            telegram_chat_id: Some(*chat),
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

/// A Telegram mailing to clients tagged `tag`, starting now.
fn new_telegram_mailing(
    tag: &str,
    text: &str,
    content: TelegramContent,
    uploads: Vec<MediaUpload>,
) -> NewMailing {
    let start = now_ms();
    NewMailing {
        telegram: Some(content),
        uploads,
        filter: AudienceFilter {
            tags: vec![tag.into()],
            operator_codes: vec![],
        },
        priority: Priority::High,
        ..NewMailing::new(ChannelKind::Telegram, text, start, start + HOUR)
    }
}

async fn telegram_mailing(
    db: &TestDb,
    tag: &str,
    text: &str,
    content: TelegramContent,
    upload: Option<MediaUpload>,
) -> MailingId {
    db.create_mailing(new_telegram_mailing(
        tag,
        text,
        content,
        upload.into_iter().collect(),
    ))
    .await
    .id
}

fn media(kind: TelegramKind, source: Option<MediaSource>) -> TelegramContent {
    TelegramContent {
        kind,
        media: source,
        ..TelegramContent::text_message()
    }
}

/// A paid broadcast to `chats` under a ceiling of `paid_per_second`, run to its end.
async fn run_paid_broadcast(db: &TestDb, stub: &TelegramStub, chats: &[i64], paid_per_second: u32) {
    add_chats(db, "tg", chats).await;
    let mut settings = telegram_settings(db, stub);
    settings.telegram.paid_per_second = paid_per_second;
    let mut content = TelegramContent::text_message();
    content.allow_paid_broadcast = true;
    let mailing = telegram_mailing(db, "tg", "Flash sale", content, None).await;
    let worker = RunningWorker::start(&db.store, settings);
    wait_done(db, mailing, Duration::from_secs(30)).await;
    worker.stop().await;
}

/// (chat id, state, attempts, last error) of every message of `mailing`.
async fn states(db: &TestDb, mailing: MailingId) -> Vec<(i64, String, i64, Option<String>)> {
    sqlx::query(
        "SELECT c.telegram_chat_id, s.state, s.attempts, s.last_error FROM messages s
         JOIN clients c ON c.id = s.client_id WHERE s.mailing_id = $1 ORDER BY s.id",
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
async fn every_message_kind_reaches_the_bot_api_in_its_documented_shape() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    add_chats(&db, "tg", &[1001]).await;
    let worker = RunningWorker::start(&db.store, telegram_settings(&db, &stub));

    let mut text = TelegramContent::text_message();
    text.parse_mode = Some(ParseMode::Html);
    text.link_preview = false;
    text.buttons = vec![vec![UrlButton {
        text: "Open".into(),
        url: "https://shop.test/a".into(),
    }]];
    let url = "https://cdn.test/a.jpg".to_string();
    let cases: Vec<(TelegramContent, &str, Option<MediaUpload>)> = vec![
        (text, "<b>Hi {{ name }}</b> https://x.test", None),
        (
            media(TelegramKind::Photo, Some(MediaSource::Url(url.clone()))),
            "Photo for {{ name }}",
            None,
        ),
        (
            media(TelegramKind::Video, None),
            "A video",
            Some(upload("v.mp4")),
        ),
        (media(TelegramKind::Voice, None), "", Some(upload("v.ogg"))),
        (
            media(TelegramKind::VideoNote, None),
            "",
            Some(upload("n.mp4")),
        ),
        (
            media(TelegramKind::Animation, None),
            "Gif",
            Some(upload("a.gif")),
        ),
        (
            media(TelegramKind::Document, None),
            "Doc",
            Some(upload("d.pdf")),
        ),
    ];
    for (content, caption, file) in cases {
        let mailing = telegram_mailing(&db, "tg", caption, content, file).await;
        wait_done(&db, mailing, Duration::from_secs(20)).await;
        assert_eq!(states(&db, mailing).await[0].1, "sent");
    }
    worker.stop().await;

    let sent = stub.delivered();
    let methods: Vec<&str> = sent.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "sendmessage",
            "sendphoto",
            "sendvideo",
            "sendvoice",
            "sendvideonote",
            "sendanimation",
            "senddocument"
        ]
    );
    assert!(sent.iter().all(|r| r.chat_id() == Some(1001)));
    assert_eq!(stub.too_many_requests(), 0);

    let text = &sent[0];
    assert_eq!(text.content_type, "application/json");
    assert_eq!(text.str_field("text"), Some("<b>Hi n0</b> https://x.test"));
    assert_eq!(text.str_field("parse_mode"), Some("HTML"));
    assert_eq!(
        text.fields["link_preview_options"]["is_disabled"],
        json!(true)
    );
    assert_eq!(
        text.fields["reply_markup"]["inline_keyboard"][0][0],
        json!({"text": "Open", "url": "https://shop.test/a"})
    );

    let photo = &sent[1];
    assert!(photo.content_type.starts_with("multipart/form-data"));
    assert_eq!(photo.str_field("photo"), Some(url.as_str()));
    assert_eq!(photo.str_field("caption"), Some("Photo for n0"));
    assert!(photo.files.is_empty(), "a URL is passed on, not uploaded");

    for (request, field, name) in [
        (&sent[2], "video", "v.mp4"),
        (&sent[3], "voice", "v.ogg"),
        (&sent[4], "video_note", "n.mp4"),
        (&sent[5], "animation", "a.gif"),
        (&sent[6], "document", "d.pdf"),
    ] {
        let attach = request.str_field(field).expect("media field");
        let part = attach.strip_prefix("attach://").expect("an uploaded part");
        let (_, file_name, bytes) = request
            .files
            .iter()
            .find(|(name, _, _)| name == part)
            .expect("the file part");
        assert_eq!(file_name, name);
        assert_eq!(bytes, &file_bytes(name));
    }
    assert_eq!(sent[2].str_field("caption"), Some("A video"));
    assert_eq!(
        sent[3].str_field("caption"),
        None,
        "an empty caption is left out"
    );
    assert_eq!(sent[4].str_field("caption"), None);
}

fn file_bytes(name: &str) -> Vec<u8> {
    format!("bytes of {name}").repeat(50).into_bytes()
}

fn upload(name: &str) -> MediaUpload {
    MediaUpload {
        file_name: name.into(),
        content: file_bytes(name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_is_uploaded_once_then_sent_by_its_file_id() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let chats: Vec<i64> = (1..=12).map(|i| 2000 + i).collect();
    add_chats(&db, "tg", &chats).await;
    let mailing = telegram_mailing(
        &db,
        "tg",
        "Hello {{ name }}",
        media(TelegramKind::Photo, None),
        Some(upload("a.jpg")),
    )
    .await;
    let worker = RunningWorker::start(&db.store, telegram_settings(&db, &stub));
    wait_done(&db, mailing, Duration::from_secs(30)).await;
    worker.stop().await;

    let sent = stub.delivered();
    assert_eq!(sent.len(), chats.len());
    let uploads: Vec<_> = sent.iter().filter(|r| !r.files.is_empty()).collect();
    assert_eq!(uploads.len(), 1, "exactly one upload");
    let stored: String = sqlx::query("SELECT file_id FROM telegram_file_ids WHERE bot_id = '4242'")
        .fetch_one(&db.sql)
        .await
        .expect("the stored file_id")
        .get(0);
    assert!(stored.starts_with("stub-file-photo"), "{stored}");
    for request in sent.iter().filter(|r| r.files.is_empty()) {
        assert_eq!(request.str_field("photo"), Some(stored.as_str()));
    }
    let mut reached: Vec<i64> = sent.iter().filter_map(|r| r.chat_id()).collect();
    reached.sort();
    assert_eq!(reached, chats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_api_errors_block_fail_move_and_wait_as_documented() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let (blocked, gone, missing, group, limited, fine) = (3001, 3002, 3003, -3004, 3005, 3006);
    add_chats(&db, "tg", &[blocked, gone, missing, group, limited, fine]).await;
    stub.set_fault(blocked, ChatFault::Blocked);
    stub.set_fault(gone, ChatFault::Deactivated);
    stub.set_fault(missing, ChatFault::ChatNotFound);
    stub.set_fault(group, ChatFault::MigrateTo(-1_003_004));
    stub.set_fault(
        limited,
        ChatFault::RetryAfter {
            seconds: 1,
            times: 1,
        },
    );
    let mailing = telegram_mailing(&db, "tg", "News", TelegramContent::text_message(), None).await;
    let started = Instant::now();
    let worker = RunningWorker::start(&db.store, telegram_settings(&db, &stub));
    wait_done(&db, mailing, Duration::from_secs(30)).await;
    let took = started.elapsed();

    let rows = states(&db, mailing).await;
    let by_chat = |chat: i64| {
        rows.iter()
            .find(|r| r.0 == chat)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {chat}: {rows:?}"))
    };
    for chat in [blocked, gone] {
        let row = by_chat(chat);
        assert_eq!(row.1, "failed_permanent", "{row:?}");
        assert!(
            row.3.as_deref().unwrap_or_default().contains("Forbidden"),
            "{row:?}"
        );
    }
    let row = by_chat(missing);
    assert_eq!(row.1, "failed_permanent", "{row:?}");
    assert!(
        row.3
            .as_deref()
            .unwrap_or_default()
            .contains("chat not found")
    );
    // The client follows its group to the supergroup and the message goes there.
    let row = by_chat(-1_003_004);
    assert_eq!(row.1, "sent", "{row:?}");
    assert!(
        stub.delivered()
            .iter()
            .any(|r| r.chat_id() == Some(-1_003_004)),
        "resent to the new chat id"
    );
    // A 429 is waited out in place: delivered after retry_after, and the 429 spent no
    // attempt (the one counted is the send that went through, as for any sent message).
    let row = by_chat(limited);
    assert_eq!((row.1.as_str(), row.2), ("sent", 1), "{row:?}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(by_chat(fine).1, "sent");
    assert_eq!(stub.too_many_requests(), 1, "only the forced 429");

    // Blocked and deactivated clients are marked, and the next mailing leaves them out.
    let marked: Vec<i64> = sqlx::query(
        "SELECT telegram_chat_id FROM clients WHERE telegram_blocked_at IS NOT NULL ORDER BY telegram_chat_id",
    )
    .fetch_all(&db.sql)
    .await
    .expect("marked")
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(marked, vec![blocked, gone]);
    let next = telegram_mailing(&db, "tg", "Again", TelegramContent::text_message(), None).await;
    wait_done(&db, next, Duration::from_secs(30)).await;
    worker.stop().await;
    let mut chats: Vec<i64> = states(&db, next).await.iter().map(|r| r.0).collect();
    chats.sort();
    assert_eq!(chats, vec![-1_003_004, missing, limited, fine]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_without_an_answer_becomes_unknown_and_is_not_resent() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    add_chats(&db, "tg", &[4001]).await;
    stub.set_fault(4001, ChatFault::Hang(Duration::from_secs(3)));
    let mut settings = telegram_settings(&db, &stub);
    settings.telegram.timeout_ms = 300;
    let mailing = telegram_mailing(&db, "tg", "Hi", TelegramContent::text_message(), None).await;
    let worker = RunningWorker::start(&db.store, settings);
    wait_done(&db, mailing, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    let rows = states(&db, mailing).await;
    assert_eq!(rows[0].1, "unknown", "{rows:?}");
    assert_eq!(
        stub.requests()
            .iter()
            .filter(|r| r.chat_id() == Some(4001))
            .count(),
        1,
        "sent once, never again"
    );
}

/// Three worker processes on PostgreSQL + Redis share the bot's limit: 150 messages at
/// 30/s take about 5 s and the stub, which answers any burst past 30/s with 429, sees none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_bot_limit_without_a_429() {
    let db = TestDb::with_profile(true).await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let chats: Vec<i64> = (1..=150).map(|i| 5000 + i).collect();
    add_chats(&db, "tg", &chats).await;
    let mailing = telegram_mailing(&db, "tg", "Hi", TelegramContent::text_message(), None).await;
    let started = Instant::now();
    let workers: Vec<RunningWorker> = (0..3)
        .map(|_| RunningWorker::start_shared(&db.store, telegram_settings(&db, &stub)))
        .collect();
    wait_done(&db, mailing, Duration::from_secs(60)).await;
    let took = started.elapsed();
    for worker in workers {
        worker.stop().await;
    }
    assert_eq!(stub.too_many_requests(), 0);
    let sent = stub.delivered();
    assert_eq!(sent.len(), chats.len());
    // 150 at 30/s: at least 149 intervals of 1/30 s, whatever the number of workers.
    let span = sent.last().expect("last").at - sent.first().expect("first").at;
    assert!(span >= Duration::from_millis(4_800), "{span:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stub_answers_a_burst_past_the_bot_limit_with_429() {
    // The stub is what the other tests trust to catch a limit broken: check that it does.
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let client = reqwest::Client::new();
    let url = format!("{}/bot{BOT_TOKEN}/sendMessage", stub.url());
    let mut answers = Vec::new();
    for chat in 0..60 {
        let response = client
            .post(&url)
            .json(&json!({"chat_id": 100 + chat, "text": "x"}))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("json");
        answers.push((status, body));
    }
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(limited.len() >= 20, "{} of 60 limited", limited.len());
    assert!(limited[0].1["parameters"]["retry_after"].as_u64() >= Some(1));
    assert_eq!(limited[0].1["ok"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_given_to_the_api_inline_reaches_telegram_byte_for_byte() {
    use base64::Engine;
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    add_chats(&db, "tg", &[6001, 6002]).await;
    let settings = telegram_settings(&db, &stub);
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "test").await.expect("token");
    let api = crate::common::ApiServer::start(&db.store, settings.clone()).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let response = api
        .http
        .post(api.url("/api/v1/mailings"))
        .bearer_auth(&token)
        .json(&json!({
            "channel": "telegram",
            "text": "Your invoice, {{ name }}",
            "tags": ["tg"],
            "telegram": {
                "kind": "document",
                "media": {"file": {
                    "name": "invoice.pdf",
                    "base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                }},
                "buttons": [[{"text": "Pay", "url": "https://pay.test/1"}]],
            },
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status().as_u16(), 201);
    let created: serde_json::Value = response.json().await.expect("json");
    let mailing = MailingId(created["id"].as_i64().expect("id"));
    assert_eq!(created["telegram"]["kind"], "document");
    let worker = RunningWorker::start(&db.store, settings);
    wait_done(&db, mailing, Duration::from_secs(30)).await;
    worker.stop().await;

    let sent = stub.delivered();
    assert_eq!(sent.len(), 2);
    let upload = sent
        .iter()
        .find(|r| !r.files.is_empty())
        .expect("the upload");
    assert_eq!(upload.files[0].1, "invoice.pdf");
    assert_eq!(upload.files[0].2, bytes);
    assert_eq!(
        upload.fields["reply_markup"]["inline_keyboard"][0][0]["url"],
        json!("https://pay.test/1")
    );
    let mut captions: Vec<&str> = sent.iter().filter_map(|r| r.str_field("caption")).collect();
    captions.sort();
    assert_eq!(captions, ["Your invoice, n0", "Your invoice, n1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_broadcast_goes_past_the_free_rate_up_to_its_ceiling() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions {
        paid_per_second: 200,
        ..TelegramStubOptions::default()
    })
    .await
    .expect("stub");
    let chats: Vec<i64> = (1..=90).map(|i| 7000 + i).collect();
    run_paid_broadcast(&db, &stub, &chats, 150).await;
    let sent = stub.delivered();
    assert_eq!(sent.len(), 90);
    assert!(
        sent.iter()
            .all(|r| r.fields.get("allow_paid_broadcast") == Some(&json!(true)))
    );
    assert_eq!(stub.too_many_requests(), 0, "within the stub's paid limit");
    // 90 at the free 30/s would take 3 s; at the 150/s ceiling about 0.6 s.
    let span = sent.last().expect("last").at - sent.first().expect("first").at;
    assert!(span < Duration::from_millis(2_000), "{span:?}");
    assert!(
        span >= Duration::from_millis(500),
        "the ceiling holds: {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_a_paid_broadcast_too() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let chats: Vec<i64> = (1..=60).map(|i| 8000 + i).collect();
    stub.set_fault(
        chats[0],
        ChatFault::RetryAfter {
            seconds: 1,
            times: 1,
        },
    );
    run_paid_broadcast(&db, &stub, &chats, 50).await;
    assert_eq!(stub.delivered().len(), 60);
    let requests = stub.requests();
    let limited = requests.iter().find(|r| r.status == 429).expect("the 429");
    // The sends already past the limiter may land just after it; then the bot is paused.
    let during_pause = requests
        .iter()
        .filter(|r| r.delivered())
        .filter(|r| {
            r.at > limited.at + Duration::from_millis(100)
                && r.at < limited.at + Duration::from_millis(900)
        })
        .count();
    assert_eq!(during_pause, 0, "the paid ceiling was paused as well");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_scheduled_mailing_into_a_photo_keeps_its_file() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    add_chats(&db, "tg", &[9001]).await;
    let start = now_ms() + HOUR;
    let draft = NewMailing {
        filter: AudienceFilter {
            tags: vec!["tg".into()],
            operator_codes: vec![],
        },
        priority: Priority::High,
        ..NewMailing::new(ChannelKind::Telegram, "Draft", start, start + HOUR)
    };
    let id = db.create_mailing(draft.clone()).await.id;
    let edited = blast::app::mailings::update(
        &db.store,
        db.tenant,
        id,
        NewMailing {
            text: "Now with a photo".into(),
            telegram: Some(media(TelegramKind::Photo, None)),
            uploads: vec![upload("p.jpg")],
            start_at: now_ms(),
            ..draft
        },
        blast::template::TextLimits::with_default_budget(4096),
    )
    .await
    .expect("edit");
    let content = edited.telegram.expect("telegram content");
    assert_eq!(content.kind, TelegramKind::Photo);
    assert!(
        matches!(content.media, Some(MediaSource::Upload(_))),
        "{content:?}"
    );

    let worker = RunningWorker::start(&db.store, telegram_settings(&db, &stub));
    wait_done(&db, id, Duration::from_secs(20)).await;
    worker.stop().await;
    let sent = stub.delivered();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "sendphoto");
    assert_eq!(sent[0].files[0].2, file_bytes("p.jpg"));
}

fn album(items: Vec<(TelegramKind, MediaSource)>) -> TelegramContent {
    TelegramContent {
        kind: TelegramKind::MediaGroup,
        album: items
            .into_iter()
            .map(|(kind, media)| AlbumItem { kind, media })
            .collect(),
        ..TelegramContent::text_message()
    }
}

/// An album of two local photos and a video by URL: the first send uploads both files in one
/// `sendMediaGroup`, every other send names them by the file_ids Telegram gave, the caption
/// rides on the first item, and each item counts against the bot's limit: 8 albums of 3 at
/// 20 messages/s take over a second, where counting albums as one message would earn 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_album_uploads_its_files_once_and_counts_each_item_against_the_limit() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions {
        bot_per_second: 20,
        ..TelegramStubOptions::default()
    })
    .await
    .expect("stub");
    let chats: Vec<i64> = (1..=8).map(|i| 8000 + i).collect();
    add_chats(&db, "tg", &chats).await;
    let mut content = album(vec![
        (TelegramKind::Photo, MediaSource::pending_upload(0)),
        (
            TelegramKind::Video,
            MediaSource::Url("https://cdn.test/v.mp4".into()),
        ),
        (TelegramKind::Photo, MediaSource::pending_upload(1)),
    ]);
    content.parse_mode = Some(ParseMode::Html);
    let mailing = db
        .create_mailing(new_telegram_mailing(
            "tg",
            "<b>Hi {{ name }}</b>",
            content,
            vec![upload("a.jpg"), upload("b.jpg")],
        ))
        .await
        .id;
    let mut settings = telegram_settings(&db, &stub);
    settings.telegram.bot_per_second = 20;
    let worker = RunningWorker::start(&db.store, settings);
    wait_done(&db, mailing, Duration::from_secs(30)).await;
    worker.stop().await;

    assert_eq!(
        stub.too_many_requests(),
        0,
        "each item counts against the limit"
    );
    let sent = stub.delivered();
    assert_eq!(sent.len(), chats.len());
    assert!(sent.iter().all(|r| r.method == "sendmediagroup"));
    let span = sent.last().expect("last").at - sent.first().expect("first").at;
    // 24 messages at 20/s: the last album goes 21 intervals (1.05 s) after the first, less
    // the few intervals the lane may run ahead.
    assert!(span >= Duration::from_millis(850), "{span:?}");

    let uploads: Vec<_> = sent.iter().filter(|r| !r.files.is_empty()).collect();
    assert_eq!(uploads.len(), 1, "both files go up once, in one request");
    let first = uploads[0];
    assert_eq!(first.files.len(), 2);
    assert_eq!(first.files[0].2, file_bytes("a.jpg"));
    assert_eq!(first.files[1].2, file_bytes("b.jpg"));
    let items = first.fields["media"].as_array().expect("media array");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["type"], "photo");
    assert!(
        items[0]["media"]
            .as_str()
            .is_some_and(|m| m.starts_with("attach://"))
    );
    assert_eq!(items[1]["type"], "video");
    assert_eq!(items[1]["media"], "https://cdn.test/v.mp4");
    assert!(
        items[0]["caption"]
            .as_str()
            .is_some_and(|c| c.starts_with("<b>Hi n"))
    );
    assert_eq!(items[0]["parse_mode"], "HTML");
    assert!(items[1].get("caption").is_none() && items[2].get("caption").is_none());

    let stored: Vec<String> = sqlx::query(
        "SELECT file_id FROM telegram_file_ids WHERE bot_id = '4242' ORDER BY media_id",
    )
    .fetch_all(&db.sql)
    .await
    .expect("stored file_ids")
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    for request in sent.iter().filter(|r| r.files.is_empty()) {
        let items = request.fields["media"].as_array().expect("media array");
        assert_eq!(items[0]["media"], json!(stored[0]));
        assert_eq!(items[1]["media"], "https://cdn.test/v.mp4");
        assert_eq!(items[2]["media"], json!(stored[1]));
    }
    assert!(
        states(&db, mailing)
            .await
            .iter()
            .all(|(_, state, _, _)| state == "sent")
    );
}

/// A tenant's two registered bots each send their own mailing under their own token and their
/// own limits: a 429 with retry_after 3 for one bot holds only that bot, while the other's
/// mailing goes on and finishes first. A bot of another tenant cannot be named, and a bot in
/// use cannot be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_bots_send_under_their_own_tokens_and_a_429_holds_only_that_bot() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let (promo_token, news_token) = ("5001:promo-secret-token", "5002:news-secret-token");
    let promo = db
        .store
        .add_telegram_bot(db.tenant, "promo", &Secret::new(promo_token))
        .await
        .expect("register promo");
    assert_eq!(promo.bot_id, "5001");
    db.store
        .add_telegram_bot(db.tenant, "news", &Secret::new(news_token))
        .await
        .expect("register news");
    let again = db
        .store
        .add_telegram_bot(db.tenant, "news", &Secret::new(news_token))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let bad = db
        .store
        .add_telegram_bot(db.tenant, "broken", &Secret::new("not-a-token"))
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");

    let promo_chats: Vec<i64> = (1..=4).map(|i| 9100 + i).collect();
    let news_chats: Vec<i64> = (1..=4).map(|i| 9200 + i).collect();
    add_chats(&db, "promo", &promo_chats).await;
    add_chats(&db, "news", &news_chats).await;
    // The first send of promo meets a 429 asking for 3 s.
    stub.set_fault(
        promo_chats[0],
        ChatFault::RetryAfter {
            seconds: 3,
            times: 1,
        },
    );
    let through = |name: &str| TelegramContent {
        bot: Some(name.into()),
        ..TelegramContent::text_message()
    };
    let promo_mailing = telegram_mailing(&db, "promo", "Promo", through("promo"), None).await;
    let news_mailing = telegram_mailing(&db, "news", "News", through("news"), None).await;

    let other = db
        .store
        .add_user("other", "password-1")
        .await
        .expect("user");
    let refused = blast::app::mailings::create(
        &db.store,
        other.id,
        new_telegram_mailing("promo", "x", through("promo"), Vec::new()),
        blast::template::TextLimits::with_default_budget(4096),
    )
    .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(e)) if e.0.contains("no bot named")),
        "another tenant's bot: {refused:?}"
    );

    let removal = db.store.remove_telegram_bot(db.tenant, "promo").await;
    assert!(
        matches!(&removal, Err(StoreError::Conflict(_))),
        "promo is in use: {removal:?}"
    );

    let worker = RunningWorker::start(&db.store, telegram_settings(&db, &stub));
    wait_done(&db, news_mailing, Duration::from_secs(30)).await;
    wait_done(&db, promo_mailing, Duration::from_secs(30)).await;
    worker.stop().await;

    let sent = stub.delivered();
    let by =
        |token: &str| -> Vec<&BotRequest> { sent.iter().filter(|r| r.token == token).collect() };
    let (promo_sent, news_sent) = (by(promo_token), by(news_token));
    assert_eq!(promo_sent.len(), promo_chats.len());
    assert_eq!(news_sent.len(), news_chats.len());
    assert!(
        sent.iter().all(|r| r.token != BOT_TOKEN),
        "nothing through the default bot"
    );
    let limited_at = stub
        .requests()
        .iter()
        .find(|r| r.status == 429)
        .map(|r| r.at)
        .expect("the 429");
    // Promo sends already on their way (their tokens taken before the 429 came back) land
    // right beside it; every later one waits the whole retry_after.
    let in_flight = limited_at + Duration::from_millis(100);
    let promo_later: Vec<Duration> = promo_sent
        .iter()
        .map(|r| r.at)
        .filter(|at| *at > in_flight)
        .collect();
    assert!(!promo_later.is_empty(), "the limited send went again");
    assert!(
        promo_later
            .iter()
            .all(|at| *at >= limited_at + Duration::from_millis(2_900)),
        "promo waited out its retry_after: {promo_later:?} vs 429 at {limited_at:?}"
    );
    let news_last = news_sent.iter().map(|r| r.at).max().expect("news sent");
    assert!(
        news_last < limited_at + Duration::from_millis(2_500),
        "news was not held by promo's 429: {news_last:?} vs 429 at {limited_at:?}"
    );

    // Once nothing names it, a bot can go.
    db.store
        .remove_telegram_bot(db.tenant, "promo")
        .await
        .expect("remove promo");
    let names: Vec<String> = db
        .store
        .telegram_bots(db.tenant)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["news"]);

    // A bot gone between a mailing's creation and its sends (a removal racing the creation)
    // fails the messages with the reason; nothing goes out through another bot.
    let late = telegram_mailing(&db, "news", "Late", through("news"), None).await;
    sqlx::query("DELETE FROM telegram_bots WHERE name = 'news'")
        .execute(&db.sql)
        .await
        .expect("drop news behind the store's back");
    let before = stub.delivered().len();
    let worker = RunningWorker::start(&db.store, telegram_settings(&db, &stub));
    wait_done(&db, late, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(stub.delivered().len(), before, "nothing sent");
    let failed = states(&db, late).await;
    assert_eq!(failed.len(), news_chats.len());
    for (_, state, _, error) in failed {
        assert_eq!(state, "failed_permanent");
        assert!(
            error.is_some_and(|e| e.contains("not registered any more")),
            "the reason is kept"
        );
    }
}

/// A tenant registers a bot through the API: the token is checked with getMe at
/// `telegram.api_url` first. A token Telegram does not know, one of another bot than its id
/// names, or no answer from Telegram at all: refused with the reason, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_token_is_checked_with_get_me_before_it_is_registered() {
    let db = TestDb::new().await;
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let good = "5001:promo-secret-token";
    stub.add_bot(good);
    // A token edited to carry another bot's id: Telegram knows it as bot 5001's.
    let borrowed = "5009:promo-secret-token";
    stub.add_bot_as(borrowed, 5001);
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    let api = ApiServer::start(&db.store, telegram_settings(&db, &stub)).await;
    let register = |api: &ApiServer, name: &str, bot_token: &str| {
        let request = api
            .http
            .post(api.url("/api/v1/telegram-bots"))
            .bearer_auth(&token)
            .json(&json!({"name": name, "token": bot_token}));
        async move {
            let response = request.send().await.expect("post");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("json");
            (status, body)
        }
    };

    for (bot_token, status, code, why) in [
        (
            "5002:made-up-secret-token",
            422,
            "validation_failed",
            "Telegram refused the bot token (401 Unauthorized)",
        ),
        (
            borrowed,
            422,
            "validation_failed",
            "Telegram says this token belongs to bot 5001, not to bot 5009",
        ),
        (
            "not-a-token",
            422,
            "validation_failed",
            "that is not a bot token",
        ),
    ] {
        let (got, body) = register(&api, "promo", bot_token).await;
        assert_eq!(got, status, "{bot_token}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{bot_token}: {message}");
        assert!(
            !message.contains("secret-token"),
            "the token is not echoed: {message}"
        );
    }
    assert!(
        db.store
            .telegram_bots(db.tenant)
            .await
            .expect("list")
            .is_empty(),
        "nothing stored"
    );
    let asked: Vec<BotRequest> = stub
        .requests()
        .into_iter()
        .filter(|r| r.method == "getme")
        .collect();
    assert_eq!(asked.len(), 2, "getMe for each token that looks like one");
    assert!(asked.iter().all(|r| r.status == 401 || r.token == borrowed));

    // Telegram cannot be reached: a 502 that says so, nothing stored.
    let mut down = telegram_settings(&db, &stub);
    down.telegram.api_url = "http://127.0.0.1:9".into();
    let unreachable = ApiServer::start(&db.store, down).await;
    let (status, body) = register(&unreachable, "promo", good).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "bad_gateway", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot check the bot token")
            && message.contains("http://127.0.0.1:9/")
            && message.contains("cannot be reached")
            && message.contains("onnection refused"),
        "the cause is named: {message}"
    );
    assert!(
        !message.contains("secret-token"),
        "the token is not echoed: {message}"
    );
    assert!(
        db.store
            .telegram_bots(db.tenant)
            .await
            .expect("list")
            .is_empty()
    );

    // A token Telegram knows under its own id: registered.
    let (status, body) = register(&api, "promo", good).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["bot_id"], "5001");
    let names: Vec<String> = db
        .store
        .telegram_bots(db.tenant)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["promo"]);
    // A bad name is refused before Telegram is asked.
    let before = stub.requests().len();
    let (status, _) = register(&api, "Not A Name", good).await;
    assert_eq!(status, 422);
    assert_eq!(stub.requests().len(), before);
}
