//! `cimg-importd demo`: the whole path on real input, for a newcomer. A simulator on a free
//! loopback port, a fresh database in a directory it names, six requests queued with plain
//! SQL (one while the daemon already runs, one that the simulator fails), the daemon run
//! until every request has ended, and the tables an operator would read.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Token};
use crate::report;
use crate::service;
use crate::simulator::{SimOptions, Simulator};
use crate::store::Store;

/// Longest the demo waits for every request to end before it gives up.
const DEADLINE: Duration = Duration::from_secs(120);

/// Options of `cimg-importd demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo's database; must not hold one already. Default: a new
    /// directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// How long each simulated image copy takes.
    #[arg(long, value_name = "DURATION", default_value = "6s", value_parser = humantime::parse_duration)]
    pub job_duration: Duration,
}

/// The requests the demo queues before the daemon starts: (target region, name, source
/// image uuid, source region, description). A name containing `fail` makes the simulator
/// end its job in failure.
const QUEUED_FIRST: [(&str, &str, &str, &str, Option<&str>); 5] = [
    (
        "gz",
        "web-frontend-2026-12",
        "4a48f88391134a01befe88ff98b68af8",
        "bj",
        Some("nginx 1.26 + app release 2026.12"),
    ),
    (
        "gz",
        "mysql-replica-base",
        "9c1d0e2f3a4b5c6d7e8f90a1b2c3d4e5",
        "bj",
        None,
    ),
    (
        "bj",
        "ci-runner-ubuntu-24.04",
        "0b7e6d5c4b3a29180f1e2d3c4b5a6978",
        "gz",
        Some("CI runner, docker 27"),
    ),
    (
        "bj",
        "redis-7-cache",
        "5f4e3d2c1b0a99887766554433221100",
        "gz",
        None,
    ),
    (
        "gz",
        "legacy-erp-failover",
        "aa11bb22cc33dd44ee55ff6677889900",
        "bj",
        Some("ERP standby image"),
    ),
];

/// Queued by a second connection once the daemon runs, as an operator would.
const QUEUED_LATER: (&str, &str, &str, &str, Option<&str>) = (
    "bj",
    "grafana-monitoring-2026-12",
    "c0ffee00c0ffee00c0ffee00c0ffee00",
    "gz",
    None,
);

/// Runs the demo and prints what an operator would look at.
///
/// # Errors
///
/// The directory cannot be created, the simulator cannot start, or the requests do not
/// all end within two minutes.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("cimg-importd-demo-{}", unique_suffix())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let db_path = dir.join("imports.db");
    anyhow::ensure!(
        !db_path.exists(),
        "`{}` already exists: the demo needs a fresh database, choose another --dir",
        db_path.display()
    );

    let token_text = random_token();
    let simulator = Simulator::start(
        "127.0.0.1:0".parse()?,
        SimOptions {
            token: Some(token_text.clone()),
            job_duration: args.job_duration,
            job_spread: args.job_duration / 2,
            ..SimOptions::default()
        },
    )
    .await
    .context("cannot start the simulator")?;

    let settings = demo_settings(&dir, &simulator.base_url());
    println!("demo directory:   {}", dir.display());
    println!("database:         {}", db_path.display());
    println!("simulated API:    {}", simulator.base_url());
    println!();

    let store = service::open_store(&settings).await?;
    println!("queueing requests with plain SQL, as an operator would with sqlite3:");
    for request in QUEUED_FIRST {
        queue(&store, request).await?;
    }

    let stop = CancellationToken::new();
    let daemon = tokio::spawn(service::run(
        settings,
        Token::new(&token_text)?,
        stop.clone().cancelled_owned(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!("\nqueueing one more while the daemon runs:");
    queue(&store, QUEUED_LATER).await?;
    println!();

    let finished = wait_until_all_ended(&store).await;
    stop.cancel();
    daemon.await.context("the daemon task failed")??;
    finished?;

    print_results(&store, &db_path).await?;
    store.close().await;
    simulator.shutdown().await;
    Ok(())
}

fn demo_settings(dir: &std::path::Path, base_url: &str) -> Settings {
    let mut settings = Settings::default();
    settings.database.path = dir.join("imports.db");
    settings.api.base_url = base_url.to_owned();
    settings.poll.initial_interval = Duration::from_secs(1);
    settings.poll.max_interval = Duration::from_secs(2);
    settings.service.shutdown_grace = Duration::from_secs(5);
    settings
}

async fn queue(
    store: &Store,
    request: (&str, &str, &str, &str, Option<&str>),
) -> anyhow::Result<()> {
    let (region, name, origin_uuid, origin_region, description) = request;
    let description_sql = description.map_or("NULL".to_owned(), |d| format!("'{d}'"));
    println!(
        "  INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id, description) \
         VALUES ('{region}', '{name}', '{origin_uuid}', '{origin_region}', {description_sql});"
    );
    sqlx::query(
        "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id, description)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(region)
    .bind(name)
    .bind(origin_uuid)
    .bind(origin_region)
    .bind(description)
    .execute(store.pool())
    .await
    .context("cannot queue a demo request")?;
    Ok(())
}

async fn wait_until_all_ended(store: &Store) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    loop {
        let unfinished = store.count_unfinished().await?;
        if unfinished == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < DEADLINE,
            "{unfinished} requests still unfinished after {}s",
            DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn print_results(store: &Store, db_path: &std::path::Path) -> anyhow::Result<()> {
    let mut rows = store.status(100).await?;
    rows.reverse();
    println!("\nevery request has ended. SELECT * FROM request_status:\n");
    print!("{}", report::status_table(&rows));

    let shown = rows
        .iter()
        .find(|row| row.state == "succeeded")
        .or(rows.first());
    if let Some(row) = shown {
        println!("\nthe story of request {} ({}). SELECT * FROM request_history WHERE request_id = {}:\n", row.id, row.name, row.id);
        print!("{}", report::history_table(&store.history(row.id).await?));
    }

    let db = db_path.display();
    let failed = rows
        .iter()
        .find(|row| row.state == "failed")
        .map_or(1, |row| row.id);
    println!("\nlook further with sqlite3:");
    println!("  sqlite3 -header -column {db} 'SELECT * FROM request_status'");
    println!(
        "  sqlite3 -header -column {db} 'SELECT at, kind, state, progress, detail \
         FROM request_history WHERE request_id = {failed}'"
    );
    println!(
        "  sqlite3 -header -column {db} \"SELECT * FROM request_status WHERE state = 'failed'\""
    );
    println!("  sqlite3 -header -column {db} 'SELECT * FROM jobs'");
    println!("or with the CLI (installed, or as `cargo run --release --` here):");
    println!("  CIMG_IMPORTD__DATABASE__PATH={db} cimg-importd list");
    println!("  CIMG_IMPORTD__DATABASE__PATH={db} cimg-importd show {failed}");
    Ok(())
}

fn unique_suffix() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{seconds}-{}", std::process::id())
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
