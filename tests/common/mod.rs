//! Shared set-up for the integration tests: a simulator on a loopback port, a fresh SQLite
//! file in a temporary directory, and the daemon running in-process against both.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use cimg_importd::config::{Settings, Token};
use cimg_importd::service;
use cimg_importd::simulator::{SimOptions, Simulator, Stats};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "9a609744ad675e8fbfcdbf14511b24e6ddd6b427b4d256969534a81d0773f4d7";

/// A source image uuid the simulator accepts.
pub const ORIGIN_UUID: &str = "4a48f88391134a01befe88ff98b68af8";

/// One test's world: its directory, database, simulator and settings.
pub struct World {
    pub dir: tempfile::TempDir,
    pub simulator: Simulator,
    pub settings: Settings,
    /// An operator's own connection, separate from the daemon's.
    pub operator: SqlitePool,
}

/// A daemon started in-process; stop it with [`Daemon::stop`].
pub struct Daemon {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("daemon task panicked")
            .expect("daemon failed");
    }
}

impl World {
    /// A simulator with `sim` options and a migrated database, with settings quick enough
    /// for tests (1 s first poll, 2 s at most between polls).
    pub async fn new(sim: SimOptions) -> World {
        let dir = tempfile::tempdir().expect("temporary directory");
        let simulator = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimOptions {
                token: Some(TOKEN.into()),
                ..sim
            },
        )
        .await
        .expect("simulator starts");
        let mut settings = Settings::default();
        settings.database.path = dir.path().join("imports.db");
        settings.api.base_url = simulator.base_url();
        settings.api.request_timeout = Duration::from_secs(5);
        settings.poll.initial_interval = Duration::from_secs(1);
        settings.poll.max_interval = Duration::from_secs(2);
        settings.queue.retry_initial = Duration::from_millis(200);
        settings.queue.retry_max = Duration::from_secs(1);
        settings.service.shutdown_grace = Duration::from_secs(5);
        settings.queue.pause_probe_interval = Duration::from_millis(500);
        settings.reconcile.interval = Duration::from_millis(200);
        settings.reconcile.grace = Duration::from_secs(1);
        drop(
            service::open_store(&settings)
                .await
                .expect("database migrates"),
        );
        let operator = operator_pool(&settings.database.path).await;
        World {
            dir,
            simulator,
            settings,
            operator,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.settings.database.path.clone()
    }

    /// Starts the daemon in-process with the world's settings.
    pub fn start(&self) -> Daemon {
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(service::run(
            self.settings.clone(),
            Token::new(TOKEN).unwrap(),
            shutdown,
        ));
        Daemon { stop, task }
    }

    /// Queues a request with only the four API fields, as an operator would; returns its id.
    pub async fn insert(&self, region: &str, name: &str, origin_region: &str) -> i64 {
        self.insert_raw(region, name, ORIGIN_UUID, origin_region)
            .await
    }

    pub async fn insert_raw(
        &self,
        region: &str,
        name: &str,
        origin_uuid: &str,
        origin_region: &str,
    ) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id)
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(region)
        .bind(name)
        .bind(origin_uuid)
        .bind(origin_region)
        .fetch_one(&self.operator)
        .await
        .expect("insert")
    }

    pub async fn state(&self, id: i64) -> String {
        sqlx::query_scalar("SELECT state FROM import_requests WHERE id = ?")
            .bind(id)
            .fetch_one(&self.operator)
            .await
            .expect("state")
    }

    pub async fn count_in(&self, state: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM import_requests WHERE state = ?")
            .bind(state)
            .fetch_one(&self.operator)
            .await
            .expect("count")
    }

    pub async fn unfinished(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM import_requests
             WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'cancelled')",
        )
        .fetch_one(&self.operator)
        .await
        .expect("count")
    }

    /// Waits until every request has ended, or panics after `limit`.
    pub async fn wait_all_ended(&self, limit: Duration) {
        let left = wait_for(limit, || async { self.unfinished().await == 0 }).await;
        assert!(
            left,
            "requests still unfinished after {limit:?}: {}",
            self.unfinished().await
        );
    }

    /// Event kinds of one request, in order.
    pub async fn history_kinds(&self, id: i64) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT kind FROM request_history WHERE request_id = ? ORDER BY event_id",
        )
        .bind(id)
        .fetch_all(&self.operator)
        .await
        .expect("history")
    }

    pub fn stats(&self) -> Stats {
        self.simulator.stats()
    }

    /// A text column of one request.
    pub async fn column(&self, id: i64, column: &str) -> Option<String> {
        sqlx::query_scalar(&format!("SELECT {column} FROM request_status WHERE id = ?"))
            .bind(id)
            .fetch_one(&self.operator)
            .await
            .expect("column")
    }

    /// The real binary, configured through the environment like a systemd unit would be,
    /// against this world's database and simulator.
    pub fn binary(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cimg-importd"));
        let s = &self.settings;
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CIMG_IMPORTD_TOKEN", TOKEN)
            .env("CIMG_IMPORTD__DATABASE__PATH", &s.database.path)
            .env("CIMG_IMPORTD__API__BASE_URL", &s.api.base_url)
            .env(
                "CIMG_IMPORTD__API__REQUEST_TIMEOUT",
                secs(s.api.request_timeout),
            )
            .env(
                "CIMG_IMPORTD__POLL__INITIAL_INTERVAL",
                secs(s.poll.initial_interval),
            )
            .env(
                "CIMG_IMPORTD__POLL__MAX_INTERVAL",
                secs(s.poll.max_interval),
            )
            .env(
                "CIMG_IMPORTD__QUEUE__RETRY_INITIAL",
                secs(s.queue.retry_initial),
            )
            .env("CIMG_IMPORTD__QUEUE__RETRY_MAX", secs(s.queue.retry_max))
            .env(
                "CIMG_IMPORTD__QUEUE__PAUSE_PROBE_INTERVAL",
                secs(s.queue.pause_probe_interval),
            )
            .env(
                "CIMG_IMPORTD__RECONCILE__INTERVAL",
                secs(s.reconcile.interval),
            )
            .env("CIMG_IMPORTD__RECONCILE__GRACE", secs(s.reconcile.grace))
            .env(
                "CIMG_IMPORTD__SERVICE__SHUTDOWN_GRACE",
                secs(s.service.shutdown_grace),
            )
            .stdin(std::process::Stdio::null());
        command
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
}

/// A second connection to the database, as an operator's sqlite3 would have.
pub async fn operator_pool(path: &std::path::Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("operator connection")
}

/// Polls `check` every 50 ms until it is true (returns true) or `limit` passes (false).
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
