//! The console's mailing form in a real browser: a mailing made there (its audience counted
//! and its text previewed live) reaches 100 %; a form that breaks a rule shows the error beside
//! its field and stores nothing; a scheduled mailing is edited through the same form.

use super::{browser_sign_in, click, in_an_hour, wait_for};
use crate::common::{ApiServer, RunningWorker, TestDb};
use blast_testkit::fantoccini::{Client, Locator};
use std::time::Duration;

/// Set a field's value as typing would, and tell the page it changed.
async fn set(c: &Client, css: &str, value: &str) {
    c.execute(
        "const f = document.querySelector(arguments[0]); f.value = arguments[1];
         f.dispatchEvent(new Event('input', {bubbles: true})); return true;",
        vec![css.into(), value.into()],
    )
    .await
    .unwrap_or_else(|e| panic!("set {css}: {e}"));
}

/// Wait until the element `css` shows text containing `wanted`; its text.
async fn wait_for_text(c: &Client, css: &str, wanted: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(element) = c.find(Locator::Css(css)).await {
            last = element.text().await.unwrap_or_default();
            if last.contains(wanted) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {wanted:?}; it showed {last:?}");
}

#[tokio::test]
async fn a_mailing_made_from_the_form_is_previewed_live_and_reaches_100_percent() {
    let db = TestDb::new().await;
    db.seed_clients(20, "spring").await;
    let stub = blast_testkit::SmsStub::start(crate::common::TOKEN, Duration::from_millis(20))
        .await
        .expect("stub");
    let mut settings = db.settings(&stub.base_url());
    // 20 clients at 10 a second: the form expects 2 s.
    settings.sms.rate_limit_per_second = 10;
    let server = ApiServer::start(&db.store, settings.clone()).await;
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.goto(&server.url("/mailings"))
        .await
        .expect("the mailings");
    c.find(Locator::LinkText("New mailing"))
        .await
        .expect("the New mailing link")
        .click()
        .await
        .expect("open the form");
    wait_for(c, "form.mailing-form #text")
        .await
        .send_keys("Hello {{ name }}, spring is here")
        .await
        .expect("type the text");
    wait_for(c, "#tags")
        .await
        .send_keys("spring")
        .await
        .expect("type the tag");
    // The audience is counted and the text rendered for its first client, as typed.
    let audience = wait_for_text(c, ".preview .audience", "20 clients").await;
    assert_eq!(audience, "20 clients, about 2 s at the channel's rate");
    wait_for_text(c, ".sample-text", "Hello c0, spring is here").await;
    super::screenshot(c, "mailing-form").await;
    let error_line = c
        .find(Locator::Css(".sample-error"))
        .await
        .expect("the error line");
    assert!(
        !error_line.is_displayed().await.expect("shown"),
        "a valid form shows no error"
    );
    // Only the chosen channel's fields are shown: no subject for an SMS.
    assert!(
        !c.find(Locator::Id("subject"))
            .await
            .expect("subject")
            .is_displayed()
            .await
            .expect("shown")
    );
    click(c, "form.mailing-form button[type=submit]").await;
    let state = wait_for(c, "dd.state").await;
    let url = c.current_url().await.expect("url");
    let id: i64 = url
        .path()
        .trim_start_matches("/mailings/")
        .parse()
        .expect("the new mailing's page");
    assert!(["scheduled", "running"].contains(&state.text().await.expect("text").as_str()));
    let mailing = db
        .store
        .mailing(db.tenant, blast::ids::MailingId(id))
        .await
        .expect("stored");
    assert_eq!(mailing.text, "Hello {{ name }}, spring is here");
    assert_eq!(mailing.filter.tags, vec!["spring".to_owned()]);

    let worker = RunningWorker::start(&db.store, settings);
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::XPath(
            "//dd[@class='state' and normalize-space(.)='done']",
        ))
        .await
        .expect("the mailing is done");
    let percent = c.find(Locator::Css(".percent")).await.expect("percent");
    assert_eq!(percent.text().await.expect("text"), "100 %");
    assert_eq!(stub.delivered_count(), 20);
    worker.stop().await;
    browser.close().await;
}

#[tokio::test]
async fn a_form_that_breaks_a_rule_shows_the_error_beside_its_field_and_stores_nothing() {
    let db = TestDb::new().await;
    db.seed_clients(3, "spring").await;
    let server = ApiServer::start(&db.store, db.settings("http://127.0.0.1:9")).await;
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.goto(&server.url("/mailings/new"))
        .await
        .expect("the form");
    wait_for(c, "form.mailing-form").await;

    // The end before the start.
    set(c, "#text", "Hello {{ name }}").await;
    set(c, "#tags", "spring").await;
    set(c, "#start_at", "2030-01-02T09:00").await;
    set(c, "#end_at", "2030-01-01T09:00").await;
    // The live preview names it before anything is sent.
    let early = wait_for_text(c, ".sample-error", "after its start").await;
    assert!(early.starts_with("end at:"), "{early}");
    click(c, "form.mailing-form button[type=submit]").await;
    let error = wait_for(c, "#end_at-error")
        .await
        .text()
        .await
        .expect("text");
    assert!(error.contains("must be after its start"), "{error}");
    let end = c
        .find(Locator::Css("#end_at[aria-invalid='true']"))
        .await
        .expect("the end is marked invalid");
    assert_eq!(
        end.prop("value").await.expect("value").as_deref(),
        Some("2030-01-01T09:00")
    );
    let text = c.find(Locator::Id("text")).await.expect("text");
    assert_eq!(
        text.prop("value").await.expect("value").as_deref(),
        Some("Hello {{ name }}")
    );

    // A variable no client of the audience has.
    set(c, "#end_at", "2030-01-03T09:00").await;
    set(c, "#text", "Hello {{ nickname }}").await;
    click(c, "form.mailing-form button[type=submit]").await;
    let error = wait_for(c, "#text-error").await.text().await.expect("text");
    assert!(error.contains("nickname"), "{error}");
    assert!(
        c.find(Locator::Css("#end_at-error")).await.is_err(),
        "the end is fine now"
    );
    assert!(
        db.store
            .list_mailings(db.tenant, None, 10)
            .await
            .expect("mailings")
            .is_empty(),
        "nothing was stored"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_scheduled_mailing_is_edited_through_the_same_form() {
    let db = TestDb::new().await;
    db.seed_clients(3, "spring").await;
    let server = ApiServer::start(&db.store, db.settings("http://127.0.0.1:9")).await;
    let mailing = db.create_mailing(in_an_hour("Spring sale")).await;
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.goto(&server.url(&format!("/mailings/{}", mailing.id)))
        .await
        .expect("the mailing");
    c.find(Locator::LinkText("Edit"))
        .await
        .expect("the Edit link")
        .click()
        .await
        .expect("open the edit");
    let text = wait_for(c, "form.mailing-form #text").await;
    assert_eq!(
        text.prop("value").await.expect("value").as_deref(),
        Some("Spring sale")
    );
    set(c, "#text", "Spring sale, now 30 % off").await;
    click(c, "form.mailing-form button[type=submit]").await;
    let shown = wait_for_text(c, "dd.text", "30 % off").await;
    assert_eq!(shown, "Spring sale, now 30 % off");
    let stored = db
        .store
        .mailing(db.tenant, mailing.id)
        .await
        .expect("stored");
    assert_eq!(stored.text, "Spring sale, now 30 % off");
    assert_eq!(
        stored.start_at / 60_000,
        mailing.start_at / 60_000,
        "its window is kept"
    );

    // A mailing that started can no longer be edited.
    db.store
        .cancel_mailing(db.tenant, mailing.id)
        .await
        .expect("cancel");
    c.goto(&server.url(&format!("/mailings/{}/edit", mailing.id)))
        .await
        .expect("the edit");
    let refused = c.source().await.expect("page");
    assert!(
        refused.contains("only a mailing that has not started can be edited"),
        "{refused}"
    );
    browser.close().await;
}
