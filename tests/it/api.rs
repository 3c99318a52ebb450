//! The HTTP API: the real server on port 0 for each test, over a temporary SQLite database.

use crate::common::api_client::{Api, error_code, second_tenant, send, setup};
use crate::common::{ApiServer, RunningWorker, TOKEN, TestDb, wait_until};
use blast_testkit::{Fault, SmsStub};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn authentication_is_required_and_both_kinds_of_token_work() {
    let (db, api) = setup(|s| {
        s.api.token_cache_secs = 1;
        s.api.login_attempts_per_minute = 3;
        s.api.session_ttl_secs = 1;
    })
    .await;
    let http = &api.server.http;
    let (status, body) = send(http.get(api.server.url("/api/v1/clients"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    let (status, _) = send(
        http.get(api.server.url("/api/v1/clients"))
            .bearer_auth("blast_nope"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/api/v1/clients").await.0, StatusCode::OK);

    let login = |password: &str| {
        send(
            http.post(api.server.url("/api/v1/auth/token"))
                .json(&json!({"username": "tester", "password": password})),
        )
    };
    let (status, body) = login("correct horse battery").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["token"].as_str().expect("token").to_owned();
    let (status, _) = send(
        http.get(api.server.url("/api/v1/clients"))
            .bearer_auth(&session),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _) = send(
        http.get(api.server.url("/api/v1/clients"))
            .bearer_auth(&session),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a session token expires");

    assert_eq!(login("wrong").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login("wrong").await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = login("correct horse battery").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "attempts are limited per user: {body}"
    );
    assert_eq!(error_code(&body), "rate_limited");

    let (status, body) = send(
        http.post(api.server.url("/api/v1/auth/register"))
            .json(&json!({"username": "eve", "password": "long enough"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(db.store.user_by_name("eve").await.is_err());
    db.store
        .set_user_disabled("tester", true)
        .await
        .expect("disable");
    // A checked token is trusted for api.token_cache_secs, then asked about again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api.get("/api/v1/clients").await.0,
        StatusCode::UNAUTHORIZED,
        "a disabled user's tokens stop"
    );
}

#[tokio::test]
async fn registration_when_allowed() {
    let (_db, api) = setup(|s| s.api.allow_registration = true).await;
    let http = &api.server.http;
    let register = |name: &str, password: &str| {
        send(
            http.post(api.server.url("/api/v1/auth/register"))
                .json(&json!({"username": name, "password": password})),
        )
    };
    assert_eq!(register("eve", "long enough").await.0, StatusCode::CREATED);
    assert_eq!(register("eve", "long enough").await.0, StatusCode::CONFLICT);
    assert_eq!(
        register("bad name!", "long enough").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        register("bob", "short").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn clients_are_created_read_changed_paged_and_deleted() {
    let (_db, api) = setup(|_| {}).await;
    let (status, anna) = api
        .post("/api/v1/clients", json!({"phone": "79001234567", "name": "Anna", "email": "a@b.ru", "tags": ["vip"], "attributes": {"city": "Kazan"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{anna}");
    assert_eq!(anna["operator_code"], "900");
    let id = anna["id"].as_i64().expect("id");
    let (status, got) = api.get(&format!("/api/v1/clients/{id}")).await;
    assert_eq!((status, &got), (StatusCode::OK, &anna));

    let (status, patched) = api
        .patch(&format!("/api/v1/clients/{id}"), json!({"email": null, "add_tags": ["new"], "attributes": {"city": null, "plan": "gold"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["email"], Value::Null);
    assert_eq!(patched["tags"], json!(["new", "vip"]));
    assert_eq!(patched["attributes"], json!({"plan": "gold"}));
    assert_eq!(patched["name"], "Anna", "absent fields stay");

    let (status, replaced) = api
        .put(
            &format!("/api/v1/clients/{id}"),
            json!({"phone": "79161234567", "name": "Anne"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["tags"], json!([]));
    assert_eq!(replaced["attributes"], json!({}));
    assert_eq!(replaced["operator_code"], "916");

    for i in 0..5 {
        let (status, _) = api
            .post(
                "/api/v1/clients",
                json!({"phone": format!("7903000000{i}"), "tags": ["bulk"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, page1) = api.get("/api/v1/clients?limit=4").await;
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(4));
    let cursor = page1["next_cursor"].as_str().expect("more pages");
    let (_, page2) = api
        .get(&format!("/api/v1/clients?limit=4&cursor={cursor}"))
        .await;
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page2["next_cursor"], Value::Null);
    let (_, bulk) = api.get("/api/v1/clients?tag=bulk&operator_code=903").await;
    assert_eq!(bulk["items"].as_array().map(Vec::len), Some(5));

    assert_eq!(
        api.delete(&format!("/api/v1/clients/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/api/v1/clients/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bulk_import_takes_csv_and_json_lines_with_row_errors() {
    let (_db, api) = setup(|_| {}).await;
    let post = |body: &'static str, content_type: &str, query: &str| {
        send(
            api.req(
                reqwest::Method::POST,
                &format!("/api/v1/clients/import{query}"),
            )
            .header("content-type", content_type)
            .body(body),
        )
    };
    let (status, body) = post("phone,name\n79001234567,Anna\n123,Bad\n", "text/csv", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["line"], 3);
    assert_eq!(
        api.get("/api/v1/clients").await.1["items"],
        json!([]),
        "nothing imported"
    );
    let (status, body) = post(
        "phone,name\n79001234567,Anna\n123,Bad\n",
        "text/csv",
        "?skip_invalid=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["inserted"].as_u64(),
            body["errors"].as_array().map(Vec::len)
        ),
        (Some(1), Some(1))
    );
    let lines = "{\"phone\": \"79001234567\", \"name\": \"Anya\"}\n{\"phone\": \"79001234568\", \"tags\": [\"x\"]}\n";
    let (status, body) = post(lines, "application/x-ndjson", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["inserted"].as_u64(), body["updated"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, body) = post("{\"phone\": 5}\n", "application/x-ndjson", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        post("x", "application/pdf", "").await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let (db, api) = setup(|s| s.api.body_limit_bytes = 64 * 1024).await;
    assert_eq!(
        api.post(
            "/api/v1/clients",
            json!({"phone": "79001234567", "tags": ["vip"]})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let raw = |method: reqwest::Method, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut req = api.req(method, path).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        send(req)
    };
    let json_ct = Some("application/json");
    let huge = format!(
        "{{\"phone\": \"79001234568\", \"name\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    type Case<'a> = (
        reqwest::Method,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": ".to_vec(), StatusCode::BAD_REQUEST, "bad_request"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": 79001234568}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": \"79001234568\", \"admin\": true}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/clients", None, b"{\"phone\": \"79001234568\"}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, huge.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": \"7900\xff\xfe1234\"}".to_vec(), StatusCode::BAD_REQUEST, "bad_request"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": \"1; DROP TABLE clients\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": \"79001234567\"}".to_vec(), StatusCode::CONFLICT, "conflict"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": \"79001234568\", \"timezone\": \"Mars\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/clients", json_ct, b"{\"phone\": \"79001234568\", \"tags\": [\"' OR 1=1 --\"]}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::GET, "/api/v1/clients/abc", None, vec![], StatusCode::BAD_REQUEST, "bad_request"),
        (reqwest::Method::GET, "/api/v1/clients/999", None, vec![], StatusCode::NOT_FOUND, "not_found"),
        (reqwest::Method::GET, "/api/v1/clients?limit=0", None, vec![], StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::GET, "/api/v1/clients?limit=many", None, vec![], StatusCode::BAD_REQUEST, "bad_request"),
        (reqwest::Method::GET, "/api/v1/clients?cursor=zzz", None, vec![], StatusCode::BAD_REQUEST, "bad_request"),
        (reqwest::Method::GET, "/api/v1/clients?tag=a%20b", None, vec![], StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::GET, "/api/v1/nowhere", None, vec![], StatusCode::NOT_FOUND, "not_found"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"audience\": \"all\", \"text\": \"x\", \"start_at\": \"2030-01-02T00:00:00Z\", \"end_at\": \"2030-01-01T00:00:00Z\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"text\": \"x\", \"tags\": [\"nosuch\"]}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        // No audience at all: every client must be asked for by name, and not beside a filter.
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"text\": \"x\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"text\": \"x\", \"audience\": \"all\", \"operator_codes\": [\"900\"]}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"audience\": \"all\", \"text\": \"x\", \"start_at\": \"tomorrow\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"audience\": \"all\", \"text\": \"x\", \"priority\": \"urgent\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"audience\": \"all\", \"text\": \"x\", \"channel\": \"pigeon\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"audience\": \"all\", \"text\": \"x\", \"local_hours\": \"9-5\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, b"{\"audience\": \"all\", \"text\": \"{{ name\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, format!("{{\"audience\": \"all\", \"text\": \"{}\"}}", "x".repeat(1001)).into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, br#"{"text": "x", "audience": "all", "channel": "telegram", "telegram": {"kind": "text", "media": {"url": "https://x.test/a.jpg"}}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, br#"{"text": "x", "audience": "all", "channel": "telegram", "telegram": {"kind": "photo", "media": {"file": {"name": "a.jpg", "base64": "%%%"}}}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, br#"{"text": "x", "audience": "all", "channel": "telegram", "telegram": {"kind": "sticker"}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings", json_ct, br#"{"text": "x", "audience": "all", "telegram": {"kind": "text"}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::POST, "/api/v1/mailings/999/cancel", None, vec![], StatusCode::NOT_FOUND, "not_found"),
        (reqwest::Method::GET, "/api/v1/mailings/1/messages?state=lost", None, vec![], StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (reqwest::Method::GET, "/api/v1/stats?day=2026-13-01", None, vec![], StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    ];
    for (method, path, ct, body, expected, code) in cases {
        let (status, answer) = raw(method.clone(), path, ct, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert_eq!(error_code(&answer), code, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    let (_, clients) = api.get("/api/v1/clients").await;
    assert_eq!(
        clients["items"].as_array().map(Vec::len),
        Some(1),
        "nothing was created"
    );
    assert_eq!(api.get("/api/v1/mailings").await.1["items"], json!([]));
    assert_eq!(
        db.store.count_clients(db.tenant).await.expect("count"),
        1,
        "the table is intact"
    );
}

#[tokio::test]
async fn clients_are_searched_by_phone_name_or_email() {
    let (_db, api) = setup(|_| {}).await;
    for (phone, name, email) in [
        ("79000000001", "Anna", "anna@example.org"),
        ("79000000002", "Boris", "boris@example.com"),
    ] {
        let (status, _) = api
            .post(
                "/api/v1/clients",
                json!({"phone": phone, "name": name, "email": email}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let names = |q: &'static str| {
        let api = &api;
        async move {
            let (status, page) = api
                .get(&format!("/api/v1/clients?q={}", urlencode(q)))
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("ANNA").await, vec!["Anna"]);
    assert_eq!(names("+7 900 000-00-02").await, vec!["Boris"]);
    assert_eq!(names(".com").await, vec!["Boris"]);
    assert_eq!(names("example").await, vec!["Anna", "Boris"]);
    assert!(names("%").await.is_empty(), "a % is a plain character");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_refused_mailing_names_the_field_at_fault() {
    let (db, api) = setup(|_| {}).await;
    db.seed_clients(2, "all").await;
    let cases = [
        (
            json!({"audience": "all", "text": "x", "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}),
            "end_at",
        ),
        (json!({"text": "x", "tags": ["nosuch"]}), "tags"),
        (json!({"text": "x"}), "tags"),
        (
            json!({"audience": "all", "text": "x", "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"audience": "all", "text": "x", "channel": "pigeon"}),
            "channel",
        ),
        (
            json!({"audience": "all", "text": "x", "local_hours": "9-5"}),
            "local_hours",
        ),
        (json!({"audience": "all", "text": "{{ name"}), "text"),
        (
            json!({"audience": "all", "text": "Hi {{ nickname }}"}),
            "text",
        ),
        (
            json!({"audience": "all", "text": "x", "channel": "email"}),
            "subject",
        ),
        (
            json!({"audience": "all", "text": "x", "html": "<p>x</p>"}),
            "html",
        ),
        (
            json!({"audience": "all", "text": "x", "telegram": {"kind": "text"}}),
            "telegram",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = send(
            api.req(reqwest::Method::POST, "/api/v1/mailings")
                .json(&body),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    // An error of the request as a whole names no field.
    let (_, answer) = send(api.req(reqwest::Method::POST, "/api/v1/mailings/999/cancel")).await;
    assert!(answer["error"].get("field").is_none(), "{answer}");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_response_and_creates_once() {
    let (_db, api) = setup(|_| {}).await;
    let post = |key: &str, body: Value| {
        send(
            api.req(reqwest::Method::POST, "/api/v1/clients")
                .header("Idempotency-Key", key)
                .json(&body),
        )
    };
    let (s1, first) = post("k-1", json!({"phone": "79001234567"})).await;
    let (s2, again) = post("k-1", json!({"phone": "79001234567"})).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first, again, "the retry gets the first response");
    let (status, body) = post("k-1", json!({"phone": "79001234568"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, clients) = api.get("/api/v1/clients").await;
    assert_eq!(clients["items"].as_array().map(Vec::len), Some(1));

    let mailing = json!({"text": "x", "audience": "all", "start_at": "2030-01-01T00:00:00Z"});
    let send_mailing = || {
        send(
            api.req(reqwest::Method::POST, "/api/v1/mailings")
                .header("Idempotency-Key", "m-1")
                .json(&mailing),
        )
    };
    let (a, b) = tokio::join!(send_mailing(), send_mailing());
    let statuses = [a.0, b.0];
    assert!(statuses.contains(&StatusCode::CREATED), "{statuses:?}");
    let (_, mailings) = api.get("/api/v1/mailings").await;
    assert_eq!(
        mailings["items"].as_array().map(Vec::len),
        Some(1),
        "concurrent retries create one"
    );
    // A conflicting (4xx) answer is remembered too: the same retry gets the same answer.
    let (s1, _) = post("k-2", json!({"phone": "79001234567"})).await;
    let (s2, _) = post("k-2", json!({"phone": "79001234567"})).await;
    assert_eq!((s1, s2), (StatusCode::CONFLICT, StatusCode::CONFLICT));
}

#[tokio::test]
async fn tenants_see_only_their_own_data_on_every_endpoint() {
    let (db, api) = setup(|_| {}).await;
    let (_, client) = api
        .post(
            "/api/v1/clients",
            json!({"phone": "79001234567", "tags": ["vip"]}),
        )
        .await;
    let cid = client["id"].as_i64().expect("id");
    let (_, mailing) = api
        .post(
            "/api/v1/mailings",
            json!({"text": "x", "tags": ["vip"], "start_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    let mid = mailing["id"].as_i64().expect("id");
    let other = second_tenant(&db, &api).await;

    let client_body = json!({"phone": "79001234567"});
    let mailing_body = json!({"text": "y", "audience": "all"});
    let probes: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (reqwest::Method::GET, format!("/api/v1/clients/{cid}"), None),
        (
            reqwest::Method::PUT,
            format!("/api/v1/clients/{cid}"),
            Some(client_body.clone()),
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/clients/{cid}"),
            Some(json!({"name": "x"})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/clients/{cid}"),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/mailings/{mid}"),
            None,
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/mailings/{mid}"),
            Some(mailing_body.clone()),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/mailings/{mid}"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{mid}/cancel"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{mid}/pause"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{mid}/resume"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/mailings/{mid}/retry-failed"),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/mailings/{mid}/stats"),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/mailings/{mid}/messages"),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/mailings/{mid}/events"),
            None,
        ),
    ];
    for (method, path, body) in probes {
        let mut req = other.req(method.clone(), &path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, answer) = send(req).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} by another tenant: {answer}"
        );
    }
    assert_eq!(other.get("/api/v1/clients").await.1["items"], json!([]));
    assert_eq!(other.get("/api/v1/mailings").await.1["items"], json!([]));
    assert_eq!(other.get("/api/v1/stats").await.1["items"], json!([]));
    let (status, _) = other
        .post("/api/v1/mailings", json!({"text": "x", "tags": ["vip"]}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another tenant's tags are unknown"
    );
    let (_, preview) = other
        .post(
            "/api/v1/mailings/preview",
            json!({"text": "x", "audience": "all"}),
        )
        .await;
    assert_eq!(preview["recipients"], 0);
    // Nothing of the owner's changed.
    assert_eq!(api.get(&format!("/api/v1/clients/{cid}")).await.1, client);
    assert_eq!(
        api.get(&format!("/api/v1/mailings/{mid}")).await.1["state"],
        "scheduled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailing_is_edited_paused_resumed_retried_and_followed_live() {
    let db = TestDb::new().await;
    db.seed_clients(30, "all").await;
    // Message 5 is refused until the operator retries it; all others go through.
    let refusals = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refuse = refusals.clone();
    let stub = SmsStub::with_faults(TOKEN, Duration::from_millis(30), move |id, _| {
        if id == 5 && refuse.load(std::sync::atomic::Ordering::SeqCst) {
            Fault::Status(400)
        } else {
            Fault::None
        }
    })
    .await
    .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    settings.sms.max_in_flight = 2;
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    let api = Api {
        server: ApiServer::start(&db.store, settings.clone()).await,
        token,
    };
    let worker = RunningWorker::start(&db.store, settings);

    let (status, m) = api.post("/api/v1/mailings", json!({"text": "Hi {{ name }}", "tags": ["all"], "start_at": "2030-01-01T00:00:00Z", "end_at": "2030-01-02T00:00:00Z"})).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let id = m["id"].as_i64().expect("id");
    let (_, preview) = api
        .post(
            "/api/v1/mailings/preview",
            json!({"text": "x", "tags": ["all"]}),
        )
        .await;
    assert_eq!(preview["recipients"], 30);
    let now = chrono::Utc::now();
    let (status, edited) = api
        .put(&format!("/api/v1/mailings/{id}"), json!({"text": "Hello {{ name }}", "tags": ["all"], "start_at": now.to_rfc3339(), "end_at": (now + chrono::Duration::hours(1)).to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");

    // Follow it live while it runs.
    let events = api
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/mailings/{id}/events"),
        )
        .send()
        .await
        .expect("sse");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    wait_until(Duration::from_secs(60), "some messages sent", || async {
        stub.delivered_count() >= 5
    })
    .await;
    assert_eq!(
        api.put(
            &format!("/api/v1/mailings/{id}"),
            json!({"text": "late", "audience": "all"})
        )
        .await
        .0,
        StatusCode::CONFLICT,
        "no edits after the start"
    );
    let (status, paused) = api
        .post(&format!("/api/v1/mailings/{id}/pause"), json!({}))
        .await;
    assert_eq!(
        (status, paused["state"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during_pause = stub.requests().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        stub.requests().len(),
        during_pause,
        "nothing is sent while paused"
    );
    assert_eq!(
        api.post(&format!("/api/v1/mailings/{id}/pause"), json!({}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        api.delete(&format!("/api/v1/mailings/{id}")).await.0,
        StatusCode::CONFLICT,
        "a paused mailing must be cancelled before it is deleted"
    );
    assert_eq!(
        api.post(&format!("/api/v1/mailings/{id}/resume"), json!({}))
            .await
            .0,
        StatusCode::OK
    );

    let body = tokio::time::timeout(Duration::from_secs(120), events.text())
        .await
        .expect("stream ends")
        .expect("body");
    assert!(body.contains("event: progress"), "{body}");
    let done = body.split("event: done").nth(1).expect("a done event");
    let done: Value =
        serde_json::from_str(done.trim().trim_start_matches("data:").trim()).expect("done json");
    assert_eq!(done["counts"]["sent"], 29, "{done}");
    assert_eq!(done["counts"]["failed_permanent"], 1, "{done}");

    let (_, failed) = api
        .get(&format!(
            "/api/v1/mailings/{id}/messages?state=failed_permanent"
        ))
        .await;
    assert_eq!(failed["items"][0]["id"], 5, "{failed}");
    assert!(
        failed["items"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("400")
    );
    refusals.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, retried) = api
        .post(&format!("/api/v1/mailings/{id}/retry-failed"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["retried"], 1);
    wait_until(Duration::from_secs(60), "the retried message", || async {
        api.get(&format!("/api/v1/mailings/{id}/stats")).await.1["counts"]["sent"] == 30
    })
    .await;
    let (_, stats) = api.get(&format!("/api/v1/mailings/{id}/stats")).await;
    assert_eq!(stats["recipients"], 30);
    let metrics = api
        .server
        .http
        .get(api.server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        "blast_messages_total{channel=\"sms\",state=\"sent\"",
        "blast_provider_errors_total{channel=\"sms\",kind=\"http_4xx\"}",
        "blast_send_duration_seconds_bucket{channel=\"sms\"",
        "blast_queue_depth{lane=\"medium\"}",
    ] {
        assert!(metrics.contains(series), "{series} in /metrics:\n{metrics}");
    }
    let (_, all) = api.get("/api/v1/stats").await;
    assert_eq!(all["items"][0]["counts"]["sent"], 30);
    wait_until(
        Duration::from_secs(60),
        "the mailing to be done again",
        || async { api.get(&format!("/api/v1/mailings/{id}")).await.1["state"] == "done" },
    )
    .await;
    assert_eq!(
        api.delete(&format!("/api/v1/mailings/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/api/v1/mailings/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    worker.stop().await;
}

#[tokio::test]
async fn operations_endpoints_and_the_openapi_document() {
    let (_db, api) = setup(|_| {}).await;
    let http = &api.server.http;
    let (status, body) = send(http.get(api.server.url("/health"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = send(http.get(api.server.url("/ready"))).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"store": "ok", "queue": "ok"}))
    );
    let metrics = http
        .get(api.server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);

    let text = http
        .get(api.server.url("/openapi.json"))
        .send()
        .await
        .expect("doc")
        .text()
        .await
        .expect("text");
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"));
    let doc: Value = serde_json::from_str(&text).expect("json");
    let expected = [
        ("/api/v1/auth/token", "post"),
        ("/api/v1/auth/register", "post"),
        ("/api/v1/clients", "get"),
        ("/api/v1/clients", "post"),
        ("/api/v1/clients/import", "post"),
        ("/api/v1/clients/{id}", "get"),
        ("/api/v1/clients/{id}", "put"),
        ("/api/v1/clients/{id}", "patch"),
        ("/api/v1/clients/{id}", "delete"),
        ("/api/v1/mailings", "get"),
        ("/api/v1/mailings", "post"),
        ("/api/v1/mailings/preview", "post"),
        ("/api/v1/mailings/{id}", "get"),
        ("/api/v1/mailings/{id}", "put"),
        ("/api/v1/mailings/{id}", "delete"),
        ("/api/v1/mailings/{id}/cancel", "post"),
        ("/api/v1/mailings/{id}/pause", "post"),
        ("/api/v1/mailings/{id}/resume", "post"),
        ("/api/v1/mailings/{id}/retry-failed", "post"),
        ("/api/v1/mailings/{id}/stats", "get"),
        ("/api/v1/mailings/{id}/messages", "get"),
        ("/api/v1/mailings/{id}/events", "get"),
        ("/api/v1/stats", "get"),
        ("/api/v1/telegram-bots", "get"),
        ("/api/v1/telegram-bots", "post"),
        ("/api/v1/telegram-bots/{name}", "delete"),
        ("/api/v1/notifications", "post"),
        ("/api/v1/notifications/{id}", "get"),
        ("/api/v1/clients/{id}/notification-preferences", "get"),
        ("/api/v1/clients/{id}/notification-preferences", "put"),
        ("/api/v1/clients/{id}/push-subscriptions", "get"),
        ("/api/v1/clients/{id}/push-subscriptions", "post"),
        ("/api/v1/push-subscriptions/{id}", "delete"),
        ("/api/v1/clients/{id}/inbox-token", "post"),
        ("/api/v1/inbox/ws", "get"),
        ("/api/v1/inbox/events", "get"),
        ("/api/v1/inbox/items", "get"),
        ("/api/v1/inbox/unread", "get"),
        ("/api/v1/inbox/items/{id}/read", "post"),
        ("/api/v1/inbox/items/{id}/unread", "post"),
        ("/api/v1/inbox/items/{id}/archive", "post"),
        ("/api/v1/inbox/read-all", "post"),
        ("/api/v1/inbox/ack", "post"),
        ("/api/v1/webhooks", "get"),
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks/{id}", "delete"),
        ("/api/v1/webhooks/{id}/deliveries", "get"),
        ("/u/{token}", "get"),
        ("/u/{token}", "post"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    let documented: usize = doc["paths"].as_object().map_or(0, |p| {
        p.values()
            .map(|v| v.as_object().map_or(0, |m| m.len()))
            .sum()
    });
    assert_eq!(
        documented,
        expected.len(),
        "every documented route is a real one"
    );
    // Every $ref points at a schema that exists.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn limits_methods_and_secrets_are_handled_in_the_error_shape() {
    let (db, api) = setup(|s| {
        s.api.body_limit_bytes = 1024;
        s.api.import_body_limit_bytes = 2048;
        s.api.auth_attempts_per_minute_per_ip = 2;
    })
    .await;
    let http = &api.server.http;
    // A wrong method is a JSON 405.
    let (status, body) = api.put("/api/v1/clients", json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // An Idempotency-Key does not lift the body limit, and a refused body is not remembered.
    let big = json!({"phone": "79001234567", "name": "x".repeat(4096)});
    let keyed = |body: Value| {
        send(
            api.req(reqwest::Method::POST, "/api/v1/clients")
                .header("Idempotency-Key", "big")
                .json(&body),
        )
    };
    let (status, body) = keyed(big).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (status, _) = keyed(json!({"phone": "79001234567"})).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the key was not used up by the refused body"
    );
    // The import limit answers in the same shape.
    let (status, body) = send(
        api.req(reqwest::Method::POST, "/api/v1/clients/import")
            .header("content-type", "text/csv")
            .body(format!("phone\n{}", "79001234567\n".repeat(400))),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Login answers are never stored for replay: they carry a fresh secret.
    let login = || {
        send(
            http.post(api.server.url("/api/v1/auth/token"))
                .bearer_auth(&api.token)
                .header("Idempotency-Key", "login")
                .json(&json!({"username": "tester", "password": "correct horse battery"})),
        )
    };
    let (s1, first) = login().await;
    let (s2, second) = login().await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_ne!(first["token"], second["token"]);
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'login'")
            .fetch_one(&db.sql)
            .await
            .expect("count");
    assert_eq!(stored, 0);
    // Per-address limit: the third attempt from this address within a minute.
    let (status, body) = login().await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
}

#[tokio::test]
async fn an_idempotency_key_left_by_a_dead_request_is_taken_over_after_its_lease() {
    let db = TestDb::new().await;
    let fresh = db
        .store
        .claim_idempotency_key(db.tenant, "k", "h", 60_000)
        .await
        .expect("claim");
    assert_eq!(fresh, blast::store::IdempotencyClaim::Fresh);
    let again = db
        .store
        .claim_idempotency_key(db.tenant, "k", "h", 60_000)
        .await
        .expect("claim");
    assert_eq!(again, blast::store::IdempotencyClaim::InProgress);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = db
        .store
        .claim_idempotency_key(db.tenant, "k", "h", 10)
        .await
        .expect("claim");
    assert_eq!(
        taken,
        blast::store::IdempotencyClaim::Fresh,
        "the lease ran out"
    );
    db.store
        .finish_idempotent(db.tenant, "k", 201, b"{}")
        .await
        .expect("finish");
    let done = db
        .store
        .claim_idempotency_key(db.tenant, "k", "h", 10)
        .await
        .expect("claim");
    assert_eq!(
        done,
        blast::store::IdempotencyClaim::Done {
            status: 201,
            body: b"{}".to_vec()
        }
    );
}

#[tokio::test]
async fn an_event_stream_ends_when_the_server_shuts_down() {
    let (_db, api) = setup(|_| {}).await;
    let (_, m) = api
        .post(
            "/api/v1/mailings",
            json!({"text": "x", "audience": "all", "start_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    let id = m["id"].as_i64().expect("id");
    let events = api
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/mailings/{id}/events"),
        )
        .send()
        .await
        .expect("sse");
    assert_eq!(events.status(), StatusCode::OK);
    let Api { server, .. } = api;
    drop(server); // shuts the server down
    let body = tokio::time::timeout(Duration::from_secs(10), events.text()).await;
    assert!(
        body.is_ok(),
        "the stream of a scheduled mailing ended with the server"
    );
}

#[tokio::test]
async fn preview_counts_recipients_and_the_time_they_need_at_the_rate_limit() {
    let (db, api) = setup(|s| s.sms.rate_limit_per_second = 50).await;
    db.seed_clients(30, "vip").await;
    let (status, preview) = api
        .post(
            "/api/v1/mailings/preview",
            json!({"text": "x", "tags": ["vip"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["recipients"], 30);
    assert_eq!(preview["expected_duration_secs"], 0.6);
    let (status, preview) = api
        .post(
            "/api/v1/mailings/preview",
            json!({"text": "x", "operator_codes": ["999"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["recipients"], 0);
    let (status, preview) = api
        .post(
            "/api/v1/mailings/preview",
            json!({"text": "x", "channel": "log", "audience": "all"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["recipients"], 30);
    assert_eq!(
        preview["expected_duration_secs"],
        Value::Null,
        "the log channel has no rate limit"
    );
    assert_eq!(
        api.get("/api/v1/mailings").await.1["items"],
        json!([]),
        "a preview creates nothing"
    );
}

/// A template variable that is neither a client field nor an attribute any client of the
/// audience has is refused when the mailing is made, by name; one only some clients have, or
/// one the template guards, is not. The preview shows the text for the first recipient.
#[tokio::test]
async fn template_variables_are_checked_against_the_audience_before_sending() {
    let (_db, api) = setup(|_| {}).await;
    for (phone, tags, attributes) in [
        ("79001230001", json!(["kazan"]), json!({"city": "Kazan"})),
        ("79001230002", json!(["kazan"]), json!({})),
        ("79001230003", json!(["far"]), json!({"nick": "Ed"})),
    ] {
        let (status, body) = api
            .post(
                "/api/v1/clients",
                json!({"phone": phone, "name": "Anna", "tags": tags, "attributes": attributes}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mailing = |text: &str, tag: &str| json!({"text": text, "tags": [tag], "start_at": "2099-01-01T00:00:00Z", "end_at": "2099-01-02T00:00:00Z"});
    let (status, body) = api
        .post(
            "/api/v1/mailings",
            mailing("Hi {{ name }} from {{ city }}", "kazan"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "one client has it: {body}");
    for (text, tag, missing) in [
        ("Hi {{ nickname }}", "kazan", "nickname"),
        // Another client has `nick`, but not one of this audience.
        ("Hi {{ nick }}", "kazan", "nick"),
        ("Hi {{ city }}", "far", "city"),
    ] {
        let (status, body) = api.post("/api/v1/mailings", mailing(text, tag)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}: {body}");
        assert_eq!(error_code(&body), "validation_failed");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("uses {missing},")) && message.contains("is defined"),
            "{message}"
        );
    }
    let (status, body) = api
        .post(
            "/api/v1/mailings",
            mailing(
                "Hi{% if nickname is defined %} {{ nickname }}{% endif %}",
                "far",
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "a guarded variable: {body}");
    let (status, preview) = api
        .post(
            "/api/v1/mailings/preview",
            mailing("Hi {{ name }} from {{ city }}", "kazan"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["recipients"], 2);
    assert_eq!(preview["sample"]["text"], "Hi Anna from Kazan");
    assert_eq!(preview["sample"]["error"], Value::Null);
}

/// The same import on SQLite (multi-row INSERTs) and PostgreSQL (COPY into a staging table and
/// a set-based merge) leaves the same clients: new phones added, known ones updated, the last
/// copy of a repeated phone winning, tags of every row linked, empty fields kept apart from
/// missing ones.
#[tokio::test]
async fn an_import_merges_the_same_way_on_both_profiles() {
    use blast::domain::Phone;
    use blast::store::{ClientQuery, NewClient};
    fn client(phone: &str, name: &str, tags: &[&str]) -> NewClient {
        NewClient {
            phone: phone.parse::<Phone>().ok(),
            name: name.into(),
            timezone: "UTC".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..NewClient::default()
        }
    }
    let mut outcomes = Vec::new();
    for production in [false, true] {
        let db = TestDb::with_profile(production).await;
        let store = &db.store;
        let first = store
            .import_clients(
                db.tenant,
                &[
                    client("79001234567", "Anna", &["old"]),
                    client("79001234568", "Bob", &[]),
                ],
                |_| {},
            )
            .await
            .expect("first import");
        assert_eq!((first.inserted, first.updated), (2, 0));
        let mut carl = client("79001234569", "", &["vip", "new"]);
        carl.email = Some("carl@example.com".into());
        carl.telegram_chat_id = Some(-1001234);
        carl.timezone = "Europe/Moscow".into();
        carl.attributes
            .insert("city".into(), "Kazan, \"center\"".into());
        let mut seen = Vec::new();
        let second = store
            .import_clients(
                db.tenant,
                &[
                    client("79001234567", "Anna first", &["vip"]),
                    carl,
                    client("79001234567", "Anna last", &["again"]),
                ],
                |done| seen.push(done),
            )
            .await
            .expect("second import");
        assert_eq!((second.inserted, second.updated), (1, 2));
        assert_eq!(seen.last(), Some(&3), "progress ends at the row count");
        let clients = store
            .list_clients(
                db.tenant,
                &ClientQuery {
                    limit: 100,
                    ..ClientQuery::default()
                },
            )
            .await
            .expect("list");
        let view: Vec<_> = clients
            .into_iter()
            .map(|c| {
                (
                    c.phone,
                    c.operator_code,
                    c.name,
                    c.email,
                    c.telegram_chat_id,
                    c.timezone,
                    c.tags,
                    c.attributes,
                )
            })
            .collect();
        // A row without a phone refuses the whole import.
        assert!(
            store
                .import_clients(
                    db.tenant,
                    &[client("79001234570", "x", &[]), NewClient::default()],
                    |_| {}
                )
                .await
                .is_err()
        );
        assert_eq!(store.count_clients(db.tenant).await.expect("count"), 3);
        outcomes.push(view);
    }
    let anna = &outcomes[0][0];
    assert_eq!(anna.2, "Anna last");
    assert_eq!(anna.6, ["again", "old", "vip"]);
    let carl = &outcomes[0][2];
    assert_eq!(
        (carl.2.as_str(), carl.3.as_deref(), carl.4, carl.5.as_str()),
        (
            "",
            Some("carl@example.com"),
            Some(-1001234),
            "Europe/Moscow"
        )
    );
    assert_eq!(outcomes[0][1].3, None, "no email stays none");
    assert_eq!(outcomes[0], outcomes[1], "SQLite and PostgreSQL agree");
}

/// On PostgreSQL the merge inserts new phones with a plain INSERT: a phone another request adds
/// while the merge runs fails the import as a conflict, with nothing of it written, instead of
/// an error the API would answer with 500.
#[tokio::test]
async fn a_phone_added_while_an_import_merges_fails_it_as_a_conflict() {
    use blast::store::StoreError;
    let db = TestDb::with_profile(true).await;
    // The tenant has a client already: the merge updates known phones, then inserts the rest.
    let known = blast_testkit::fixtures::numbered_client("79", "c", 10, "vip");
    db.store
        .import_clients(db.tenant, &[known], |_| {})
        .await
        .expect("a first import");
    let clients = blast_testkit::fixtures::numbered_clients("79", "c", 3, "vip");
    let mut import = db.store.begin_import(db.tenant).await.expect("begin");
    let rows: Vec<(u64, &blast::store::NewClient)> = (1..).zip(&clients).collect();
    import.stage(&rows).await.expect("stage");
    // Another writer has added the second phone and not committed yet.
    let mut other = db.sql.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO clients (tenant_id, phone, operator_code, created_at, updated_at)
         VALUES ($1, '79100000001', '910', 0, 0)",
    )
    .bind(db.tenant.0)
    .execute(&mut *other)
    .await
    .expect("the other insert");
    let merge = tokio::spawn(import.commit());
    wait_until(
        Duration::from_secs(20),
        "the merge waits for the other writer",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
            )
            .fetch_one(&db.sql)
            .await
            .expect("activity")
                > 0
        },
    )
    .await;
    other.commit().await.expect("commit");
    let outcome = merge.await.expect("joined");
    assert!(
        matches!(&outcome, Err(StoreError::Conflict(m)) if m.contains("while the import ran")),
        "{outcome:?}"
    );
    assert_eq!(db.store.count_clients(db.tenant).await.expect("count"), 2);
}

/// A client's tag links go with the client, and a tenant's clients with the tenant, on both
/// profiles: PostgreSQL keeps no foreign keys on them (migrations/postgres/0014), so the store
/// and a trigger do what the cascades did.
#[tokio::test]
async fn a_deleted_client_takes_its_tag_links_and_a_deleted_tenant_its_clients() {
    use blast::store::NewClient;
    for production in [false, true] {
        let db = TestDb::with_profile(production).await;
        let clients: Vec<NewClient> =
            blast_testkit::fixtures::numbered_clients("79", "c", 3, "vip");
        db.store
            .import_clients(db.tenant, &clients, |_| {})
            .await
            .expect("import");
        let links = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM client_tags")
                .fetch_one(&db.sql)
                .await
                .expect("links")
        };
        assert_eq!(links().await, 3, "production={production}");
        let first: i64 = sqlx::query_scalar("SELECT MIN(id) FROM clients")
            .fetch_one(&db.sql)
            .await
            .expect("a client");
        db.store
            .delete_client(db.tenant, blast::ids::ClientId(first))
            .await
            .expect("delete");
        assert_eq!(links().await, 2, "production={production}");
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(db.tenant.0)
            .execute(&db.sql)
            .await
            .expect("delete the tenant");
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients")
            .fetch_one(&db.sql)
            .await
            .expect("clients");
        assert_eq!((left, links().await), (0, 0), "production={production}");
    }
}

/// `/docs` renders the API reference in a real browser with nothing fetched from any other
/// host: its script is embedded in the binary, and the page names no external URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_renders_in_a_browser_without_any_other_host() {
    let (_db, api) = setup(|_| {}).await;
    let http = reqwest::Client::new();
    let page = http
        .get(api.server.url("/docs"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.expect("html");
    for external in ["http://", "https://", "src=\"//", "href=\"//"] {
        assert!(!html.contains(external), "{external} in the page:\n{html}");
    }
    let script_path = html
        .split("<script src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page loads one script")
        .to_owned();
    let script = http
        .get(api.server.url(&script_path))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/javascript")
    );
    assert_eq!(
        script.bytes().await.expect("bytes").as_ref(),
        include_bytes!("../../assets/vendor/redoc/redoc.standalone.js"),
        "the vendored bundle, as it is in the repository"
    );

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    c.goto(&api.server.url("/docs")).await.expect("open /docs");
    // Redoc renders one section per operation; "Create a mailing" is one of them.
    let operation = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(blast_testkit::fantoccini::Locator::XPath(
            "//*[contains(normalize-space(.), 'mailings/preview') and not(*)]",
        ))
        .await
        .expect("the reference lists the operations");
    assert!(operation.text().await.expect("text").contains("preview"));
    let origin = api.server.url("");
    let loaded = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .expect("resources");
    let loaded: Vec<String> = serde_json::from_value(loaded).expect("names");
    assert!(
        loaded.iter().any(|n| n.ends_with("/openapi.json")),
        "{loaded:?}"
    );
    let elsewhere: Vec<&String> = loaded
        .iter()
        .filter(|n| {
            !n.starts_with(origin.trim_end_matches('/'))
                && !n.starts_with("blob:")
                && !n.starts_with("data:")
        })
        .collect();
    assert!(
        elsewhere.is_empty(),
        "loaded from another host: {elsewhere:?}"
    );
    browser.close().await;
}

/// With `api.metrics_token` set, /metrics answers only that token; a tenant's API token is not
/// it.
#[tokio::test]
async fn metrics_can_require_their_own_token() {
    let (_db, api) = setup(|s| {
        s.api.metrics_token = blast::settings::Secret::new("scrape-secret");
    })
    .await;
    let http = reqwest::Client::new();
    let get = |token: Option<&str>| {
        let mut req = http.get(api.server.url("/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        send(req)
    };
    let (status, body) = get(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
    assert_eq!(get(Some(&api.token)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("scrape-secret")).await.0, StatusCode::OK);
    let (status, _) = api.get("/api/v1/mailings").await;
    assert_eq!(status, StatusCode::OK, "the API itself is unchanged");
}
