//! The in-app inbox, through a real WebSocket client (tokio-tungstenite) on 127.0.0.1: items
//! of `inapp` mailings and notifications reach only their own client's sockets, on any API
//! process (on the production profile a second process learns of them over Redis), an app
//! that was away catches up from its last id, acknowledgements and reads move the state and
//! reach the webhooks, and a forged, moved or expired token opens nothing.

use crate::common::api_client::{Api, error_code, send};
use crate::common::{ApiServer, RunningWorker, TestDb, production_profile, wait_until};
use crate::webhooks::receiver;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One test's deployment: a worker, and two API processes (each with a store of its own on
/// the production profile, as on two hosts; the embedded profile is one process, `blast up`).
struct Inboxes {
    db: TestDb,
    api: Api,
    other: ApiServer,
    _worker: RunningWorker,
}

impl Inboxes {
    async fn start(tune: impl FnOnce(&mut blast::settings::Settings)) -> Inboxes {
        let db = TestDb::new().await;
        let mut settings = db.settings("http://127.0.0.1:9");
        settings.webhooks.allow_loopback_http = true;
        settings.webhooks.allow_private_addresses = true;
        settings.webhooks.interval_ms = 50;
        tune(&mut settings);
        let store_of_its_own = || async {
            if production_profile() {
                blast::store::Store::open(&db.url).await.expect("store")
            } else {
                db.store.clone()
            }
        };
        let worker = RunningWorker::start(&store_of_its_own().await, settings.clone());
        let user = db.store.user_by_name("tester").await.expect("user");
        let token = db.store.create_token(&user, "t").await.expect("token");
        let server = ApiServer::start(&store_of_its_own().await, settings.clone()).await;
        let other = ApiServer::start(&store_of_its_own().await, settings).await;
        Inboxes {
            api: Api { server, token },
            other,
            db,
            _worker: worker,
        }
    }

    async fn client(&self, api: &Api, phone: &str, name: &str, tag: &str) -> i64 {
        let (status, body) = api
            .post(
                "/api/v1/clients",
                json!({"phone": phone, "name": name, "tags": [tag]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("id")
    }

    async fn token(&self, api: &Api, client: i64) -> String {
        let (status, body) = api
            .post(&format!("/api/v1/clients/{client}/inbox-token"), json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["client_id"], client);
        body["token"].as_str().expect("token").to_owned()
    }

    /// An `inapp` mailing to the clients tagged `tag`, run to its end.
    async fn mailing(&self, tag: &str, subject: &str, text: &str) -> i64 {
        let (status, body) = self
            .api
            .post(
                "/api/v1/mailings",
                json!({"channel": "inapp", "tags": [tag], "subject": subject, "text": text}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_i64().expect("id");
        wait_until(
            Duration::from_secs(30),
            "the inapp mailing ends",
            || async { self.api.get(&format!("/api/v1/mailings/{id}")).await.1["state"] == "done" },
        )
        .await;
        id
    }
}

/// A socket to `base`'s inbox with `token`, caught up after `after` (None: not at all).
pub(crate) async fn connect(base: &str, token: &str, after: Option<i64>) -> Socket {
    try_connect(base, token, after)
        .await
        .unwrap_or_else(|e| panic!("connect the inbox socket: {e}"))
}

async fn try_connect(
    base: &str,
    token: &str,
    after: Option<i64>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
    let url = format!(
        "{}/api/v1/inbox/ws?token={token}{after}",
        base.replacen("http://", "ws://", 1)
    );
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
}

/// The next JSON frame of `socket` (pings skipped); a close frame comes back as
/// `{"closed": code, "reason": …}`.
pub(crate) async fn frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Close(close) => {
                let (code, reason) = close
                    .map(|c| (u16::from(c.code), c.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return json!({"closed": code, "reason": reason});
            }
            _ => {}
        }
    }
}

async fn send_frame(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .expect("send a frame");
}

fn get_as(server: &ApiServer, token: &str, path: &str) -> reqwest::RequestBuilder {
    server.http.get(server.url(path)).bearer_auth(token)
}

fn post_as(server: &ApiServer, token: &str, path: &str) -> reqwest::RequestBuilder {
    server.http.post(server.url(path)).bearer_auth(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_reach_only_their_clients_sockets_on_every_process_and_catch_up_after_a_gap() {
    let s = Inboxes::start(|_| {}).await;
    let (api, other) = (&s.api.server, &s.other);
    let anna = s.client(&s.api, "+79000000001", "Anna", "a").await;
    let boris = s.client(&s.api, "+79000000002", "Boris", "b").await;
    let stranger_api = crate::common::api_client::second_tenant(&s.db, &s.api).await;
    let stranger = s.client(&stranger_api, "+79000000003", "Zoya", "a").await;
    let anna_token = s.token(&s.api, anna).await;
    let boris_token = s.token(&s.api, boris).await;
    let stranger_token = s.token(&stranger_api, stranger).await;

    let mut anna_here = connect(&api.base, &anna_token, Some(0)).await;
    let mut anna_there = connect(&other.base, &anna_token, Some(0)).await;
    let mut boris_there = connect(&other.base, &boris_token, Some(0)).await;
    let mut stranger_here = connect(&api.base, &stranger_token, Some(0)).await;
    for socket in [
        &mut anna_here,
        &mut anna_there,
        &mut boris_there,
        &mut stranger_here,
    ] {
        assert_eq!(frame(socket).await, json!({"type": "ready", "unread": 0}));
    }

    let mailing = s.mailing("a", "News", "Hi {{ name }}").await;
    let mut first = Value::Null;
    for socket in [&mut anna_here, &mut anna_there] {
        let got = frame(socket).await;
        assert_eq!(got["type"], "item", "{got}");
        assert_eq!(got["item"]["title"], "News");
        assert_eq!(got["item"]["text"], "Hi Anna");
        assert_eq!(got["item"]["mailing_id"], mailing);
        assert_eq!(got["item"]["state"], "sent");
        first = got["item"].clone();
    }

    // A notification to Boris, whose only channel is the inbox.
    let (status, body) = s
        .api
        .put(
            &format!("/api/v1/clients/{boris}/notification-preferences"),
            json!({"channels": ["inapp"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .api
        .post(
            "/api/v1/notifications",
            json!({"client_id": boris, "title": "Order shipped", "body": "It is on its way"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let notification = body["id"].as_i64().expect("id");
    // The next frame Boris's socket gets is his own item: Anna's never came to it.
    let got = frame(&mut boris_there).await;
    assert_eq!(got["item"]["title"], "Order shipped", "{got}");
    assert_eq!(got["item"]["text"], "It is on its way");
    wait_until(
        Duration::from_secs(30),
        "the notification is delivered",
        || async {
            s.api
                .get(&format!("/api/v1/notifications/{notification}"))
                .await
                .1["state"]
                == "delivered"
        },
    )
    .await;

    // The other tenant's client, tagged "a" too, got nothing of this tenant's mailing: its
    // next frame is its own tenant's item.
    let (status, body) = stranger_api
        .post(
            "/api/v1/mailings",
            json!({"channel": "inapp", "tags": ["a"], "text": "Only for Zoya"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        frame(&mut stranger_here).await["item"]["text"],
        "Only for Zoya"
    );

    // Anna's app goes away; two items arrive meanwhile; back, it asks for what came after
    // the last item it saw and gets exactly those, oldest first, then the unread count.
    drop(anna_here);
    s.mailing("a", "Second", "Two").await;
    s.mailing("a", "Third", "Three").await;
    let mut back = connect(&other.base, &anna_token, first["id"].as_i64()).await;
    let texts = [frame(&mut back).await, frame(&mut back).await];
    assert_eq!(texts[0]["item"]["text"], "Two");
    assert_eq!(texts[1]["item"]["text"], "Three");
    assert_eq!(
        frame(&mut back).await,
        json!({"type": "ready", "unread": 3})
    );
    // The socket that stayed saw them live, each once: its next frame is the next item.
    assert_eq!(frame(&mut anna_there).await["item"]["text"], "Two");
    assert_eq!(frame(&mut anna_there).await["item"]["text"], "Three");
    s.mailing("a", "Fourth", "Four").await;
    assert_eq!(frame(&mut anna_there).await["item"]["text"], "Four");
    assert_eq!(frame(&mut back).await["item"]["text"], "Four");

    // REST: only Anna's items, newest first; the other tenant's token shows only its own.
    let (status, page) = send(get_as(api, &anna_token, "/api/v1/inbox/items")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let texts: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["Four", "Three", "Two", "Hi Anna"]);
    let (_, page) = send(get_as(api, &stranger_token, "/api/v1/inbox/items")).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let first_id = first["id"].as_i64().expect("id");
    let (status, body) = send(post_as(
        api,
        &stranger_token,
        &format!("/api/v1/inbox/items/{first_id}/read"),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Forged and foreign credentials open nothing.
    let forged = anna_token.replacen(&format!(".{anna}."), &format!(".{boris}."), 1);
    assert_ne!(forged, anna_token);
    for bad in [forged.as_str(), "nonsense", s.api.token.as_str()] {
        let refused = try_connect(&api.base, bad, Some(0)).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            }
            other => panic!("a bad token must be refused with 401, got {other:?}"),
        }
        let (status, body) = send(get_as(api, bad, "/api/v1/inbox/unread")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    // A client of another tenant, or none, gets no token.
    let (status, _) = s
        .api
        .post(
            &format!("/api/v1/clients/{stranger}/inbox-token"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_and_read_items_change_state_and_are_reported_to_webhooks() {
    let s = Inboxes::start(|_| {}).await;
    let server = &s.api.server;
    let secret = Arc::new(Mutex::new(String::new()));
    let (url, got) = receiver(secret.clone(), 0).await;
    let (status, hook) = s.api.post("/api/v1/webhooks", json!({"url": url})).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    *secret.lock().expect("lock") = hook["secret"].as_str().expect("secret").to_owned();
    let anna = s.client(&s.api, "+79000000001", "Anna", "a").await;
    let token = s.token(&s.api, anna).await;
    let mut socket = connect(&server.base, &token, None).await;
    assert_eq!(frame(&mut socket).await["type"], "ready");
    s.mailing("a", "One", "first").await;
    s.mailing("a", "Two", "second").await;
    let one = frame(&mut socket).await["item"].clone();
    let two = frame(&mut socket).await["item"].clone();
    let (one_id, two_id) = (
        one["id"].as_i64().expect("id"),
        two["id"].as_i64().expect("id"),
    );

    // The app shows both and says so; a frame blast cannot take is answered, not fatal.
    send_frame(&mut socket, json!({"type": "ack", "ids": [one_id, two_id]})).await;
    send_frame(&mut socket, json!({"type": "shout"})).await;
    assert_eq!(frame(&mut socket).await["type"], "error");
    // A frame names at most 100 ids, as an acknowledgement over REST does; an id that is not
    // this client's changes nothing and is not an error (the next answer is to the frame
    // after it).
    let too_many: Vec<i64> = (1..=101).collect();
    send_frame(&mut socket, json!({"type": "ack", "ids": too_many})).await;
    let refused = frame(&mut socket).await;
    assert_eq!(
        (&refused["type"], &refused["message"]),
        (&json!("error"), &json!("name 1 to 100 item ids"))
    );
    send_frame(
        &mut socket,
        json!({"type": "read", "ids": [two_id + 1_000_000]}),
    )
    .await;
    send_frame(&mut socket, json!({"type": "shout"})).await;
    assert_eq!(
        frame(&mut socket).await["message"]
            .as_str()
            .map(|m| m.starts_with("not a frame")),
        Some(true)
    );
    let (status, _) = send(
        post_as(server, &token, "/api/v1/inbox/ack")
            .json(&json!({"ids": (1..=101).collect::<Vec<i64>>()})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let inbox_events = |state: &'static str| {
        let got = got.clone();
        move || {
            let got = got.clone();
            async move {
                got.lock()
                    .expect("lock")
                    .events
                    .iter()
                    .filter(|(event, valid, _)| {
                        *valid && event["type"] == "inbox" && event["state"] == state
                    })
                    .flat_map(|(event, _, _)| {
                        event["items"].as_array().cloned().unwrap_or_default()
                    })
                    .filter_map(|item| item["item_id"].as_i64())
                    .collect::<Vec<i64>>()
            }
        }
    };
    let delivered = inbox_events("delivered");
    wait_until(Duration::from_secs(30), "both deliveries reported", || {
        let delivered = delivered.clone();
        async move {
            let mut ids = delivered().await;
            ids.sort();
            ids == [one_id, two_id]
        }
    })
    .await;
    let (_, page) = send(get_as(server, &token, "/api/v1/inbox/items")).await;
    let states: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["delivered", "delivered"]);

    // Read one over REST, the other over the socket.
    let (status, body) = send(post_as(
        server,
        &token,
        &format!("/api/v1/inbox/items/{one_id}/read"),
    ))
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"unread": 1})));
    send_frame(&mut socket, json!({"type": "read", "ids": [two_id]})).await;
    let read = inbox_events("read");
    wait_until(Duration::from_secs(30), "both reads reported", || {
        let read = read.clone();
        async move {
            let mut ids = read().await;
            ids.sort();
            ids == [one_id, two_id]
        }
    })
    .await;
    let (_, unread) = send(get_as(server, &token, "/api/v1/inbox/unread")).await;
    assert_eq!(unread, json!({"unread": 0}));

    // Unread again, then all read; archived, it leaves the list.
    let unread_path = format!("/api/v1/inbox/items/{two_id}/unread");
    let (_, body) = send(post_as(server, &token, &unread_path)).await;
    assert_eq!(body, json!({"unread": 1}));
    let (_, page) = send(get_as(server, &token, "/api/v1/inbox/items?limit=1")).await;
    assert_eq!(page["items"][0]["id"], two_id, "unread first: {page}");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page) = send(get_as(
        server,
        &token,
        &format!("/api/v1/inbox/items?limit=1&cursor={cursor}"),
    ))
    .await;
    assert_eq!(page["items"][0]["id"], one_id, "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, body) = send(post_as(server, &token, "/api/v1/inbox/read-all")).await;
    assert_eq!(body, json!({"unread": 0}));
    let archive = format!("/api/v1/inbox/items/{one_id}/archive");
    let (status, _) = send(post_as(server, &token, &archive)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = send(get_as(server, &token, "/api/v1/inbox/items")).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let (status, body) = send(post_as(server, &token, &archive)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an archived item is gone: {body}"
    );
    let (status, body) = send(get_as(server, &token, "/api/v1/inbox/items?cursor=zz")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_capped_per_client_pinged_and_closed_when_their_token_runs_out() {
    let s = Inboxes::start(|settings| {
        settings.inapp.max_sockets_per_client = 1;
        settings.inapp.heartbeat_secs = 1;
        settings.inapp.token_ttl_secs = 3;
    })
    .await;
    let server = &s.api.server;
    let anna = s.client(&s.api, "+79000000001", "Anna", "a").await;
    let token = s.token(&s.api, anna).await;
    let mut older = connect(&server.base, &token, None).await;
    assert_eq!(frame(&mut older).await["type"], "ready");
    let mut newer = connect(&server.base, &token, None).await;
    assert_eq!(frame(&mut newer).await["type"], "ready");
    let closed = frame(&mut older).await;
    assert_eq!(closed["closed"], 4009, "{closed}");

    // Pings keep coming while the socket lives (tungstenite answers them).
    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match newer.next().await {
                Some(Ok(Message::Ping(_))) => return true,
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(ping, Ok(true), "a ping within 5 s");
    // The token runs out after 3 s: the socket is closed with 4001, and the token opens
    // nothing any more.
    let closed = frame(&mut newer).await;
    assert_eq!(
        closed["closed"],
        u16::from(CloseCode::Library(4001)),
        "{closed}"
    );
    let (status, _) = send(get_as(server, &token, "/api/v1/inbox/unread")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A stopping server says goodbye to the sockets it holds (1001), and they may come back.
    let fresh = s.token(&s.api, anna).await;
    let mut open = connect(&server.base, &fresh, None).await;
    assert_eq!(frame(&mut open).await["type"], "ready");
    drop(s.api);
    let closed = frame(&mut open).await;
    assert_eq!(closed["closed"], 1001, "{closed}");
}

/// An event stream's events, read as they arrive: (event name, id, data as JSON).
struct EventReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl EventReader {
    async fn open(request: reqwest::RequestBuilder) -> EventReader {
        let response = request.send().await.expect("open the event stream");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().ok(),
            Some("text/event-stream")
        );
        EventReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event with data (comments, the stream's pings, skipped).
    async fn next(&mut self) -> (String, Option<String>, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::new(), None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).expect("JSON data"));
                    }
                }
                if let Some(data) = data {
                    return (name, id, data);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an event within 20 s")
                .expect("the stream is open")
                .expect("a chunk");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_serves_the_inbox_where_a_socket_cannot_and_resumes_from_its_last_event() {
    let s = Inboxes::start(|_| {}).await;
    let server = &s.other;
    let anna = s.client(&s.api, "+79000000001", "Anna", "a").await;
    let token = s.token(&s.api, anna).await;
    let events = |after: &str| {
        server
            .http
            .get(server.url(&format!("/api/v1/inbox/events?token={token}{after}")))
    };
    let mut stream = EventReader::open(events("")).await;
    let (name, _, ready) = stream.next().await;
    assert_eq!(
        (name.as_str(), ready),
        ("ready", json!({"type": "ready", "unread": 0}))
    );
    s.mailing("a", "One", "first").await;
    let (name, id, item) = stream.next().await;
    assert_eq!(name, "item");
    assert_eq!(item["item"]["text"], "first");
    assert_eq!(id, item["item"]["id"].as_i64().map(|i| i.to_string()));
    drop(stream);

    // Back after a gap, as a browser's EventSource comes back: with the last event's id.
    s.mailing("a", "Two", "second").await;
    let last = id.expect("an item's event has an id");
    let mut stream = EventReader::open(events("").header("Last-Event-ID", last)).await;
    let (name, _, item) = stream.next().await;
    assert_eq!(
        (name.as_str(), &item["item"]["text"]),
        ("item", &json!("second"))
    );
    assert_eq!(stream.next().await.2, json!({"type": "ready", "unread": 2}));
    // What the stream showed is acknowledged over REST.
    let second = item["item"]["id"].as_i64().expect("id");
    let (status, body) = send(
        server
            .http
            .post(server.url("/api/v1/inbox/ack"))
            .bearer_auth(&token)
            .json(&json!({"ids": [second]})),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"unread": 2})));
    let (_, page) = send(get_as(server, &token, "/api/v1/inbox/items")).await;
    assert_eq!(page["items"][0]["state"], "delivered", "{page}");
    assert_eq!(page["items"][1]["state"], "sent", "{page}");
    let (status, _) =
        send(post_as(server, &token, "/api/v1/inbox/ack").json(&json!({"ids": []}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let refused = server
        .http
        .get(server.url("/api/v1/inbox/events"))
        .bearer_auth("nonsense")
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}
