//! The console's webhooks pages: a URL blast may not call is refused beside its field, a
//! webhook added there receives a mailing's events, its history shows them with the
//! receiver's response codes, and it is removed behind a confirmation.

use super::{browser_sign_in, click, wait_for};
use crate::common::{ApiServer, RunningWorker, TestDb, now_ms};
use blast::domain::{AudienceFilter, ChannelKind};
use blast::store::NewMailing;
use blast_testkit::fantoccini::Locator;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_webhook_added_in_the_console_shows_a_mailings_deliveries_with_their_codes() {
    let db = TestDb::new().await;
    db.seed_clients(3, "hook").await;
    let mut settings = db.settings("http://127.0.0.1:9");
    settings.webhooks.allow_loopback_http = true;
    settings.webhooks.allow_private_addresses = true;
    settings.webhooks.interval_ms = 50;
    let server = ApiServer::start(&db.store, settings.clone()).await;
    let secret = Arc::new(Mutex::new(String::new()));
    let (url, got) = crate::webhooks::receiver(secret.clone(), 0).await;

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.find(Locator::LinkText("Webhooks"))
        .await
        .expect("the Webhooks link")
        .click()
        .await
        .expect("open the webhooks page");

    // A URL whose host blast may not call: refused beside the field, nothing added.
    let field = wait_for(c, "form.fields #url").await;
    field
        .send_keys("ftp://hooks.example.com/x")
        .await
        .expect("type");
    // The browser's own check would stop a non-URL; this one is a URL the server refuses.
    click(c, "form.fields button[type=submit]").await;
    let error = wait_for(c, "#url-error").await.text().await.expect("text");
    assert!(error.contains("webhook URL"), "{error}");
    let invalid = c
        .find(Locator::Css("#url[aria-invalid='true']"))
        .await
        .expect("the field is marked invalid");
    assert_eq!(
        invalid.prop("value").await.expect("value").as_deref(),
        Some("ftp://hooks.example.com/x"),
        "what was typed is kept"
    );
    assert!(c.find(Locator::Css("table.webhooks")).await.is_err());
    assert!(
        db.store
            .webhooks(db.tenant)
            .await
            .expect("webhooks")
            .is_empty()
    );

    // The receiver's URL is added; its secret is shown once.
    invalid.clear().await.expect("clear");
    invalid.send_keys(&url).await.expect("type");
    click(c, "form.fields button[type=submit]").await;
    let shown = wait_for(c, "#new-secret").await.text().await.expect("text");
    assert!(shown.starts_with("whsec_"), "{shown}");
    *secret.lock().expect("lock") = shown;

    // A mailing's events reach it, signed with that secret.
    let mailing = db
        .create_mailing(NewMailing {
            filter: AudienceFilter {
                tags: vec!["hook".into()],
                operator_codes: vec![],
            },
            ..NewMailing::new(
                ChannelKind::Log,
                "Hi {{ name }}",
                now_ms(),
                now_ms() + 300_000,
            )
        })
        .await;
    let worker = RunningWorker::start(&db.store, settings);
    crate::common::wait_until(Duration::from_secs(60), "the mailing's done event", || {
        let done = got
            .lock()
            .expect("lock")
            .events
            .iter()
            .any(|(event, _, _)| event["type"] == "mailing" && event["state"] == "done");
        async move { done }
    })
    .await;
    assert!(
        got.lock()
            .expect("lock")
            .events
            .iter()
            .all(|(_, valid, _)| *valid),
        "every event is signed with the secret the console showed"
    );

    // Its history lists them, delivered, with the receiver's 200.
    click(c, "table.webhooks a:not([href$='/remove'])").await;
    wait_for(c, "table.deliveries tbody tr").await;
    let history = c
        .find(Locator::Css("table.deliveries"))
        .await
        .expect("the history")
        .text()
        .await
        .expect("text");
    assert!(
        history.contains(&format!("mailing {} done", mailing.id)),
        "{history}"
    );
    let cells = |css: &'static str| async move {
        let mut texts = Vec::new();
        for cell in c.find_all(Locator::Css(css)).await.expect("cells") {
            texts.push(cell.text().await.expect("text"));
        }
        texts
    };
    let states = cells("table.deliveries td.state").await;
    let codes = cells("table.deliveries td.status").await;
    assert!(!states.is_empty());
    assert!(states.iter().all(|s| s == "delivered"), "{states:?}");
    assert!(codes.iter().all(|s| s == "200"), "{codes:?}");

    // Removed behind a confirmation.
    c.goto(&server.url("/settings/webhooks"))
        .await
        .expect("the webhooks page");
    click(c, "table.webhooks a[href$='/remove']").await;
    click(c, "form.confirm button[type=submit]").await;
    wait_for(c, "form.fields").await;
    assert!(c.find(Locator::Css("table.webhooks")).await.is_err());
    assert!(
        db.store
            .webhooks(db.tenant)
            .await
            .expect("webhooks")
            .is_empty()
    );
    worker.stop().await;
    browser.close().await;
}
