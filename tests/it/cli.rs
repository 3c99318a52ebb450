//! The `blast` command line as an operator uses it: the real binary, a temporary directory.

use blast_testkit::{TelegramStub, TelegramStubOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether the suite runs on the production profile (`BLAST_TEST_PROFILE=production`): each
/// directory then gets its own PostgreSQL database and Redis key prefix.
fn production() -> bool {
    std::env::var("BLAST_TEST_PROFILE").as_deref() == Ok("production")
}

/// The database of the blast that runs in `dir`: a SQLite file there, or (production) a
/// PostgreSQL database made for it on first use.
fn database_url(dir: &Path) -> String {
    if !production() {
        return format!("sqlite://{}", dir.join("blast.db").display());
    }
    let server = std::env::var("BLAST_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let database = format!("blast_test_cli_{name}");
    let marker = dir.join(".postgres-database");
    if !marker.exists() {
        let made = Command::new("psql")
            .args(["-qtA", &format!("{server}/postgres"), "-c"])
            .arg(format!("CREATE DATABASE \"{database}\""))
            .output()
            .expect("psql runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        std::fs::write(&marker, &database).expect("marker");
    }
    format!("{server}/{database}")
}

fn blast_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blast"));
    if production() {
        let redis = std::env::var("BLAST_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!(
            "blast-test-cli-{}:",
            dir.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        cmd.env("BLAST_REDIS__URL", redis)
            .env("BLAST_REDIS__KEY_PREFIX", prefix);
    }
    cmd.current_dir(dir)
        .env("BLAST_DATABASE_URL", database_url(dir))
        .env("BLAST_LOG_CHANNEL__PATH", dir.join("deliveries.jsonl"))
        .env("BLAST_WORKER__PUMP_INTERVAL_MS", "20")
        .env("BLAST_WORKER__SCHEDULE_INTERVAL_MS", "50")
        .env("BLAST_API__LISTEN", "127.0.0.1:0")
        .env_remove("BLAST_USER")
        .env_remove("RUST_LOG");
    cmd
}

fn blast_in(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = blast_cmd(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blast");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("blast runs")
}

fn blast(dir: &Path, args: &[&str]) -> Output {
    blast_in(dir, args, "")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("json output")
}

fn new_dir_with_user() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&blast_in(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        "correct horse\n",
    ));
    dir
}

/// Run `cmd` to completion, killing it and failing the test after `limit`.
fn with_deadline(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blast");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "blast up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_mailing_goes_out_on_the_log_channel_from_the_command_line() {
    let dir = new_dir_with_user();
    let d = dir.path();
    let token = ok(&blast(d, &["token", "create", "alice"]));
    assert!(
        token.trim().starts_with("blast_") && token.trim().len() > 40,
        "{token}"
    );
    std::fs::write(
        d.join("clients.csv"),
        "phone,name,tags,city\n79001234567,Anna,vip,Kazan\n79161234567,Boris,vip;new,Omsk\n79031234567,Vera,new,Perm\n",
    )
    .expect("csv");
    let out = ok(&blast(d, &["client", "import", "clients.csv"]));
    assert!(out.contains("3 new"), "{out}");
    let created = json(&blast(
        d,
        &[
            "mailing",
            "create",
            "--channel",
            "log",
            "--tag",
            "vip",
            "--text",
            "Hi {{ name }} from {{ city }}",
            "--priority",
            "high",
            "--json",
        ],
    ));
    let id = created["id"].as_i64().expect("id").to_string();
    assert_eq!(created["state"], "scheduled");

    let up = blast_cmd(d)
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("blast up");
    let watch = with_deadline(
        blast_cmd(d).args(["mailing", "watch", &id]),
        Duration::from_secs(120),
    );
    let watched = ok(&watch);
    // A second `blast up` on the same database is refused: it would take the first one's work.
    let second = with_deadline(blast_cmd(d).arg("up"), Duration::from_secs(60));
    assert_eq!(second.status.code(), Some(2));
    let second_err = String::from_utf8_lossy(&second.stderr);
    assert!(second_err.contains("another blast process is running"));
    // Its log lines went to a pipe: plain text, no colour escapes.
    assert!(
        second_err.contains("secrets.key is not set"),
        "{second_err}"
    );
    assert!(!second_err.contains('\u{1b}'), "{second_err}");
    assert!(
        watched.contains("done") && watched.contains("sent 2"),
        "{watched}"
    );
    assert!(stop(up).success());

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(d.join("deliveries.jsonl"))
        .expect("deliveries")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let mut texts: Vec<&str> = lines
        .iter()
        .map(|l| l["text"].as_str().unwrap_or(""))
        .collect();
    texts.sort();
    assert_eq!(texts, ["Hi Anna from Kazan", "Hi Boris from Omsk"]);

    let shown = json(&blast(d, &["mailing", "show", &id, "--json"]));
    assert_eq!(shown["state"], "done");
    assert_eq!(shown["counts"]["sent"], 2);
    let stats = json(&blast(d, &["stats", "--json"]));
    assert_eq!(stats[0]["counts"]["sent"], 2);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    // --day: the daily report, every tenant's mailings of that day.
    let report = json(&blast(d, &["stats", "--day", &today, "--json"]));
    assert_eq!(report["mailings"][0]["sent"], 2);
    assert_eq!(report["channels"][0]["channel"], "log");
    assert_eq!(report["total"]["sent"], 2);
    let report = json(&blast(d, &["stats", "--day", "2001-01-01", "--json"]));
    assert_eq!(report["mailings"], serde_json::json!([]));
}

fn counts(dir: &Path) -> (usize, usize) {
    let clients = json(&blast(
        dir,
        &["client", "list", "--json", "--limit", "10000"],
    ));
    let mailings = json(&blast(dir, &["mailing", "list", "--json"]));
    (
        clients.as_array().map_or(0, Vec::len),
        mailings.as_array().map_or(0, Vec::len),
    )
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = new_dir_with_user();
    let d = dir.path();
    ok(&blast(
        d,
        &["client", "add", "--phone", "79001234567", "--tag", "vip"],
    ));
    std::fs::write(
        d.join("ragged.csv"),
        "phone,name\n79001234568,Ok\n79001234569,Too,Many\n",
    )
    .expect("csv");
    std::fs::write(d.join("nophone.csv"), "name,email\nAnna,a@b.ru\n").expect("csv");
    std::fs::write(
        d.join("badphone.csv"),
        "phone,name\n79001234570,Ok\n+7 900 123,Bad\n",
    )
    .expect("csv");
    std::fs::write(d.join("binary.csv"), [0xff, 0xfe, 0x00, 0x41]).expect("csv");
    let long_text = "x".repeat(1001);
    let before = counts(d);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["client", "add", "--phone", "8900123456"],
            "invalid phone",
        ),
        (
            vec!["client", "add", "--phone", "7900123456"],
            "invalid phone",
        ),
        (
            vec!["client", "add", "--phone", "79001234567"],
            "already exists",
        ),
        (
            vec![
                "client",
                "add",
                "--phone",
                "79001234599",
                "--tz",
                "Mars/Base",
            ],
            "unknown time zone",
        ),
        (
            vec![
                "client",
                "add",
                "--phone",
                "79001234599",
                "--attr",
                "name=x",
            ],
            "client field",
        ),
        (
            vec!["client", "add", "--phone", "79001234599", "--email", "nope"],
            "invalid email",
        ),
        (vec!["client", "delete", "999"], "client 999 not found"),
        (vec!["client", "import", "ragged.csv"], "nothing imported"),
        (vec!["client", "import", "nophone.csv"], "no phone column"),
        (
            vec!["client", "import", "badphone.csv"],
            "line 3: invalid phone",
        ),
        (vec!["client", "import", "binary.csv"], "invalid utf-8"),
        (vec!["client", "import", "missing.csv"], "cannot open"),
        (
            vec![
                "mailing",
                "create",
                "--text",
                "x",
                "--start",
                "2030-12-02T00:00:00Z",
                "--end",
                "2030-12-01T00:00:00Z",
            ],
            "must be after its start",
        ),
        (
            vec![
                "mailing",
                "create",
                "--text",
                "x",
                "--end",
                "2001-01-01T00:00:00Z",
                "--start",
                "2000-01-01T00:00:00Z",
            ],
            "already in the past",
        ),
        (
            vec!["mailing", "create", "--text", "x", "--tag", "nosuchtag"],
            "unknown tag",
        ),
        (
            vec!["mailing", "create", "--text", &long_text],
            "the limit is 1000",
        ),
        (
            vec!["mailing", "create", "--text", "Hi {{ name"],
            "invalid message template",
        ),
        (vec!["mailing", "create", "--text", "   "], "text is empty"),
        (
            vec!["mailing", "create", "--text", "x", "--start", "tomorrow"],
            "invalid time",
        ),
        (
            vec!["mailing", "create", "--text", "x", "--operator", "9000"],
            "invalid operator code",
        ),
        (
            vec![
                "mailing",
                "create",
                "--text",
                "x",
                "--local-hours",
                "25:00-26:00",
            ],
            "invalid local hours",
        ),
        (
            vec!["mailing", "create", "--text", "x", "--tag", "a b"],
            "invalid tag",
        ),
        (
            vec![
                "mailing",
                "create",
                "--text",
                "x",
                "--photo",
                "https://x.test/a.jpg",
            ],
            "are for --channel telegram",
        ),
        (
            vec![
                "mailing",
                "create",
                "--channel",
                "telegram",
                "--photo",
                "missing.jpg",
            ],
            "cannot read missing.jpg",
        ),
        (
            vec![
                "mailing",
                "create",
                "--channel",
                "telegram",
                "--video-note",
                "https://x.test/n.mp4",
                "--caption",
                "hi",
            ],
            "a video note has no caption",
        ),
        (
            vec![
                "mailing",
                "create",
                "--channel",
                "telegram",
                "--text",
                "x",
                "--button",
                "Shop=javascript:alert(1)",
            ],
            "must start with http://, https:// or tg://",
        ),
        (
            vec!["mailing", "create", "--text", "x"],
            "no audience given",
        ),
        (
            vec!["client", "list", "--limit", "0"],
            "0 is not in 1..=10000",
        ),
        (
            vec!["mailing", "messages", "1", "--limit", "10001"],
            "10001 is not in 1..=10000",
        ),
        (
            vec!["mailing", "create", "--text", "x", "--all", "--tag", "vip"],
            "means every client",
        ),
        (vec!["mailing", "show", "999"], "mailing 999 not found"),
        (vec!["mailing", "cancel", "999"], "mailing 999 not found"),
        (vec!["stats", "--day", "2026-13-01"], "invalid day"),
        (
            vec!["--user", "nobody", "client", "list"],
            "user \"nobody\" not found",
        ),
    ];
    for (args, expected) in &cases {
        // Each mistake is made alone: a mailing names its audience unless that is the mistake.
        let mut args = args.clone();
        let names_audience = args
            .iter()
            .any(|a| matches!(*a, "--tag" | "--operator" | "--all"));
        if args.starts_with(&["mailing", "create"])
            && !names_audience
            && !expected.contains("audience")
        {
            args.push("--all");
        }
        let out = blast(d, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} should be a usage error; stderr: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    assert_eq!(counts(d), before, "rejected commands changed nothing");

    let out = blast_in(d, &["user", "add", "bob", "--password-stdin"], "short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password too short"));
    for (args, expected) in [
        (
            vec!["--config", "/nonexistent/blast.toml", "client", "list"],
            "does not exist",
        ),
        (
            vec!["--database-url", "mysql://x", "client", "list"],
            "unsupported database URL",
        ),
    ] {
        let out = blast(d, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{args:?}"
        );
    }
    let out = blast_cmd(d)
        .args(["client", "list"])
        .env("BLAST_SMS__TIMEOUT", "5")
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown BLAST_* key is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeout"));
    ok(&blast(d, &["user", "disable", "alice"]));
    let out = blast(d, &["client", "list"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a disabled user cannot act, even as the only one"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("disabled"));
}

#[test]
fn import_skips_invalid_rows_only_when_asked_and_updates_by_phone() {
    let dir = new_dir_with_user();
    let d = dir.path();
    let mut csv = String::from("phone,name,tags,email\n");
    for i in 0..5000 {
        csv.push_str(&format!("79{:09},n{i},bulk,\n", 500_000_000 + i));
    }
    csv.push_str("12345,bad,bulk,\n79000000001,Mail,bulk,not-an-email\n");
    std::fs::write(d.join("bulk.csv"), &csv).expect("csv");
    let out = blast(d, &["client", "import", "bulk.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 5002: invalid phone") && stderr.contains("line 5003: invalid email"),
        "{stderr}"
    );
    assert_eq!(counts(d).0, 0);

    let out = ok(&blast(
        d,
        &["client", "import", "bulk.csv", "--skip-invalid"],
    ));
    assert!(out.contains("5000 new, 0 updated, 2 invalid"), "{out}");
    std::fs::write(d.join("again.csv"), "phone,name\n79500000000,Renamed\n").expect("csv");
    let out = ok(&blast(d, &["client", "import", "again.csv"]));
    assert!(out.contains("0 new, 1 updated"), "{out}");
    let page = json(&blast(d, &["client", "list", "--json", "--limit", "1"]));
    assert_eq!(page[0]["name"], "Renamed");
    assert_eq!(page[0]["operator_code"], "950");
    let next = json(&blast(
        d,
        &[
            "client",
            "list",
            "--json",
            "--limit",
            "2",
            "--after",
            &page[0]["id"].to_string(),
        ],
    ));
    assert_eq!(next[0]["name"], "n1");
    let tagged = json(&blast(
        d,
        &[
            "client", "list", "--json", "--limit", "10000", "--tag", "bulk",
        ],
    ));
    assert_eq!(tagged.as_array().map_or(0, Vec::len), 5000);
}

#[test]
fn clients_are_updated_and_deleted() {
    let dir = new_dir_with_user();
    let d = dir.path();
    ok(&blast(
        d,
        &[
            "client",
            "add",
            "--phone",
            "79001234567",
            "--name",
            "Anna",
            "--tag",
            "a",
            "--attr",
            "city=Kazan",
        ],
    ));
    let updated = ok(&blast(
        d,
        &[
            "client",
            "update",
            "1",
            "--phone",
            "79161234567",
            "--add-tag",
            "b",
            "--remove-tag",
            "a",
            "--unset-attr",
            "city",
            "--tz",
            "Europe/Moscow",
        ],
    ));
    assert!(updated.contains("79161234567"), "{updated}");
    let shown = json(&blast(d, &["client", "show", "1", "--json"]));
    assert_eq!(shown["operator_code"], "916");
    assert_eq!(shown["tags"], serde_json::json!(["b"]));
    assert_eq!(shown["attributes"], serde_json::json!({}));
    assert_eq!(shown["timezone"], "Europe/Moscow");
    ok(&blast(d, &["client", "delete", "1"]));
    assert_eq!(counts(d).0, 0);
}

#[test]
fn tenants_see_only_their_own_data() {
    let dir = new_dir_with_user();
    let d = dir.path();
    ok(&blast_in(
        d,
        &["user", "add", "bob", "--password-stdin"],
        "another secret\n",
    ));
    let out = blast(d, &["client", "list"]);
    assert_eq!(out.status.code(), Some(2), "two users: --user is required");
    ok(&blast(
        d,
        &[
            "--user",
            "alice",
            "client",
            "add",
            "--phone",
            "79001234567",
            "--tag",
            "vip",
        ],
    ));
    let m = json(&blast(
        d,
        &[
            "--user",
            "alice",
            "mailing",
            "create",
            "--text",
            "x",
            "--tag",
            "vip",
            "--start",
            "2030-01-01T00:00:00Z",
            "--json",
        ],
    ));
    let id = m["id"].to_string();
    let out = blast(d, &["--user", "bob", "mailing", "show", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = blast(d, &["--user", "bob", "mailing", "cancel", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        json(&blast(d, &["--user", "bob", "client", "list", "--json"])),
        serde_json::json!([])
    );
    let out = blast(
        d,
        &[
            "--user", "bob", "mailing", "create", "--text", "x", "--tag", "vip",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown tag"),
        "bob cannot target alice's tags"
    );
    ok(&blast(d, &["--user", "alice", "mailing", "cancel", &id]));
    ok(&blast(d, &["user", "disable", "bob"]));
    let users = ok(&blast(d, &["user", "list"]));
    assert!(users.contains("disabled"), "{users}");
}

#[test]
fn commands_act_on_a_remote_server_through_its_api() {
    let server_dir = new_dir_with_user();
    let token = ok(&blast(server_dir.path(), &["token", "create", "alice"]))
        .trim()
        .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    // The Bot API stub that registrations check tokens with (getMe); it runs on a runtime of
    // its own beside this synchronous test.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stub = runtime
        .block_on(TelegramStub::start(TelegramStubOptions::default()))
        .expect("telegram stub");
    let serve = blast_cmd(server_dir.path())
        .env("BLAST_TELEGRAM__API_URL", stub.url())
        .args(["serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("blast serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "blast serve did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A machine with no database of its own.
    let here = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{listen}");
    let remote = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "--token", token.as_str()];
        full.extend_from_slice(args);
        blast(here.path(), &full)
    };
    ok(&remote(&[
        "client",
        "add",
        "--phone",
        "79001234567",
        "--name",
        "Anna",
        "--tag",
        "vip",
    ]));
    std::fs::write(
        here.path().join("more.csv"),
        "phone,name,tags\n79001234568,Boris,vip\n79001234569,Vera,new\n",
    )
    .expect("csv");
    let out = ok(&remote(&["client", "import", "more.csv"]));
    assert!(out.contains("2 new"), "{out}");
    // An inbox token for the client's app, from the server and from its own database: the
    // server takes both (one secret, kept in the database), for that client only.
    let remote_token = json(&remote(&["client", "inbox-token", "1", "--json"]));
    assert_eq!(remote_token["client_id"], 1);
    let local_token = ok(&blast(server_dir.path(), &["client", "inbox-token", "1"]));
    let unread = |token: &str| {
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(format!("{url}/api/v1/inbox/unread"))
                .bearer_auth(token)
                .send()
                .await
                .expect("unread");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        })
    };
    for token in [
        remote_token["token"].as_str().expect("token"),
        local_token.trim(),
    ] {
        assert_eq!(unread(token), (200, r#"{"unread":0}"#.to_owned()));
    }
    let mut parts: Vec<&str> = local_token.trim().split('.').collect();
    parts[1] = "2";
    assert_eq!(
        unread(&parts.join(".")).0,
        401,
        "a token moved to another client"
    );
    let missing = remote(&["client", "inbox-token", "999"]);
    assert!(!missing.status.success());
    let clients = json(&remote(&["client", "list", "--json", "--tag", "vip"]));
    assert_eq!(clients.as_array().map_or(0, Vec::len), 2);
    let updated = ok(&remote(&[
        "client",
        "update",
        "1",
        "--name",
        "Anya",
        "--add-tag",
        "new",
    ]));
    assert!(updated.contains("Anya"), "{updated}");
    let created = json(&remote(&[
        "mailing",
        "create",
        "--text",
        "Hi {{ name }}",
        "--tag",
        "vip",
        "--start",
        "2030-01-01T00:00:00Z",
        "--json",
    ]));
    let id = created["id"].to_string();
    let shown = json(&remote(&["mailing", "show", &id, "--json"]));
    assert_eq!(shown["state"], "scheduled");
    // A Telegram photo from a file on this machine travels to the server and is kept there.
    std::fs::write(here.path().join("a.jpg"), b"not really a jpeg").expect("photo");
    let photo = json(&remote(&[
        "mailing",
        "create",
        "--all",
        "--channel",
        "telegram",
        "--photo",
        "a.jpg",
        "--caption",
        "Hi {{ name }}",
        "--parse-mode",
        "html",
        "--button",
        "Shop=https://shop.test",
        "--start",
        "2030-01-01T00:00:00Z",
        "--json",
    ]));
    assert_eq!(photo["channel"], "telegram");
    assert_eq!(photo["text"], "Hi {{ name }}");
    assert_eq!(photo["telegram"]["kind"], "photo");
    assert_eq!(photo["telegram"]["parse_mode"], "html");
    assert_eq!(
        photo["telegram"]["buttons"][0][0]["url"],
        "https://shop.test"
    );
    assert!(photo["telegram"]["media"]["upload"].is_i64(), "{photo}");
    ok(&remote(&["mailing", "cancel", &photo["id"].to_string()]));
    // A bot of the tenant's own, and an album of two local files sent through it. A token
    // Telegram does not know is refused (a 422: exit code 2) with the reason.
    let token = "7001:promo-secret-token";
    let out = remote(&["telegram-bot", "add", "promo", "--bot-token", token]);
    assert_eq!(out.status.code(), Some(2), "an unknown token");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Telegram refused the bot token (401 Unauthorized)"),
        "{stderr}"
    );
    assert_eq!(
        json(&remote(&["telegram-bot", "list", "--json"])),
        serde_json::json!([])
    );
    stub.add_bot(token);
    let out = ok(&remote(&[
        "telegram-bot",
        "add",
        "promo",
        "--bot-token",
        token,
    ]));
    assert!(out.contains("7001"), "{out}");
    let bots = json(&remote(&["telegram-bot", "list", "--json"]));
    assert_eq!(bots[0]["name"], "promo");
    assert!(!bots.to_string().contains("promo-secret"), "{bots}");
    std::fs::write(here.path().join("b.jpg"), b"another photo").expect("photo");
    let album = json(&remote(&[
        "mailing",
        "create",
        "--all",
        "--channel",
        "telegram",
        "--album",
        "photo:a.jpg",
        "--album",
        "video:https://cdn.test/v.mp4",
        "--album",
        "photo:b.jpg",
        "--bot",
        "promo",
        "--caption",
        "Three of them",
        "--start",
        "2030-01-01T00:00:00Z",
        "--json",
    ]));
    assert_eq!(album["telegram"]["kind"], "media_group", "{album}");
    assert_eq!(album["telegram"]["bot"], "promo");
    let items = album["telegram"]["album"].as_array().expect("album items");
    assert_eq!(items.len(), 3);
    assert!(items[0]["media"]["upload"].is_i64(), "{album}");
    assert_eq!(items[1]["media"]["url"], "https://cdn.test/v.mp4");
    assert!(items[2]["media"]["upload"].is_i64(), "{album}");
    assert_ne!(items[0]["media"]["upload"], items[2]["media"]["upload"]);
    let out = remote(&["telegram-bot", "remove", "promo"]);
    assert_eq!(out.status.code(), Some(2), "in use by the album: a 409");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unfinished"));
    let out = remote(&[
        "mailing",
        "create",
        "--all",
        "--channel",
        "telegram",
        "--text",
        "x",
        "--bot",
        "nobody",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bot named"));
    let out = remote(&[
        "mailing",
        "create",
        "--all",
        "--channel",
        "telegram",
        "--album",
        "photo:a.jpg",
        "--text",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2), "one item is not an album");
    ok(&remote(&["mailing", "cancel", &album["id"].to_string()]));
    ok(&remote(&["telegram-bot", "remove", "promo"]));
    // A notification, sent twice under one idempotency key: one notification.
    let notify = |key: &str| {
        json(&remote(&[
            "notify",
            "--client",
            "1",
            "--title",
            "Order shipped",
            "--data",
            r#"{"order": 42}"#,
            "--idempotency-key",
            key,
            "--json",
        ]))
    };
    let first = notify("order-42");
    assert_eq!(first["state"], "waiting", "{first}");
    assert_eq!(first["events"][0]["data"], serde_json::json!({"order": 42}));
    assert_eq!(notify("order-42")["id"], first["id"]);
    assert_ne!(notify("order-43")["id"], first["id"]);
    let out = remote(&[
        "notify",
        "--client",
        "1",
        "--title",
        "x",
        "--link",
        "ftp://x.test",
    ]);
    assert_eq!(out.status.code(), Some(2), "a bad link is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("http(s)"));
    ok(&remote(&["mailing", "cancel", &id]));
    let out = remote(&["mailing", "cancel", &id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a 409 from the server is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already cancelled"));
    let out = remote(&["client", "add", "--phone", "79001234567"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = remote(&["user", "list"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "users are managed on the server itself"
    );
    assert!(
        !here.path().join("blast.db").exists(),
        "nothing was created locally"
    );

    // The server's own database holds what the remote commands did.
    let local = json(&blast(server_dir.path(), &["client", "list", "--json"]));
    assert_eq!(local.as_array().map_or(0, Vec::len), 3);
    let out = blast(
        here.path(),
        &["--server", &url, "--token", "blast_wrong", "client", "list"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert!(stop(serve).success());
}

#[test]
fn vapid_keys_are_made_for_the_configuration_and_checked_there() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = ok(&blast(d.path(), &["config", "vapid-keys"]));
    let private = out
        .lines()
        .find_map(|l| l.strip_prefix("vapid_private_key = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a private key line")
        .to_owned();
    let public = out
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("# "))
        .expect("the public key");
    use base64::Engine as _;
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(public)
        .expect("base64url");
    assert_eq!(
        (public.len(), public[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );
    std::fs::write(
        d.path().join("config.toml"),
        format!("[webpush]\nvapid_private_key = \"{private}\"\n"),
    )
    .expect("config");
    let shown = ok(&blast(d.path(), &["config", "show"]));
    assert!(shown.contains("vapid_private_key = \"***\""), "{shown}");
    assert!(!shown.contains(&private));
    std::fs::write(
        d.path().join("config.toml"),
        "[webpush]\nvapid_private_key = \"c2hvcnQ\"\n",
    )
    .expect("config");
    let out = blast(d.path(), &["config", "show"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 32 bytes"));
}

/// `blast telegram-bot add` on the local database checks the token with Telegram (getMe at
/// `telegram.api_url`) as the API does: unknown is a usage error (2), no Telegram is a
/// failure (1), both with the reason and nothing stored; a known token is registered.
#[test]
fn a_local_telegram_bot_registration_checks_the_token_with_telegram() {
    let dir = new_dir_with_user();
    let d = dir.path();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stub = runtime
        .block_on(TelegramStub::start(TelegramStubOptions::default()))
        .expect("telegram stub");
    let token = "7002:local-secret-token";
    let add = |api_url: &str| {
        let mut cmd = blast_cmd(d);
        cmd.env("BLAST_TELEGRAM__API_URL", api_url).args([
            "--user",
            "alice",
            "telegram-bot",
            "add",
            "news",
            "--bot-token",
            token,
        ]);
        with_deadline(&mut cmd, Duration::from_secs(60))
    };
    let out = add(&stub.url());
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown token is a usage error"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Telegram refused the bot token"),
        "{stderr}"
    );
    let out = add("http://127.0.0.1:9");
    assert_eq!(
        out.status.code(),
        Some(1),
        "no Telegram is not the caller's mistake"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot check the bot token") && !stderr.contains("local-secret"),
        "{stderr}"
    );
    let list = |d: &Path| {
        json(&blast(
            d,
            &["--user", "alice", "telegram-bot", "list", "--json"],
        ))
    };
    assert_eq!(list(d), serde_json::json!([]), "nothing stored");
    stub.add_bot(token);
    let out = ok(&add(&stub.url()));
    assert!(out.contains("7002"), "{out}");
    assert_eq!(list(d)[0]["name"], "news");
}

/// A database password never reaches a terminal: `config show` and the errors of a database
/// that cannot be opened show `***` in its place.
/// Run `cmd` for `run_for`, then stop it with SIGTERM (killing it if it lingers); what it
/// printed comes back either way.
fn run_for(cmd: &mut Command, run_for: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blast");
    std::thread::sleep(run_for);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    });
    let out = child.wait_with_output().expect("output");
    drop(killer);
    out
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A recognizable secret in every setting that holds one, and in every URL that can carry
/// credentials: none of it appears in `config show`, in the log of a running `blast up` whose
/// sends fail, in a message's recorded error, or in the error of a connection that fails.
#[test]
fn no_secret_reaches_any_output() {
    const MARK: &str = "S3cr3tMark";
    let dir = new_dir_with_user();
    let d = dir.path();
    let vapid = ok(&blast(d, &["config", "vapid-keys"]));
    let vapid_key = vapid
        .lines()
        .find_map(|l| l.strip_prefix("vapid_private_key = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a private key")
        .to_owned();
    let sealing = ok(&blast(d, &["config", "secret-key"]));
    let sealing_key = sealing
        .lines()
        .find_map(|l| {
            l.split_once("key = \"")
                .map(|(_, k)| k.trim_end_matches('"'))
        })
        .expect("a secrets key")
        .to_owned();
    let secrets: Vec<(&str, String)> = vec![
        ("BLAST_SMS__TOKEN", format!("sms-{MARK}")),
        // Nobody listens on port 9: every send fails.
        (
            "BLAST_SMS__BASE_URL",
            format!("http://gateway:{MARK}-sms@127.0.0.1:9"),
        ),
        ("BLAST_EMAIL__PASSWORD", format!("smtp-{MARK}")),
        ("BLAST_TELEGRAM__BOT_TOKEN", format!("123:tg-{MARK}")),
        (
            "BLAST_TELEGRAM__API_URL",
            format!("http://bot:{MARK}-tg@127.0.0.1:9"),
        ),
        ("BLAST_BOT__WEBHOOK_SECRET", format!("bot-{MARK}")),
        ("BLAST_API__METRICS_TOKEN", format!("metrics-{MARK}")),
        ("BLAST_WEBPUSH__VAPID_PRIVATE_KEY", vapid_key.clone()),
        ("BLAST_SECRETS__KEY", sealing_key.clone()),
    ];
    let values: Vec<String> = secrets
        .iter()
        .map(|(_, v)| v.clone())
        .chain([MARK.to_owned()])
        .collect();
    let assert_clean = |what: &str, text: &str| {
        for value in &values {
            assert!(
                !text.contains(value.as_str()),
                "{what} shows {value:?}:\n{text}"
            );
        }
    };
    let with_secrets = |args: &[&str]| {
        let mut cmd = blast_cmd(d);
        cmd.envs(secrets.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args);
        cmd
    };

    let shown = ok(&with_secrets(&["config", "show"])
        .output()
        .expect("config show"));
    assert_clean("config show", &shown);
    assert!(shown.contains("http://gateway:***@127.0.0.1:9"), "{shown}");

    // A mailing whose every send fails, under `blast up` with its log in a file.
    ok(
        &with_secrets(&["client", "create", "--phone", "79001234567", "--tag", "t"])
            .output()
            .expect("client"),
    );
    let created = json(
        &with_secrets(&["mailing", "create", "--tag", "t", "--text", "Hi", "--json"])
            .output()
            .expect("mailing"),
    );
    let id = created["id"].to_string();
    let log = std::fs::File::create(d.join("blast.log")).expect("log file");
    let mut up = with_secrets(&["up"]);
    up.env("BLAST_RETRY__BASE_DELAY_MS", "50")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log);
    let mut child = up.spawn().expect("blast up");
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        let rows = json(
            &with_secrets(&["mailing", "messages", &id, "--json"])
                .output()
                .expect("messages"),
        );
        if let Some(error) = rows[0]["last_error"].as_str() {
            break error.to_owned();
        }
        assert!(Instant::now() < deadline, "no send was tried: {rows}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    assert_clean("a message's error", &error);
    let logged = std::fs::read_to_string(d.join("blast.log")).expect("log");
    assert!(logged.contains("blast is up"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "no colour in a file");
    assert_clean("the log of blast up", &logged);

    // Connections that fail: the database, and Redis.
    let failed = with_deadline(
        with_secrets(&["migrate"])
            .env(
                "BLAST_DATABASE_URL",
                format!("postgres://blast:{MARK}-pg@127.0.0.1:9/blast"),
            )
            .env("BLAST_POOL__ACQUIRE_TIMEOUT_SECS", "1"),
        Duration::from_secs(60),
    );
    assert!(!failed.status.success());
    let said = printed(&failed);
    assert!(
        said.contains("postgres://blast:***@127.0.0.1:9/blast"),
        "{said}"
    );
    assert_clean("a failing database connection", &said);
    let redis = run_for(
        with_secrets(&["up", "--no-api"]).env(
            "BLAST_REDIS__URL",
            format!("redis://:{MARK}-redis@127.0.0.1:9/0"),
        ),
        Duration::from_secs(3),
    );
    let said = printed(&redis);
    assert!(
        said.contains("127.0.0.1:9"),
        "the failure is reported: {said}"
    );
    assert_clean("a failing Redis connection", &said);
}

/// `blast config secret-key` makes a key for `[secrets]`; `config show` hides it; `blast
/// secrets rotate` refuses to run without one and seals what is there with one.
#[test]
fn a_secrets_key_is_made_hidden_and_rotated_to() {
    let d = new_dir_with_user();
    let out = blast(d.path(), &["secrets", "rotate"]);
    assert_eq!(out.status.code(), Some(2), "no key: a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("secrets.key"));
    let made = ok(&blast(d.path(), &["config", "secret-key"]));
    let key = made
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a key line")
        .to_owned();
    std::fs::write(
        d.path().join("config.toml"),
        format!("[secrets]\nkey = \"{key}\"\n"),
    )
    .expect("config");
    let shown = ok(&blast(d.path(), &["config", "show"]));
    assert!(
        shown.contains("key = \"***\"") && !shown.contains(&key),
        "{shown}"
    );
    let rotated = ok(&blast(d.path(), &["secrets", "rotate"]));
    assert!(rotated.contains("0 tenant secret(s)"), "{rotated}");
    std::fs::write(
        d.path().join("config.toml"),
        "[secrets]\nkey = \"c2hvcnQ\"\n",
    )
    .expect("config");
    let out = blast(d.path(), &["config", "show"]);
    assert!(!out.status.success(), "a key of the wrong size is refused");
}

/// The help says what blast is, every option of the commands operators type most says what
/// it does, and the global flags stand apart from each command's own.
#[test]
fn the_help_explains_every_option() {
    let d = tempfile::tempdir().expect("tempdir");
    let top = ok(&blast(d.path(), &["--help"]));
    assert!(top.starts_with("blast: bulk messaging"), "{top}");
    for command in [
        &["mailing", "create"][..],
        &["mailing", "list"],
        &["client", "list"],
        &["client", "add"],
        &["notify"],
        &["stats"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = ok(&blast(d.path(), &args));
        let (own, global) = help
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("{command:?}: no global options heading\n{help}"));
        assert!(!own.contains("--database-url"), "{command:?}\n{help}");
        assert!(global.contains("--database-url"), "{command:?}\n{help}");
        let lines: Vec<&str> = help.lines().collect();
        let is_flag = |line: &str| {
            let flag = line.trim_start();
            flag.starts_with("--") || (flag.starts_with('-') && flag.contains(", --"))
        };
        for (i, line) in lines.iter().enumerate() {
            if !is_flag(line) {
                continue;
            }
            // "--flag <VALUE>   what it does", or the description on the next line (clap's
            // long layout).
            let beside = line
                .trim_start()
                .split_once("  ")
                .is_some_and(|(_, rest)| !rest.trim().is_empty());
            let below = lines
                .get(i + 1)
                .is_some_and(|next| !next.trim().is_empty() && !is_flag(next));
            assert!(beside || below, "{command:?}: {line:?} has no help text");
        }
    }
}

/// A `blast up` that is killed if the test fails before it stops it.
struct Daemon(Option<Child>);

impl Daemon {
    /// Stop it with SIGTERM, as an operator would, and return how it exited.
    fn stop(mut self) -> std::process::ExitStatus {
        stop(self.0.take().expect("running"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Start `blast up` in `dir` on a free port and wait until it answers; returns the process and
/// its base URL.
fn start_up(dir: &Path, envs: &[(&str, &str)]) -> (Daemon, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = blast_cmd(dir);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let child = Daemon(Some(
        cmd.args(["up", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("blast up"),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "blast up did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://{listen}"))
}

/// Poll `mailing show` until the mailing is in `state`.
fn wait_for_state(run: &dyn Fn(&[&str]) -> Output, id: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = json(&run(&["mailing", "show", id, "--json"]));
        if shown["state"] == state {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "mailing {id} never became {state}: {shown}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The mailing and webhook commands the API has, run through `run` (the local database, or a
/// server through its API): each must act and answer the same way.
fn mailing_and_webhook_commands(run: &dyn Fn(&[&str]) -> Output, tag: &str, phones: [&str; 2]) {
    for (phone, name) in phones.iter().zip(["Anna", "Boris"]) {
        ok(&run(&[
            "client", "create", "--phone", phone, "--name", name, "--tag", tag,
        ]));
    }
    // A webhook first, so that the mailing's events are owed to it.
    let out = ok(&run(&["webhook", "create", "http://127.0.0.1:9/hook"]));
    let secret = out.lines().last().unwrap_or_default().to_owned();
    assert!(
        secret.starts_with("whsec_"),
        "the secret is shown once: {out}"
    );
    let hooks = json(&run(&["webhook", "list", "--json"]));
    let hook_id = hooks[0]["id"].to_string();
    assert_eq!(hooks[0]["url"], "http://127.0.0.1:9/hook");
    assert!(!hooks.to_string().contains(&secret), "never again: {hooks}");

    // Preview: the audience, and the text as its first client gets it.
    let preview = json(&run(&[
        "mailing",
        "preview",
        "--channel",
        "log",
        "--tag",
        tag,
        "--text",
        "Hi {{ name }}",
        "--json",
    ]));
    assert_eq!(preview["recipients"], 2, "{preview}");
    assert_eq!(preview["sample"]["text"], "Hi Anna", "{preview}");
    let preview = ok(&run(&[
        "mailing",
        "preview",
        "--channel",
        "log",
        "--tag",
        tag,
        "--text",
        "Hi {{ nickname }}",
    ]));
    assert!(
        preview.contains("nickname"),
        "a sample that cannot render names the variable: {preview}"
    );
    let count_before = json(&run(&["mailing", "list", "--json"]))
        .as_array()
        .map_or(0, Vec::len);

    // A mailing that runs to the end, and its messages page by page.
    let done = json(&run(&[
        "mailing",
        "create",
        "--channel",
        "log",
        "--tag",
        tag,
        "--text",
        "Hi {{ name }}",
        "--json",
    ]));
    assert_eq!(
        json(&run(&["mailing", "list", "--json"]))
            .as_array()
            .map_or(0, Vec::len),
        count_before + 1,
        "a preview creates nothing"
    );
    let id = done["id"].to_string();
    wait_for_state(run, &id, "done");
    let sent = json(&run(&[
        "mailing", "messages", &id, "--state", "sent", "--json",
    ]));
    assert_eq!(sent.as_array().map_or(0, Vec::len), 2, "{sent}");
    assert!(
        sent.as_array()
            .into_iter()
            .flatten()
            .all(|m| m["state"] == "sent")
    );
    let first = json(&run(&[
        "mailing", "messages", &id, "--limit", "1", "--json",
    ]));
    assert_eq!(first.as_array().map_or(0, Vec::len), 1);
    let rest = json(&run(&[
        "mailing",
        "messages",
        &id,
        "--after",
        &first[0]["id"].to_string(),
        "--json",
    ]));
    assert_eq!(rest.as_array().map_or(0, Vec::len), 1);
    assert_ne!(rest[0]["id"], first[0]["id"]);
    let none = json(&run(&[
        "mailing",
        "messages",
        &id,
        "--state",
        "failed_permanent",
        "--json",
    ]));
    assert_eq!(none, serde_json::json!([]));
    let out = run(&["mailing", "messages", &id, "--state", "lost"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown state is a usage error"
    );
    let table = ok(&run(&["mailing", "messages", &id]));
    assert!(
        table.contains("sent") && table.contains(phones[0]),
        "{table}"
    );
    let out = ok(&run(&["mailing", "retry-failed", &id]));
    assert!(out.contains("0 failed messages"), "{out}");

    // Pause and resume: a mailing that runs but waits for its recipients' sending hours.
    let hour = (chrono::Utc::now() + chrono::Duration::hours(3))
        .format("%H")
        .to_string();
    let hours = format!("{hour}:00-{hour}:30");
    let waiting = json(&run(&[
        "mailing",
        "create",
        "--channel",
        "log",
        "--tag",
        tag,
        "--text",
        "Later",
        "--local-hours",
        &hours,
        "--json",
    ]));
    let wid = waiting["id"].to_string();
    wait_for_state(run, &wid, "running");
    let out = ok(&run(&["mailing", "pause", &wid]));
    assert!(out.contains("paused"), "{out}");
    assert_eq!(
        json(&run(&["mailing", "show", &wid, "--json"]))["state"],
        "paused"
    );
    let out = run(&["mailing", "pause", &wid]);
    assert_eq!(out.status.code(), Some(2), "pausing twice is a 409");
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"));
    ok(&run(&["mailing", "resume", &wid]));
    assert_eq!(
        json(&run(&["mailing", "show", &wid, "--json"]))["state"],
        "running"
    );
    ok(&run(&["mailing", "cancel", &wid]));

    // The webhook is owed the mailing's events; then it is forgotten.
    let deliveries = json(&run(&["webhook", "deliveries", &hook_id, "--json"]));
    assert!(
        deliveries
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["payload"]["type"] == "mailing" && d["payload"]["mailing_id"] == done["id"]),
        "{deliveries}"
    );
    let table = ok(&run(&["webhook", "deliveries", &hook_id]));
    assert!(table.contains("mailing"), "{table}");
    ok(&run(&["webhook", "delete", &hook_id]));
    assert_eq!(
        json(&run(&["webhook", "list", "--json"])),
        serde_json::json!([])
    );
    let out = run(&["webhook", "deliveries", &hook_id]);
    assert_eq!(out.status.code(), Some(2), "a webhook that is gone: 404");
    let out = run(&["webhook", "create", "ftp://127.0.0.1/hook"]);
    assert_eq!(out.status.code(), Some(2), "not an http(s) URL");

    // A mailing replaced before its start, then deleted.
    let later = json(&run(&[
        "mailing",
        "create",
        "--tag",
        tag,
        "--text",
        "Old",
        "--start",
        "2030-01-01T00:00:00Z",
        "--json",
    ]));
    let lid = later["id"].to_string();
    ok(&run(&[
        "mailing",
        "update",
        &lid,
        "--tag",
        tag,
        "--text",
        "New {{ name }}",
        "--start",
        "2030-02-01T00:00:00Z",
    ]));
    let shown = json(&run(&["mailing", "show", &lid, "--json"]));
    assert_eq!(shown["text"], "New {{ name }}", "{shown}");
    let out = run(&["mailing", "update", &id, "--tag", tag, "--text", "Too late"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a mailing that ran cannot be replaced"
    );
    ok(&run(&["mailing", "delete", &lid]));
    let out = run(&["mailing", "show", &lid]);
    assert_eq!(out.status.code(), Some(2), "deleted: not found");

    // A notification followed, and the client's own preferences.
    let client = json(&run(&["client", "list", "--tag", tag, "--json"]))[0]["id"].to_string();
    let sent = json(&run(&[
        "notify",
        "--client",
        &client,
        "--title",
        "Order shipped",
        "--json",
    ]));
    let shown = json(&run(&[
        "notification",
        "show",
        &sent["id"].to_string(),
        "--json",
    ]));
    assert_eq!(shown["id"], sent["id"]);
    assert_eq!(shown["events"][0]["title"], "Order shipped");
    let table = ok(&run(&["notification", "show", &sent["id"].to_string()]));
    assert!(table.contains("Order shipped"), "{table}");
    let prefs = json(&run(&[
        "notification",
        "preferences",
        &client,
        "--channels",
        "email,sms",
        "--quiet-hours",
        "22:00-07:00",
        "--json",
    ]));
    assert_eq!(
        prefs["channels"],
        serde_json::json!(["email", "sms"]),
        "{prefs}"
    );
    assert_eq!(prefs["quiet_hours"], "22:00-07:00");
    let prefs = json(&run(&[
        "notification",
        "preferences",
        &client,
        "--no-quiet-hours",
        "--json",
    ]));
    assert_eq!(
        prefs["channels"],
        serde_json::json!(["email", "sms"]),
        "kept: {prefs}"
    );
    assert_eq!(prefs["quiet_hours"], serde_json::Value::Null);
    let out = run(&[
        "notification",
        "preferences",
        &client,
        "--channels",
        "pigeon",
    ]);
    assert_eq!(out.status.code(), Some(2), "an unknown channel");

    // A browser's push subscription, listed and forgotten.
    // A P-256 public key as a browser sends it: the public half of a fresh key pair.
    let browser_key = blast::channels::VapidKeys::generate().public_key;
    ok(&run(&[
        "push",
        "create",
        &client,
        "--endpoint",
        "http://127.0.0.1:9/push/1",
        "--p256dh",
        &browser_key,
        "--auth",
        "AAAAAAAAAAAAAAAAAAAAAA",
    ]));
    let subscriptions = json(&run(&["push", "list", &client, "--json"]));
    assert_eq!(
        subscriptions[0]["endpoint"], "http://127.0.0.1:9/push/1",
        "{subscriptions}"
    );
    ok(&run(&[
        "push",
        "delete",
        &subscriptions[0]["id"].to_string(),
    ]));
    assert_eq!(
        json(&run(&["push", "list", &client, "--json"])),
        serde_json::json!([])
    );
    let out = run(&[
        "push",
        "create",
        &client,
        "--endpoint",
        "http://127.0.0.1:9/push/2",
        "--p256dh",
        "bad",
        "--auth",
        "AAAAAAAAAAAAAAAAAAAAAA",
    ]);
    assert_eq!(out.status.code(), Some(2), "keys that are no P-256 point");
}

#[test]
fn every_mailing_and_webhook_command_acts_locally_and_through_the_api() {
    let dir = new_dir_with_user();
    let envs = [
        ("BLAST_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true"),
        ("BLAST_WEBHOOKS__ALLOW_LOOPBACK_HTTP", "true"),
        ("BLAST_WEBPUSH__ALLOW_PRIVATE_ADDRESSES", "true"),
        ("BLAST_WEBPUSH__ALLOW_LOOPBACK_HTTP", "true"),
    ];
    let (up, url) = start_up(dir.path(), &envs);
    let local = |args: &[&str]| {
        let mut cmd = blast_cmd(dir.path());
        cmd.envs(envs).args(args);
        with_deadline(&mut cmd, Duration::from_secs(60))
    };
    mailing_and_webhook_commands(&local, "here", ["79001110001", "79001110002"]);
    let token = ok(&blast(dir.path(), &["token", "create", "alice"]))
        .trim()
        .to_owned();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let remote = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "--token", token.as_str()];
        full.extend_from_slice(args);
        blast(elsewhere.path(), &full)
    };
    mailing_and_webhook_commands(&remote, "there", ["79001110003", "79001110004"]);
    assert!(!elsewhere.path().join("blast.db").exists());
    assert!(up.stop().success());
}

#[test]
fn tokens_are_listed_expire_and_are_revoked() {
    let dir = new_dir_with_user();
    let forever = ok(&blast(
        dir.path(),
        &["token", "create", "alice", "--label", "ci"],
    ));
    let hour = ok(&blast(
        dir.path(),
        &[
            "token",
            "create",
            "alice",
            "--label",
            "trial",
            "--expires-in",
            "1h",
        ],
    ));
    let listed = json(&blast(dir.path(), &["token", "list", "alice", "--json"]));
    let tokens = listed.as_array().expect("a list");
    assert_eq!(tokens.len(), 2, "{listed}");
    assert_eq!(tokens[0]["label"], "ci");
    assert!(tokens[0]["expires_at"].is_null());
    let expires = tokens[1]["expires_at"].as_i64().expect("an expiry");
    let in_an_hour = chrono::Utc::now().timestamp_millis() + 3_600_000;
    assert!(
        (expires - in_an_hour).abs() < 60_000,
        "{expires} vs {in_an_hour}"
    );
    for token in [&forever, &hour] {
        assert!(
            !listed.to_string().contains(token.trim()),
            "a token is never shown again"
        );
    }
    let table = ok(&blast(dir.path(), &["token", "list", "alice"]));
    assert!(
        table.contains("trial") && table.contains("never"),
        "{table}"
    );

    // A revoked token stops working (the cache is off here, so at once).
    let (up, url) = start_up(dir.path(), &[("BLAST_API__TOKEN_CACHE_SECS", "0")]);
    let list_with = |token: &str| {
        blast(
            dir.path(),
            &["--server", &url, "--token", token.trim(), "client", "list"],
        )
    };
    ok(&list_with(&forever));
    let id = tokens[0]["id"].to_string();
    let out = ok(&blast(dir.path(), &["token", "revoke", "alice", &id]));
    assert!(out.contains("revoked"), "{out}");
    let out = list_with(&forever);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    ok(&list_with(&hour));
    let listed = json(&blast(dir.path(), &["token", "list", "alice", "--json"]));
    assert_eq!(listed.as_array().map_or(0, Vec::len), 1);
    let out = blast(dir.path(), &["token", "revoke", "alice", &id]);
    assert_eq!(out.status.code(), Some(2), "revoked already: not found");
    assert!(up.stop().success());

    for bad in ["0d", "5", "5x", "-1h", "99999999999w"] {
        let out = blast(
            dir.path(),
            &["token", "create", "alice", "--expires-in", bad],
        );
        assert_eq!(out.status.code(), Some(2), "--expires-in {bad}");
    }
}

/// The README's command reference names every command the binary has.
#[test]
fn the_readme_lists_every_command() {
    use clap::CommandFactory;
    let readme = include_str!("../../README.md");
    let reference = readme
        .split_once("### Command reference")
        .and_then(|(_, rest)| rest.split_once("\n### "))
        .map(|(section, _)| section)
        .expect("README has a command reference section");
    let mut missing = Vec::new();
    for group in blast_cli::Cli::command().get_subcommands() {
        let name = group.get_name();
        if name == "help" {
            continue;
        }
        let rows: Vec<&str> = reference
            .lines()
            .filter(|line| line.contains(&format!("`blast {name}")))
            .collect();
        if rows.is_empty() {
            missing.push(name.to_owned());
        }
        for sub in group.get_subcommands() {
            let sub_name = sub.get_name();
            let named = |row: &&str| {
                row.contains(&format!("`blast {name} {sub_name}"))
                    || row.contains(&format!("`{sub_name}`"))
                    || row.contains(&format!("`{sub_name} "))
            };
            if sub_name != "help" && !rows.iter().any(named) {
                missing.push(format!("{name} {sub_name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in the README's command reference: {missing:?}"
    );
}

/// Phones as people type them: E.164 with or without the plus, the national 8… form, spaces,
/// dashes and brackets, other countries too; each is stored once, in one form, and the
/// Russian operator code is derived as before.
#[test]
fn phones_are_taken_as_people_type_them() {
    let dir = new_dir_with_user();
    let d = dir.path();
    for (typed, stored, operator) in [
        ("+7 900 111-22-33", "79001112233", "900"),
        ("8 (916) 111 22 34", "79161112234", "916"),
        ("79991112235", "79991112235", "999"),
        ("+44 20 7946 0958", "442079460958", ""),
    ] {
        ok(&blast(d, &["client", "create", "--phone", typed]));
        let all = json(&blast(d, &["client", "list", "--json"]));
        let client = all
            .as_array()
            .and_then(|list| list.last())
            .expect("the new client");
        assert_eq!(client["phone"], stored, "{typed}");
        assert_eq!(client["operator_code"], operator, "{typed}");
    }
    let out = blast(d, &["client", "create", "--phone", "89001112233"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the same number, typed another way"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    std::fs::write(
        d.join("typed.csv"),
        "phone,name\n+7 900 222-33-44,Anna\n8 900 222 33 45,Boris\n+44 20 7946,Short\n",
    )
    .expect("csv");
    let out = blast(d, &["client", "import", "typed.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 4: invalid phone \"+44 20 7946\""),
        "{stderr}"
    );
    ok(&blast(
        d,
        &["client", "import", "typed.csv", "--skip-invalid"],
    ));
    let listed = json(&blast(
        d,
        &["client", "list", "--operator", "900", "--json"],
    ));
    let phones: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["phone"].as_str())
        .collect();
    assert_eq!(phones, ["79001112233", "79002223344", "79002223345"]);
}
