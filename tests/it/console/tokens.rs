//! The console's API tokens page: a token made there works on the API until it is revoked
//! there, and is shown only once.

use super::{PASSWORD, browser_sign_in, click, console, no_redirects, page, sign_in, wait_for};
use blast_testkit::fantoccini::Locator;
use reqwest::StatusCode;

/// What the API answers `token` on a tenant's list of clients.
async fn api_status(server: &crate::common::ApiServer, token: &str) -> StatusCode {
    no_redirects()
        .get(server.url("/api/v1/clients"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API")
        .status()
}

#[tokio::test]
async fn a_token_made_in_the_console_works_on_the_api_until_it_is_revoked_there() {
    // The API keeps checked tokens for api.token_cache_secs (5 s by default): a revoke from
    // the console empties that cache, so the refusal below is immediate.
    let (_db, server) = console(|_| {}).await;
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.find(Locator::LinkText("Tokens"))
        .await
        .expect("the Tokens link")
        .click()
        .await
        .expect("open the tokens page");
    wait_for(c, "form.fields #label")
        .await
        .send_keys("nightly export")
        .await
        .expect("type the label");
    click(c, "#days option[value='30']").await;
    click(c, "form.fields button[type=submit]").await;
    let token = wait_for(c, "#new-token")
        .await
        .text()
        .await
        .expect("the new token");
    assert!(token.starts_with("blast_"), "{token}");
    let row = wait_for(c, "table.tokens tbody tr")
        .await
        .text()
        .await
        .expect("the token's row");
    assert!(
        row.contains("nightly export") && row.contains("never"),
        "{row}"
    );
    assert_eq!(api_status(&server, &token).await, StatusCode::OK);

    // Shown once: the page shows it no more, though the token is still listed.
    c.goto(&server.url("/settings/tokens"))
        .await
        .expect("open the tokens page again");
    let source = c.source().await.expect("the page");
    assert!(!source.contains(&token), "the token is shown only once");
    assert!(source.contains("nightly export"));

    // Revoked behind a confirmation: the API refuses it at once.
    click(c, "table.tokens a[href$='/revoke']").await;
    click(c, "form.confirm button[type=submit]").await;
    wait_for(c, "form.fields").await;
    assert!(
        c.find(Locator::Css("table.tokens")).await.is_err(),
        "no token is left"
    );
    assert_eq!(api_status(&server, &token).await, StatusCode::UNAUTHORIZED);
    browser.close().await;
}

#[tokio::test]
async fn a_token_form_needs_its_csrf_token_and_a_short_label() {
    let (db, server) = console(|_| {}).await;
    let (_, cookie) = sign_in(&server, PASSWORD).await;
    let (session, _) = cookie.expect("a session");
    let html = page(&server, "/settings/tokens", &session)
        .await
        .text()
        .await
        .expect("the page");
    let csrf = super::hidden_field(&html, "csrf");
    let post = |fields: Vec<(&'static str, String)>| {
        no_redirects()
            .post(server.url("/settings/tokens"))
            .header(reqwest::header::COOKIE, &session)
            .form(&fields)
            .send()
    };
    let forged = post(vec![("csrf", "0".into()), ("label", "x".into())])
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let long = post(vec![("csrf", csrf.clone()), ("label", "x".repeat(101))])
        .await
        .expect("post");
    assert_eq!(long.status(), StatusCode::BAD_REQUEST);
    assert!(long.text().await.expect("html").contains("at most 100"));
    let odd = post(vec![("csrf", csrf.clone()), ("days", "7".into())])
        .await
        .expect("post");
    assert_eq!(odd.status(), StatusCode::BAD_REQUEST);
    // None of them made a token.
    let listed = page(&server, "/settings/tokens", &session)
        .await
        .text()
        .await
        .expect("the page");
    assert!(listed.contains("No API tokens."), "{listed}");
    // Another tenant's token is not found, and cannot be revoked.
    let other = db
        .store
        .add_user("other", "another long password")
        .await
        .expect("another tenant");
    let their_token = db
        .store
        .create_token(&other, "theirs")
        .await
        .expect("token");
    let id = db.store.tokens(&other).await.expect("tokens")[0].id;
    let confirm = page(&server, &format!("/settings/tokens/{id}/revoke"), &session).await;
    assert_eq!(confirm.status(), StatusCode::NOT_FOUND);
    let revoke = no_redirects()
        .post(server.url(&format!("/settings/tokens/{id}/revoke")))
        .header(reqwest::header::COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(revoke.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_status(&server, &their_token).await, StatusCode::OK);
}
