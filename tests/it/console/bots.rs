//! The console's Telegram bots page, against the Bot API stub: a token Telegram refuses is
//! named beside its field and nothing is stored; a good one is registered (its token never
//! shown again), and removed behind a confirmation.

use super::{browser_sign_in, click, console, wait_for};
use blast_testkit::fantoccini::Locator;
use blast_testkit::{TelegramStub, TelegramStubOptions};

const TOKEN: &str = "7070:the-console-bot-secret";

#[tokio::test]
async fn a_bot_is_registered_after_telegram_vouches_for_its_token_and_removed() {
    let stub = TelegramStub::start(TelegramStubOptions::default())
        .await
        .expect("stub");
    let url = stub.url();
    let (db, server) = console(|s| s.telegram.api_url = url).await;
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.find(Locator::LinkText("Bots"))
        .await
        .expect("the Bots link")
        .click()
        .await
        .expect("open the bots page");

    // Telegram does not know this token yet: refused beside the token, nothing stored.
    let fill = |name: &'static str, token: &'static str| async move {
        let field = wait_for(c, "#name").await;
        field.clear().await.expect("clear");
        field.send_keys(name).await.expect("type the name");
        wait_for(c, "#token")
            .await
            .send_keys(token)
            .await
            .expect("type the token");
        click(c, "form.fields button[type=submit]").await;
    };
    fill("news", TOKEN).await;
    let error = wait_for(c, "#token-error")
        .await
        .text()
        .await
        .expect("text");
    assert!(error.contains("Unauthorized"), "{error}");
    let name = c.find(Locator::Id("name")).await.expect("the name field");
    assert_eq!(
        name.prop("value").await.expect("value").as_deref(),
        Some("news"),
        "the name typed is kept"
    );
    let token = c.find(Locator::Id("token")).await.expect("the token field");
    assert_eq!(
        token.prop("value").await.expect("value").as_deref(),
        Some(""),
        "the token is never sent back"
    );
    assert!(
        db.store
            .telegram_bots(db.tenant)
            .await
            .expect("bots")
            .is_empty()
    );

    // Once Telegram knows it, the bot is registered and listed by name and id.
    stub.add_bot(TOKEN);
    fill("news", TOKEN).await;
    let row = wait_for(c, "table.bots tr[data-bot='news']")
        .await
        .text()
        .await
        .expect("text");
    assert!(row.contains("news") && row.contains("7070"), "{row}");
    let source = c.source().await.expect("the page");
    assert!(
        !source.contains("the-console-bot-secret"),
        "the token never comes back"
    );

    // Removed behind a confirmation.
    click(c, "table.bots a[href$='/remove']").await;
    click(c, "form.confirm button[type=submit]").await;
    wait_for(c, "form.fields").await;
    assert!(c.find(Locator::Css("table.bots")).await.is_err());
    assert!(
        db.store
            .telegram_bots(db.tenant)
            .await
            .expect("bots")
            .is_empty()
    );
    browser.close().await;
}
