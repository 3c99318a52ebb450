//! Every console page fits a phone's width (375 pixels: no page scrolls sideways, long
//! addresses and wide tables included), and another tenant's client or webhook is not found.

use super::{
    PASSWORD, browser_sign_in, console, in_an_hour, page, scrolls_sideways, sign_in, wait_for,
};
use blast::store::NewClient;
use reqwest::StatusCode;

/// The id of `tenant`'s first client.
async fn first_client(
    db: &crate::common::TestDb,
    tenant: blast::ids::TenantId,
) -> blast::ids::ClientId {
    let query = blast::store::ClientQuery {
        limit: 1,
        ..Default::default()
    };
    db.store.list_clients(tenant, &query).await.expect("list")[0].id
}

#[tokio::test]
async fn every_page_fits_a_phone_and_another_tenants_things_are_not_found() {
    let (db, server) = console(|_| {}).await;
    db.store
        .import_clients(
            db.tenant,
            &[NewClient {
                phone: Some("79000000001".parse().expect("phone")),
                name: "Anna Maria Konstantinopolskaya-Vasilyevskaya".into(),
                email: Some(
                    "anna.maria.konstantinopolskaya.vasilyevskaya@a-very-long-domain.example.org"
                        .into(),
                ),
                timezone: "UTC".into(),
                tags: vec!["vip".into(), "newsletter".into(), "spring-sale-2026".into()],
                ..NewClient::default()
            }],
            |_| {},
        )
        .await
        .expect("a client");
    let client = first_client(&db, db.tenant).await;
    let mailing = db.create_mailing(in_an_hour("Spring sale")).await;
    let hook = db
        .store
        .add_webhook(
            db.tenant,
            "https://hooks.a-very-long-domain-name-for-a-receiver.example.org/blast/events/incoming",
            10,
        )
        .await
        .expect("a webhook");
    let user = db.store.user_by_name("tester").await.expect("user");
    db.store
        .create_token(&user, "the nightly export to the data warehouse")
        .await
        .expect("a token");

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    c.set_window_size(375, 812).await.expect("phone width");
    browser_sign_in(c, &server).await;
    for path in [
        "/".to_owned(),
        "/mailings".to_owned(),
        "/mailings/new".to_owned(),
        format!("/mailings/{}", mailing.id),
        format!("/mailings/{}/edit", mailing.id),
        "/clients".to_owned(),
        format!("/clients/{client}/edit"),
        "/clients/import".to_owned(),
        "/stats".to_owned(),
        "/settings/tokens".to_owned(),
        "/settings/webhooks".to_owned(),
        format!("/settings/webhooks/{}", hook.id),
        "/settings/bots".to_owned(),
    ] {
        c.goto(&server.url(&path)).await.expect("open the page");
        wait_for(c, "main h1").await;
        assert!(!scrolls_sideways(c).await, "{path} fits a phone");
    }
    browser.close().await;

    // Another tenant's client and webhook are not found, to see or to change.
    let other = db
        .store
        .add_user("other", "another long password")
        .await
        .expect("another tenant");
    db.store
        .import_clients(
            other.id,
            &blast_testkit::fixtures::numbered_clients("77", "o", 1, "theirs"),
            |_| {},
        )
        .await
        .expect("their client");
    let theirs = first_client(&db, other.id).await;
    let their_hook = db
        .store
        .add_webhook(other.id, "https://theirs.example.org/hook", 10)
        .await
        .expect("their webhook");
    let (_, cookie) = sign_in(&server, PASSWORD).await;
    let (session, _) = cookie.expect("a session");
    for path in [
        format!("/clients/{theirs}/edit"),
        format!("/clients/{theirs}/delete"),
        format!("/settings/webhooks/{}", their_hook.id),
        format!("/settings/webhooks/{}/remove", their_hook.id),
    ] {
        let answer = page(&server, &path, &session).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
