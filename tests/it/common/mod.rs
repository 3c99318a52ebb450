//! Test harness: a fresh database per test, fast settings, a worker started in-process with
//! an injected shutdown, and helpers to seed clients and wait for conditions.
//!
//! `BLAST_TEST_PROFILE=production` runs the same tests on the production profile: a new
//! PostgreSQL database per test (on `BLAST_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`) and a new Redis key prefix per test (on
//! `BLAST_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). Otherwise: a temporary SQLite file.

pub mod api_client;

use blast::domain::ChannelKind;
use blast::ids::MailingId;
use blast::settings::{Secret, Settings};
use blast::store::{Mailing, NewMailing, Store};
use blast_testkit::fixtures;
use std::future::Future;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.test.jwt";

pub struct TestDb {
    pub dir: TempDir,
    pub url: String,
    /// Set on the production profile.
    pub redis_url: Option<String>,
    /// This test's own Redis key prefix.
    pub redis_prefix: String,
    pub store: Store,
    /// The same database on a connection of the test's own, as an operator's `psql` or
    /// `sqlite3` sees it: for reading (and arranging) rows the store has no call for. The
    /// store keeps its own pool to itself.
    pub sql: sqlx::AnyPool,
    pub tenant: blast::ids::TenantId,
}

/// Whether this run tests the production profile (PostgreSQL + Redis).
pub fn production_profile() -> bool {
    std::env::var("BLAST_TEST_PROFILE").is_ok_and(|p| p == "production")
}

pub fn test_redis_url() -> String {
    std::env::var("BLAST_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Create an empty PostgreSQL database for one test and return its URL. Test databases are
/// named `blast_test_*`; scripts/test drops those left by earlier runs.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let server = std::env::var("BLAST_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!(
        "blast_test_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to PostgreSQL (is it running? scripts/services starts it)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_profile(production_profile()).await
    }

    pub async fn with_profile(production: bool) -> TestDb {
        // Logs go to the test's captured output; RUST_LOG=debug shows more.
        blast::telemetry::init(blast::settings::LogFormat::Text, "warn");
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, redis_url) = if production {
            (fresh_postgres_database().await, Some(test_redis_url()))
        } else {
            (
                format!("sqlite://{}", dir.path().join("blast.db").display()),
                None,
            )
        };
        let redis_prefix = format!("blast-test-{:016x}", rand::random::<u64>());
        // Every suite runs with tenant secrets sealed, as production should.
        let key = blast::store::SecretKeys::generate();
        let store = Store::open(&url)
            .await
            .expect("open store")
            .with_secret_keys(blast::store::SecretKeys::new(&key, &[]).expect("key"));
        let tenant = store
            .add_user("tester", "correct horse battery")
            .await
            .expect("user")
            .id;
        let sql = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("a connection of the test's own");
        TestDb {
            dir,
            url,
            redis_url,
            redis_prefix,
            store,
            sql,
            tenant,
        }
    }

    /// Settings tuned for tests: short intervals and leases, fast retries.
    pub fn settings(&self, sms_base_url: &str) -> Settings {
        let mut s = Settings {
            database_url: self.url.clone(),
            ..Settings::default()
        };
        s.worker.batch_size = 50;
        s.worker.queue_watermark = 4;
        s.worker.pump_interval_ms = 20;
        s.worker.schedule_interval_ms = 50;
        s.worker.reconcile_interval_ms = 200;
        s.worker.cancel_check_interval_ms = 50;
        s.retry.base_delay_ms = 20;
        s.retry.max_delay_ms = 200;
        s.retry.max_attempts = 8;
        s.sms.base_url = sms_base_url.to_owned();
        s.sms.token = Secret::new(TOKEN);
        s.sms.timeout_ms = 300;
        s.sms.max_in_flight = 16;
        s.log_channel.max_in_flight = 16;
        s.log_channel.path = self.dir.path().join("deliveries.jsonl");
        if let Some(redis) = &self.redis_url {
            s.redis.url = Secret::new(redis.clone());
            s.redis.key_prefix = self.redis_prefix.clone();
        }
        s
    }

    /// `n` clients with phones 7900000000x.., named "c{i}", tagged `tag`.
    pub async fn seed_clients(&self, n: usize, tag: &str) {
        self.seed_clients_from("79", "c", n, tag).await;
    }

    /// `n` clients with phones `{phone_prefix}100000000`.. (11 digits in all), named
    /// "{name_prefix}{i}", tagged `tag`.
    pub async fn seed_clients_from(
        &self,
        phone_prefix: &str,
        name_prefix: &str,
        n: usize,
        tag: &str,
    ) {
        let clients = fixtures::numbered_clients(phone_prefix, name_prefix, n, tag);
        self.store
            .import_clients(self.tenant, &clients, |_| {})
            .await
            .expect("seed clients");
    }

    pub async fn mailing(&self, text: &str, tag: &str, start_at: i64, end_at: i64) -> Mailing {
        self.create_mailing(fixtures::mailing_to_tag(
            ChannelKind::Sms,
            text,
            tag,
            start_at,
            end_at,
        ))
        .await
    }

    /// Create `new` as the API and the CLI would (its checks included), with room for 4096
    /// characters of text.
    pub async fn create_mailing(&self, new: NewMailing) -> Mailing {
        blast::app::mailings::create(
            &self.store,
            self.tenant,
            new,
            blast::template::TextLimits::with_default_budget(4096),
        )
        .await
        .expect("create mailing")
    }
}

pub use blast_testkit::fixtures::RunningWorker;

/// Poll `check` every 20 ms until it is true; panic with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ids of every message row in `state`.
pub async fn ids_in_state(db: &TestDb, state: &str) -> std::collections::HashSet<i64> {
    use sqlx::Row;
    sqlx::query("SELECT id FROM messages WHERE state = $1")
        .bind(state)
        .fetch_all(&db.sql)
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The state of mailing `id`, as the store has it.
pub async fn mailing_state(db: &TestDb, id: MailingId) -> blast::domain::MailingState {
    db.store
        .mailing(db.tenant, id)
        .await
        .expect("mailing")
        .state
}

/// Wait until mailing `id` is done (or cancelled); panic after `limit`.
pub async fn wait_done(db: &TestDb, id: MailingId, limit: Duration) {
    use blast::domain::MailingState;
    wait_until(limit, "the mailing to finish", || async {
        matches!(
            mailing_state(db, id).await,
            MailingState::Done | MailingState::Cancelled
        )
    })
    .await;
}

pub fn now_ms() -> i64 {
    blast::now_ms()
}

/// The real HTTP API on 127.0.0.1:0 until dropped.
pub struct ApiServer {
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl ApiServer {
    pub async fn start(store: &Store, settings: Settings) -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(blast::api::serve(
            listener,
            store.clone(),
            settings,
            async move {
                let _ = rx.await;
            },
        ));
        ApiServer {
            base,
            http: reqwest::Client::new(),
            stop: Some(tx),
        }
    }

    /// Another handle on the same server (it does not stop it).
    pub fn detached(&self) -> ApiServer {
        ApiServer {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            stop: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
