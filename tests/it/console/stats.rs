//! The console's statistics page: a day's report of the tenant's own mailings, a chart per
//! channel, the day's top errors, and the per-mailing table sorted by a column's heading.

use super::{browser_sign_in, wait_for};
use crate::common::{ApiServer, RunningWorker, TestDb, now_ms};
use blast::domain::{ChannelKind, MailingState};
use blast_testkit::fantoccini::Locator;
use blast_testkit::fixtures::{mailing_to_tag, numbered_clients};
use std::time::Duration;

#[tokio::test]
async fn the_statistics_page_reports_the_day_of_the_tenants_own_mailings() {
    let db = TestDb::new().await;
    db.seed_clients(40, "all").await;
    db.seed_clients_from("78", "f", 10, "few").await;
    // Every tenth message of the big mailing is refused for good.
    let stub = super::stub_refusing_every_tenth(Duration::from_millis(5)).await;
    let settings = db.settings(&stub.base_url());
    let server = ApiServer::start(&db.store, settings.clone()).await;
    // Another tenant's mailing the same day, sent first (its messages take the first ids, so
    // the refusals below all fall on this tenant's): not on this tenant's page.
    let other = db
        .store
        .add_user("other", "another long password")
        .await
        .expect("another tenant");
    db.store
        .import_clients(other.id, &numbered_clients("77", "o", 3, "theirs"), |_| {})
        .await
        .expect("their clients");
    let theirs = blast::app::mailings::create(
        &db.store,
        other.id,
        mailing_to_tag(
            ChannelKind::Sms,
            "Theirs",
            "theirs",
            now_ms(),
            now_ms() + 600_000,
        ),
        blast::template::TextLimits::with_default_budget(1000),
    )
    .await
    .expect("their mailing");
    let worker = RunningWorker::start(&db.store, settings);
    let store = &db.store;
    crate::common::wait_until(
        Duration::from_secs(60),
        "their mailing finishes",
        || async move {
            store
                .mailing_any_tenant(theirs.id)
                .await
                .expect("mailing")
                .state
                == MailingState::Done
        },
    )
    .await;
    // 50 messages, ids 4 to 53: five of them (10, 20, …, 50) are refused.
    let big = db
        .mailing("Hello {{ name }}", "all", now_ms(), now_ms() + 600_000)
        .await;
    let small = db
        .mailing("Hi {{ name }}", "few", now_ms(), now_ms() + 600_000)
        .await;
    for id in [big.id, small.id] {
        crate::common::wait_until(
            Duration::from_secs(60),
            "the mailings finish",
            || async move {
                store.mailing_any_tenant(id).await.expect("mailing").state == MailingState::Done
            },
        )
        .await;
    }
    worker.stop().await;

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.find(Locator::LinkText("Statistics"))
        .await
        .expect("the Statistics link")
        .click()
        .await
        .expect("open the statistics");
    let totals = wait_for(c, "p.totals").await.text().await.expect("text");
    assert!(
        totals.contains("45 sent") && totals.contains("5 failed"),
        "{totals}"
    );
    let chart = c
        .find(Locator::Css("section.channel-chart svg"))
        .await
        .expect("the SMS chart")
        .attr("aria-label")
        .await
        .expect("label")
        .unwrap_or_default();
    assert_eq!(chart, "sms: 45 sent, 5 failed, 0 expired");
    let bars = c
        .find_all(Locator::Css("section.channel-chart rect.sent"))
        .await
        .expect("bars");
    assert!(!bars.is_empty());
    super::screenshot(c, "stats").await;
    let error = wait_for(c, "ol.errors li")
        .await
        .text()
        .await
        .expect("text");
    assert!(error.starts_with("5 ×") && error.contains("400"), "{error}");

    // The table: the tenant's two mailings only; sorted by what was sent, most first, then
    // least first.
    let order = || async {
        c.execute(
            "return [...document.querySelectorAll('table.per-mailing tbody tr')].map(r => Number(r.dataset.mailing));",
            vec![],
        )
        .await
        .expect("the rows")
    };
    let mut listed: Vec<i64> = serde_json::from_value(order().await).expect("ids");
    listed.sort_unstable();
    assert_eq!(listed, vec![big.id.0, small.id.0], "not the other tenant's");
    c.find(Locator::LinkText("Sent"))
        .await
        .expect("the Sent heading")
        .click()
        .await
        .expect("sort");
    wait_for(c, "th[aria-sort='descending']").await;
    assert_eq!(order().await, serde_json::json!([big.id.0, small.id.0]));
    c.find(Locator::LinkText("Sent"))
        .await
        .expect("the Sent heading")
        .click()
        .await
        .expect("sort the other way");
    wait_for(c, "th[aria-sort='ascending']").await;
    assert_eq!(order().await, serde_json::json!([small.id.0, big.id.0]));

    // Another day has nothing; a day that is no day is refused.
    c.goto(&server.url("/stats?day=2020-01-01"))
        .await
        .expect("another day");
    let empty = wait_for(c, "main").await.text().await.expect("text");
    assert!(
        empty.contains("No message was sent, failed or expired this day."),
        "{empty}"
    );
    c.goto(&server.url("/stats?day=yesterday"))
        .await
        .expect("a day that is no day");
    let refused = wait_for(c, "main").await.text().await.expect("text");
    assert!(refused.contains("expected YYYY-MM-DD"), "{refused}");
    browser.close().await;
}
