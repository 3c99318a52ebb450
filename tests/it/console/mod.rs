//! The web console in a real browser (Debian's chromium through chromedriver) and over plain
//! HTTP: sign-in, the session cookie, sign-out, CSRF.

mod bots;
mod clients;
mod mailing_form;
mod phone;
mod stats;
mod tokens;
mod webhooks;

use crate::common::{ApiServer, TestDb, mailing_state, now_ms};
use blast::domain::{ChannelKind, MailingState};
use blast::store::NewMailing;
use blast_testkit::fantoccini::Locator;
use reqwest::StatusCode;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn console(settings: impl FnOnce(&mut blast::settings::Settings)) -> (TestDb, ApiServer) {
    let db = TestDb::new().await;
    let mut s = db.settings("http://127.0.0.1:9");
    settings(&mut s);
    let server = ApiServer::start(&db.store, s).await;
    (db, server)
}

/// An SMS mailing to every client, an hour from now: it stays scheduled through the test.
fn in_an_hour(text: &str) -> NewMailing {
    NewMailing::new(
        ChannelKind::Sms,
        text,
        now_ms() + 3_600_000,
        now_ms() + 7_200_000,
    )
}

/// An HTTP client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The sign-in page's form token and the cookie (`name=value`) that carries it.
async fn sign_in_form(server: &ApiServer) -> (String, String) {
    let response = no_redirects()
        .get(server.url("/sign-in"))
        .send()
        .await
        .expect("the sign-in page");
    let cookie = set_cookie(&response, "blast_sign_in").expect("the form's cookie");
    let html = response.text().await.expect("html");
    (hidden_field(&html, "token"), cookie.0)
}

/// The value of the page's first hidden field `name` (a form's token).
fn hidden_field(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page has no {name} field"))
        .to_owned()
}

/// An SMS stub that answers after `latency` and refuses every tenth message for good (a 400).
async fn stub_refusing_every_tenth(latency: Duration) -> blast_testkit::SmsStub {
    blast_testkit::SmsStub::with_faults(crate::common::TOKEN, latency, |id, _| {
        if id % 10 == 0 {
            blast_testkit::Fault::Status(400)
        } else {
            blast_testkit::Fault::None
        }
    })
    .await
    .expect("stub")
}

/// The cookie `name` an answer sets: `name=value` and the whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|header| header.starts_with(&format!("{name}=")))
        .map(|header| {
            let pair = header.split(';').next().unwrap_or_default().to_owned();
            (pair, header.to_owned())
        })
}

/// Post the sign-in form with `token`, the form's cookie when given; the answer's status and
/// session cookie (`name=value`, and its whole header).
async fn post_sign_in(
    server: &ApiServer,
    password: &str,
    token: &str,
    form_cookie: Option<&str>,
) -> (StatusCode, Option<(String, String)>) {
    let mut request = no_redirects().post(server.url("/sign-in")).form(&[
        ("username", "tester"),
        ("password", password),
        ("token", token),
    ]);
    if let Some(cookie) = form_cookie {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    let response = request.send().await.expect("sign in");
    (response.status(), set_cookie(&response, "blast_session"))
}

/// Sign in over HTTP as a browser would: the form first, then its post.
async fn sign_in(server: &ApiServer, password: &str) -> (StatusCode, Option<(String, String)>) {
    let (token, cookie) = sign_in_form(server).await;
    post_sign_in(server, password, &token, Some(&cookie)).await
}

async fn page(server: &ApiServer, path: &str, cookie: &str) -> reqwest::Response {
    no_redirects()
        .get(server.url(path))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("page")
}

#[tokio::test]
async fn an_operator_signs_in_sees_the_mailings_and_signs_out_in_a_real_browser() {
    let (db, server) = console(|_| {}).await;
    let mailing = db.create_mailing(in_an_hour("Spring sale")).await;
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;

    // Without a session the console is its sign-in page.
    c.goto(&server.url("/")).await.expect("open /");
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/sign-in");

    // A wrong password is refused, on the same page, saying so.
    c.find(Locator::Id("username"))
        .await
        .expect("user name field")
        .send_keys("tester")
        .await
        .expect("type");
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys("not the password")
        .await
        .expect("type");
    click(c, "form.sign-in button[type=submit]").await;
    let error = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".error"))
        .await
        .expect("an error");
    assert_eq!(
        error.text().await.expect("text"),
        "Wrong user name or password."
    );
    assert!(c.get_named_cookie("blast_session").await.is_err());

    // The right one opens the dashboard, with the tenant's mailing.
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(PASSWORD)
        .await
        .expect("type");
    click(c, "form.sign-in button[type=submit]").await;
    let user = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("header .user"))
        .await
        .expect("signed in");
    assert_eq!(user.text().await.expect("text"), "tester");
    assert_eq!(c.current_url().await.expect("url").path(), "/");
    let table = c
        .find(Locator::Css("main table"))
        .await
        .expect("the mailings");
    let text = table.text().await.expect("text");
    assert!(text.contains(&mailing.id.to_string()), "{text}");
    assert!(text.contains("scheduled"), "{text}");
    let cookie = c
        .get_named_cookie("blast_session")
        .await
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    let session = format!("blast_session={}", cookie.value());

    // Signing out ends the session: the browser is back at sign-in, and the old cookie,
    // replayed, opens nothing.
    click(c, "header form button").await;
    wait_for(c, "form.sign-in").await;
    let replayed = page(&server, "/", &session).await;
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
    assert_eq!(replayed.headers()["location"], "/sign-in");
    browser.close().await;
}

#[tokio::test]
async fn the_session_cookie_is_guarded_and_sign_out_needs_the_csrf_token() {
    let (_db, server) = console(|s| s.api.public_url = "https://blast.example".into()).await;
    let (status, cookie) = sign_in(&server, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none(), "no session for a wrong password");

    let (status, cookie) = sign_in(&server, PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (session, header) = cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    let dashboard = page(&server, "/", &session).await;
    assert_eq!(dashboard.status(), StatusCode::OK);
    let html = dashboard.text().await.expect("html");
    // The sign-out form carries the session's CSRF token.
    let csrf = hidden_field(&html, "csrf");

    // Without the token, or with another, sign-out is refused and the session lives on.
    for forged in ["", "0000"] {
        let refused = no_redirects()
            .post(server.url("/sign-out"))
            .header(reqwest::header::COOKIE, &session)
            .form(&[("csrf", forged)])
            .send()
            .await
            .expect("sign out");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(page(&server, "/", &session).await.status(), StatusCode::OK);

    let signed_out = no_redirects()
        .post(server.url("/sign-out"))
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    let after = page(&server, "/", &session).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()["location"], "/sign-in");
}

#[tokio::test]
async fn a_sign_in_needs_its_forms_token_so_another_site_cannot_sign_a_visitor_in() {
    let (_db, server) = console(|_| {}).await;
    let page = no_redirects()
        .get(server.url("/sign-in"))
        .send()
        .await
        .expect("the sign-in page");
    let (_, header) = set_cookie(&page, "blast_sign_in").expect("the form's cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/sign-in"] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    let (token, cookie) = sign_in_form(&server).await;

    // Another site's form has neither the cookie nor its token: the right password is refused.
    let (status, session) = post_sign_in(&server, PASSWORD, "", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(session.is_none());
    let (status, session) = post_sign_in(&server, PASSWORD, &token, None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the token without its cookie"
    );
    assert!(session.is_none());
    let forged = "0".repeat(64);
    let (status, session) = post_sign_in(&server, PASSWORD, &forged, Some(&cookie)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the cookie with another token"
    );
    assert!(session.is_none());

    // The page's own form signs in; a second page of the same browser keeps the same token.
    let again = no_redirects()
        .get(server.url("/sign-in"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("the sign-in page again");
    assert!(again.text().await.expect("html").contains(&token));
    let (status, session) = post_sign_in(&server, PASSWORD, &token, Some(&cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(session.is_some());
}

#[tokio::test]
async fn an_idle_session_ends_and_a_disabled_console_leaves_only_the_api() {
    let (db, server) = console(|_| {}).await;
    let (_, cookie) = sign_in(&server, PASSWORD).await;
    let (session, _) = cookie.expect("a session cookie");
    assert_eq!(page(&server, "/", &session).await.status(), StatusCode::OK);
    // Its last request an hour ago: past console.idle_timeout_minutes (30).
    sqlx::query("UPDATE console_sessions SET last_seen_at = last_seen_at - 3600000")
        .execute(&db.sql)
        .await
        .expect("age the session");
    assert_eq!(
        page(&server, "/", &session).await.status(),
        StatusCode::SEE_OTHER
    );

    let (_db, server) = console(|s| s.console.enabled = false).await;
    let root = page(&server, "/", "").await;
    assert_eq!(root.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = root.json().await.expect("the API's JSON error");
    assert_eq!(body["error"]["code"], "not_found");
}

/// The element `css` finds, once it is there (10 s at most).
async fn wait_for(
    c: &blast_testkit::fantoccini::Client,
    css: &str,
) -> blast_testkit::fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

/// Click the element `css` finds.
async fn click(c: &blast_testkit::fantoccini::Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// With `BLAST_SCREENSHOTS=DIR` set, save what the browser shows as `DIR/{name}.png`: the
/// README's screenshots are taken so (`scripts/screenshots`).
async fn screenshot(c: &blast_testkit::fantoccini::Client, name: &str) {
    let Ok(dir) = std::env::var("BLAST_SCREENSHOTS") else {
        return;
    };
    let png = c.screenshot().await.expect("screenshot");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    std::fs::write(format!("{dir}/{name}.png"), png).expect("save the screenshot");
}

/// Sign in in the browser as "tester".
async fn browser_sign_in(c: &blast_testkit::fantoccini::Client, server: &ApiServer) {
    c.goto(&server.url("/sign-in")).await.expect("open sign-in");
    for (field, value) in [("username", "tester"), ("password", PASSWORD)] {
        c.find(Locator::Id(field))
            .await
            .expect("field")
            .send_keys(value)
            .await
            .expect("type");
    }
    click(c, "form.sign-in button[type=submit]").await;
    wait_for(c, "header .user").await;
}

#[tokio::test]
async fn a_mailing_is_cancelled_from_its_page_after_a_confirmation_and_others_are_not_found() {
    let (db, server) = console(|_| {}).await;
    let mailing = db.create_mailing(in_an_hour("Spring sale")).await;
    let theirs = db
        .store
        .add_user("intruder", "intruder password")
        .await
        .expect("another tenant");
    let other = blast::app::mailings::create(
        &db.store,
        theirs.id,
        in_an_hour("Not yours"),
        blast::template::TextLimits::with_default_budget(1000),
    )
    .await
    .expect("their mailing");

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.goto(&server.url(&format!("/mailings/{}", mailing.id)))
        .await
        .expect("open the mailing");
    let state = c
        .find(Locator::Css(".facts .state"))
        .await
        .expect("its state");
    assert_eq!(state.text().await.expect("text"), "scheduled");
    c.find(Locator::LinkText("Cancel"))
        .await
        .expect("the cancel action")
        .click()
        .await
        .expect("click");
    // Nothing happens before the confirmation.
    wait_for(c, "form.confirm").await;
    assert_eq!(
        mailing_state(&db, mailing.id).await,
        MailingState::Scheduled
    );
    click(c, "form.confirm button[type=submit]").await;
    let state = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//dd[@class='state' and normalize-space(.)='cancelled']",
        ))
        .await
        .expect("the page shows it cancelled");
    assert_eq!(state.text().await.expect("text"), "cancelled");
    assert_eq!(
        mailing_state(&db, mailing.id).await,
        MailingState::Cancelled
    );

    // Another tenant's mailing is a 404 page, saying nothing of it.
    let cookie = c
        .get_named_cookie("blast_session")
        .await
        .expect("a session cookie");
    let session = format!("blast_session={}", cookie.value());
    let response = page(&server, &format!("/mailings/{}", other.id), &session).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let html = response.text().await.expect("html");
    assert!(html.contains("Not found"), "{html}");
    assert!(!html.contains("Not yours"), "{html}");
    c.goto(&server.url(&format!("/mailings/{}", other.id)))
        .await
        .expect("open theirs");
    let heading = c.find(Locator::Css("main h1")).await.expect("heading");
    assert_eq!(heading.text().await.expect("text"), "Not found");

    // An action without the session's CSRF token is refused, and changes nothing.
    let second = db.create_mailing(in_an_hour("Summer sale")).await;
    let forged = no_redirects()
        .post(server.url(&format!("/mailings/{}/cancel", second.id)))
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(mailing_state(&db, second.id).await, MailingState::Scheduled);
    browser.close().await;
}

#[tokio::test]
async fn an_sms_mailing_reaches_100_percent_on_its_page_without_a_reload() {
    let db = TestDb::new().await;
    db.seed_clients(40, "all").await;
    // Each send takes a moment, so the page has progress to follow; every tenth message is
    // refused for good (a 400), so the dashboard has errors to show.
    let stub = stub_refusing_every_tenth(Duration::from_millis(50)).await;
    let mut settings = db.settings(&stub.base_url());
    // The dashboard's activity is read again at most once a second, in the background.
    settings.console.activity_refresh_secs = 1;
    let server = ApiServer::start(&db.store, settings.clone()).await;
    let mailing = db
        .mailing("Hello {{ name }}", "all", now_ms(), now_ms() + 600_000)
        .await;

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    c.set_window_size(1100, 850)
        .await
        .expect("a desktop window");
    browser_sign_in(c, &server).await;
    c.goto(&server.url(&format!("/mailings/{}", mailing.id)))
        .await
        .expect("open the mailing");
    c.execute("window.stayed = true; return true;", vec![])
        .await
        .expect("mark the page");
    let worker = crate::common::RunningWorker::start(&db.store, settings);
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::XPath(
            "//dd[@class='state' and normalize-space(.)='done']",
        ))
        .await
        .expect("the page shows the mailing done");
    let percent = c.find(Locator::Css(".percent")).await.expect("percent");
    assert_eq!(percent.text().await.expect("text"), "100 %");
    let sent = c
        .find(Locator::Css("[data-count='sent']"))
        .await
        .expect("the sent count");
    assert_eq!(sent.text().await.expect("text"), "36");
    let failed = c
        .find(Locator::Css("[data-count='failed_permanent']"))
        .await
        .expect("the failed count");
    assert_eq!(failed.text().await.expect("text"), "4");
    // A done mailing can no longer be cancelled, but its failed messages can be retried.
    let shown = c
        .execute(
            "return [...document.querySelectorAll('.actions a:not([hidden])')].map(a => a.textContent);",
            vec![],
        )
        .await
        .expect("the actions shown");
    assert_eq!(shown, serde_json::json!(["Retry failed"]));
    let stayed = c
        .execute("return window.stayed === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(
        stayed,
        serde_json::Value::Bool(true),
        "the page was not reloaded"
    );

    // Its failed messages, each with its last error.
    c.goto(&server.url(&format!("/mailings/{}?state=failed_permanent", mailing.id)))
        .await
        .expect("open the failed messages");
    let rows = c
        .find_all(Locator::Css("table.messages tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let text = row.text().await.expect("text");
        assert!(
            text.contains("failed_permanent") && text.contains("400"),
            "{text}"
        );
    }
    screenshot(c, "mailing").await;

    // The dashboard counts today's messages per channel and state, charts the sends, and
    // names the most frequent error. It showed none at the sign-in, before the sends; the
    // first view after a second shows that again while it reads them anew, a later one shows
    // them.
    let mut today = String::new();
    for _ in 0..40 {
        c.goto(&server.url("/")).await.expect("open the dashboard");
        if let Ok(table) = c.find(Locator::Css("table.today")).await {
            today = table.text().await.expect("text");
            if today.contains("36") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        today.contains("sms") && today.contains("36") && today.contains("4"),
        "{today}"
    );
    let summary = c
        .find(Locator::Css(".chart-summary"))
        .await
        .expect("the chart's summary");
    assert!(
        summary.text().await.expect("text").starts_with("36 sent"),
        "every send is in the chart"
    );
    let bars = c.find_all(Locator::Css(".chart rect")).await.expect("bars");
    assert!(!bars.is_empty(), "the chart has bars");
    let error = c
        .find(Locator::Css("ol.errors li"))
        .await
        .expect("the top error");
    let error = error.text().await.expect("text");
    assert!(error.starts_with("4 ×"), "{error}");
    assert!(!scrolls_sideways(c).await, "the dashboard fits its window");
    screenshot(c, "dashboard").await;
    worker.stop().await;
    browser.close().await;
}

#[tokio::test]
async fn the_dashboards_progress_bars_move_live_and_mailings_come_and_go_without_a_reload() {
    let db = TestDb::new().await;
    db.seed_clients(30, "all").await;
    let stub = blast_testkit::SmsStub::start(crate::common::TOKEN, Duration::from_millis(50))
        .await
        .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    // No activity is kept: the dashboard comes with a placeholder its script fills in.
    settings.console.activity_refresh_secs = 0;
    let server = ApiServer::start(&db.store, settings.clone()).await;
    let running = db
        .mailing("Hello {{ name }}", "all", now_ms(), now_ms() + 600_000)
        .await;
    let done = db.create_mailing(in_an_hour("Already over")).await;
    db.store
        .cancel_mailing(db.tenant, done.id)
        .await
        .expect("cancel");

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    // The board lists the scheduled mailing at 0 %, and not the cancelled one.
    let row = format!("table.board tr[data-mailing='{}']", running.id);
    let state = wait_for(c, &format!("{row} .state")).await;
    assert_eq!(state.text().await.expect("text"), "scheduled");
    let percent = wait_for(c, &format!("{row} .percent")).await;
    assert_eq!(percent.text().await.expect("text"), "0 %");
    assert!(
        c.find(Locator::Css(&format!(
            "table.board tr[data-mailing='{}']",
            done.id
        )))
        .await
        .is_err(),
        "a cancelled mailing is not on the board"
    );
    let as_of = wait_for(c, ".activity .as-of").await;
    assert!(
        as_of
            .text()
            .await
            .expect("text")
            .starts_with("Activity as of")
    );
    c.execute("window.stayed = true; return true;", vec![])
        .await
        .expect("mark the page");

    // A mailing made after the page appears on it, above the older one.
    let later = db.create_mailing(in_an_hour("Later")).await;
    let later_row = format!("table.board tr[data-mailing='{}']", later.id);
    wait_for(c, &later_row).await;
    let order = c
        .execute(
            "return [...document.querySelectorAll('table.board tbody tr')].map(r => Number(r.dataset.mailing));",
            vec![],
        )
        .await
        .expect("the board's order");
    assert_eq!(order, serde_json::json!([later.id.0, running.id.0]));

    // The running mailing's bar reaches 100 % and its state done.
    let worker = crate::common::RunningWorker::start(&db.store, settings);
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::XPath(&format!(
            "//tr[@data-mailing='{}']/td[@class='state' and normalize-space(.)='done']",
            running.id
        )))
        .await
        .expect("the board shows the mailing done");
    let percent = c
        .find(Locator::Css(&format!("{row} .percent")))
        .await
        .expect("percent");
    assert_eq!(percent.text().await.expect("text"), "100 %");
    let value = c
        .execute(
            &format!(
                "const b = document.querySelector(\"{row} progress\"); return [b.value, b.max];"
            ),
            vec![],
        )
        .await
        .expect("the bar");
    assert_eq!(value, serde_json::json!([30, 30]));

    // A deleted mailing leaves the board.
    db.store
        .delete_mailing(db.tenant, later.id)
        .await
        .expect("delete");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&format!(
            "//table[@class='board' and not(.//tr[@data-mailing='{}'])]",
            later.id
        )))
        .await
        .expect("the deleted mailing leaves the board");
    let stayed = c
        .execute("return window.stayed === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(
        stayed,
        serde_json::Value::Bool(true),
        "the page was not reloaded"
    );

    // Without a session there is no board to follow.
    let answer = reqwest::get(server.url("/dashboard/events"))
        .await
        .expect("events");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    worker.stop().await;
    browser.close().await;
}

/// Whether the page is wider than the window (a phone would scroll it sideways).
async fn scrolls_sideways(c: &blast_testkit::fantoccini::Client) -> bool {
    let wider = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .expect("measure");
    wider != serde_json::Value::Bool(false)
}

#[tokio::test]
async fn the_mailing_list_filters_by_state_and_channel_by_keyboard_at_phone_width() {
    use blast_testkit::fantoccini::key::Key;
    let (db, server) = console(|_| {}).await;
    let scheduled = db.create_mailing(in_an_hour("SMS one")).await;
    let cancelled = db.create_mailing(in_an_hour("SMS two")).await;
    db.store
        .cancel_mailing(db.tenant, cancelled.id)
        .await
        .expect("cancel");
    let logged = db
        .create_mailing(NewMailing {
            channel: ChannelKind::Log,
            ..in_an_hour("Log one")
        })
        .await;

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    c.set_window_size(375, 812).await.expect("phone width");

    // Signing in takes the keyboard only: the user name field has the focus, Tab moves to the
    // password, Enter submits.
    c.goto(&server.url("/sign-in")).await.expect("open sign-in");
    let focused = c
        .active_element()
        .await
        .expect("focus")
        .attr("id")
        .await
        .expect("id");
    assert_eq!(focused.as_deref(), Some("username"));
    let typed = format!(
        "tester{}{PASSWORD}{}",
        char::from(Key::Tab),
        char::from(Key::Enter)
    );
    c.active_element()
        .await
        .expect("focus")
        .send_keys(&typed)
        .await
        .expect("type");
    wait_for(c, "header .user").await;
    assert!(!scrolls_sideways(c).await, "the dashboard fits a phone");

    let listed = async |query: &str| -> String {
        c.goto(&server.url(&format!("/mailings{query}")))
            .await
            .expect("open the list");
        c.find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text")
    };
    let all = listed("").await;
    for m in [&scheduled, &cancelled, &logged] {
        assert!(all.contains(&format!("{}", m.id)), "{all}");
    }
    assert!(!scrolls_sideways(c).await, "the list fits a phone");

    // The form's filter: cancelled ones only.
    c.find(Locator::Id("state"))
        .await
        .expect("the state filter")
        .select_by_value("cancelled")
        .await
        .expect("select");
    click(c, "form.filters button").await;
    // The page the server answers marks the chosen state (the attribute, not the property
    // the selection set).
    wait_for(c, "#state option[value='cancelled'][selected]").await;
    let rows = c
        .find_all(Locator::Css("table.mailings tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .text()
            .await
            .expect("text")
            .starts_with(&cancelled.id.to_string())
    );

    // By channel, through the URL.
    listed("?channel=log").await;
    let rows = c
        .find_all(Locator::Css("table.mailings tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let row = rows[0].text().await.expect("text");
    assert!(
        row.starts_with(&logged.id.to_string()) && row.contains("log"),
        "{row}"
    );
    let bad = listed("?state=lost").await;
    assert!(bad.contains("Bad filter"), "{bad}");

    // The mailing page fits a phone too.
    c.goto(&server.url(&format!("/mailings/{}", scheduled.id)))
        .await
        .expect("open the mailing");
    assert!(!scrolls_sideways(c).await, "the mailing page fits a phone");
    browser.close().await;
}

#[tokio::test]
async fn console_sign_ins_and_api_logins_share_one_limit() {
    let (_db, server) = console(|s| s.api.login_attempts_per_minute = 2).await;
    assert_eq!(sign_in(&server, "wrong").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&server, "wrong").await.0, StatusCode::UNAUTHORIZED);
    // The third try within the minute is refused before the password is looked at.
    let (status, cookie) = sign_in(&server, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie.is_none());
    // The API's login counts the same attempts.
    let api = no_redirects()
        .post(server.url("/api/v1/auth/token"))
        .json(&serde_json::json!({"username": "tester", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
}
