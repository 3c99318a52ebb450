//! The console's clients pages: search by phone, name or email and filter by tag, delete
//! behind a confirmation, and export what the filter selects as CSV that the import reads back.

use super::{PASSWORD, browser_sign_in, click, console, page, sign_in, wait_for};
use blast::store::NewClient;
use blast_testkit::fantoccini::{Client, Locator};
use std::collections::BTreeMap;

fn client(phone: &str, name: &str, email: &str, tags: &[&str], city: &str) -> NewClient {
    NewClient {
        phone: Some(phone.parse().expect("phone")),
        name: name.into(),
        email: Some(email.into()),
        timezone: "UTC".into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        attributes: BTreeMap::from([("city".to_owned(), city.to_owned())]),
        ..NewClient::default()
    }
}

/// The ids of the clients the page lists.
async fn listed(c: &Client) -> Vec<i64> {
    let ids = c
        .execute(
            "return [...document.querySelectorAll('table.clients tbody tr')].map(r => Number(r.dataset.client));",
            vec![],
        )
        .await
        .expect("the rows");
    serde_json::from_value(ids).expect("ids")
}

/// Search the clients page for `q` (and `tag`), as typed.
async fn search(c: &Client, q: &str, tag: &str) -> Vec<i64> {
    for (field, value) in [("q", q), ("tag", tag)] {
        let input = wait_for(c, &format!("form.filters #{field}")).await;
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }
    click(c, "form.filters button[type=submit]").await;
    // The old page's form and rows are still there until the new page replaces them: wait
    // for the address to carry this search and for its page to be loaded, not for a form.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let url = c.current_url().await.expect("the address");
        let given = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        let loaded = c
            .execute("return document.readyState === 'complete';", vec![])
            .await
            .expect("the page's state");
        if given("q") == q && given("tag") == tag && loaded == serde_json::json!(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the search for {q:?} {tag:?} never loaded; the address is {url}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    wait_for(c, "form.filters").await;
    listed(c).await
}

#[tokio::test]
async fn clients_are_searched_deleted_and_exported_as_csv_the_import_reads_back() {
    let (db, server) = console(|_| {}).await;
    db.store
        .import_clients(
            db.tenant,
            &[
                client(
                    "79000000001",
                    "Anna Petrova",
                    "anna@example.org",
                    &["vip"],
                    "Kazan",
                ),
                client(
                    "79000000002",
                    "Boris",
                    "boris@example.com",
                    &["vip", "news"],
                    "Omsk",
                ),
                client(
                    "79000000003",
                    "Clara",
                    "clara@example.org",
                    &["news"],
                    "Tver, old town",
                ),
            ],
            |_| {},
        )
        .await
        .expect("clients");
    let ids: Vec<i64> = db
        .store
        .list_clients(
            db.tenant,
            &blast::store::ClientQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list")
        .iter()
        .map(|c| c.id.0)
        .collect();
    let (anna, boris, clara) = (ids[0], ids[1], ids[2]);

    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.find(Locator::LinkText("Clients"))
        .await
        .expect("the Clients link")
        .click()
        .await
        .expect("open the clients");
    wait_for(c, "table.clients").await;
    assert_eq!(listed(c).await, vec![anna, boris, clara]);
    // A name in any case, a phone as people type it, a part of an email, a tag.
    assert_eq!(search(c, "PETROVA", "").await, vec![anna]);
    assert_eq!(search(c, "+7 900 000-00-02", "").await, vec![boris]);
    assert_eq!(search(c, "example.org", "").await, vec![anna, clara]);
    assert_eq!(search(c, "example.org", "vip").await, vec![anna]);
    assert_eq!(
        search(c, "50%_off", "").await,
        Vec::<i64>::new(),
        "% and _ are plain text"
    );

    // Deleted behind a confirmation.
    search(c, "", "").await;
    click(c, &format!("tr[data-client='{anna}'] a[href$='/delete']")).await;
    click(c, "form.confirm button[type=submit]").await;
    wait_for(c, "table.clients").await;
    assert_eq!(listed(c).await, vec![boris, clara]);
    assert!(
        db.store
            .client(db.tenant, blast::ids::ClientId(anna))
            .await
            .is_err()
    );

    // Edited as the API's PATCH edits: a bad email is refused above the form, as typed.
    click(c, &format!("tr[data-client='{boris}'] a[href$='/edit']")).await;
    let set = |css: &'static str, value: &'static str| async move {
        let field = wait_for(c, css).await;
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    };
    set("form.client #email", "not an email").await;
    click(c, "form.client button[type=submit]").await;
    let error = wait_for(c, "p.error").await.text().await.expect("text");
    assert!(error.contains("email"), "{error}");
    set("form.client #email", "boris@example.net").await;
    set("form.client #name", "Boris K").await;
    set("form.client #tags", "news").await;
    set("form.client #attributes", "city=Perm\nlevel=gold").await;
    click(c, "form.client button[type=submit]").await;
    wait_for(c, "table.clients").await;
    let edited = db
        .store
        .client(db.tenant, blast::ids::ClientId(boris))
        .await
        .expect("boris");
    assert_eq!(edited.name, "Boris K");
    assert_eq!(edited.email.as_deref(), Some("boris@example.net"));
    assert_eq!(edited.tags, vec!["news".to_owned()]);
    assert_eq!(
        edited.attributes,
        BTreeMap::from([
            ("city".to_owned(), "Perm".to_owned()),
            ("level".to_owned(), "gold".to_owned())
        ])
    );
    browser.close().await;

    // The export of a filter is CSV that the import reads back as the same clients.
    let (_, cookie) = sign_in(&server, PASSWORD).await;
    let (session, _) = cookie.expect("a session");
    let answer = page(&server, "/clients/export.csv?tag=news", &session).await;
    assert_eq!(
        answer.headers()[reqwest::header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let csv = answer.text().await.expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("phone,name,email,telegram_chat_id,timezone,tags,city,level")
    );
    let rows: Vec<_> = blast::app::import::csv_rows(csv.as_bytes())
        .expect("a client list")
        .map(|row| row.expect("read").expect("a valid row").1)
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(rows[0].name, "Boris K");
    assert_eq!(rows[0].tags, vec!["news".to_owned()]);
    assert_eq!(rows[0].attributes["level"], "gold");
    assert_eq!(rows[1].attributes["city"], "Tver, old town");
    assert_eq!(rows[1].email.as_deref(), Some("clara@example.org"));
}

#[tokio::test]
async fn a_csv_import_with_a_bad_row_shows_its_line_and_reason_and_imports_only_when_asked() {
    let (db, server) = console(|_| {}).await;
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("clients.csv");
    std::fs::write(
        &path,
        "phone,name,tags\n79000000011,Ann,vip\nnot a phone,Bob,vip\n79000000013,Cid,news\n",
    )
    .expect("the file");
    let browser = blast_testkit::Browser::start().await.expect("a browser");
    let c = &browser.client;
    browser_sign_in(c, &server).await;
    c.goto(&server.url("/clients")).await.expect("the clients");
    c.find(Locator::LinkText("Import a CSV file"))
        .await
        .expect("the import link")
        .click()
        .await
        .expect("open the import");
    let file_path = path.display().to_string();
    let file_path = file_path.as_str();
    let import = |skip: bool| async move {
        let file = wait_for(c, "#file").await;
        file.send_keys(file_path).await.expect("choose the file");
        let skip_box = wait_for(c, "#skip_invalid").await;
        if skip_box.is_selected().await.expect("checked") != skip {
            skip_box.click().await.expect("tick");
        }
        click(c, "form.import button[type=submit]").await;
    };

    // One bad row refuses the whole file, and says which line and why.
    import(false).await;
    let outcome = wait_for_outcome(c).await;
    assert!(
        outcome.starts_with("Nothing imported: 1 row is wrong"),
        "{outcome}"
    );
    let bad = wait_for(c, "table.row-errors tbody tr")
        .await
        .text()
        .await
        .expect("text");
    assert!(bad.starts_with('3') && bad.contains("phone"), "{bad}");
    assert_eq!(db.store.count_clients(db.tenant).await.expect("count"), 0);
    super::screenshot(c, "import").await;
    let uploaded = wait_for(c, ".upload .uploaded")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(uploaded, "100 % uploaded");

    // Asked to, it imports the two valid rows and still reports the bad one.
    c.execute(
        "document.querySelector('.report').hidden = true; return true;",
        vec![],
    )
    .await
    .expect("clear the report");
    import(true).await;
    let outcome = wait_for_outcome(c).await;
    assert_eq!(
        outcome,
        "Imported 2 (2 new, 0 updated); 1 bad rows left out."
    );
    assert_eq!(db.store.count_clients(db.tenant).await.expect("count"), 2);
    browser.close().await;

    // The upload needs the session's CSRF token.
    let (_, cookie) = sign_in(&server, PASSWORD).await;
    let (session, _) = cookie.expect("a session");
    let forged = reqwest::Client::new()
        .post(server.url("/clients/import"))
        .header(reqwest::header::COOKIE, &session)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body("phone\n79000000099\n")
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(db.store.count_clients(db.tenant).await.expect("count"), 2);
}

/// The import's outcome line, once the report is shown.
async fn wait_for_outcome(c: &Client) -> String {
    c.wait()
        .at_most(std::time::Duration::from_secs(30))
        .for_element(Locator::Css(".report:not([hidden]) .outcome"))
        .await
        .expect("the report")
        .text()
        .await
        .expect("text")
}
