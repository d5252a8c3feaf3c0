//! `history-scale`: a database a year of heavy use leaves behind, 100,000 finished
//! requests and 1,000,000 history rows, and how fast the operator's reads, the daemon's
//! own questions and the daemon's start-up stay on it.
//!
//! Each timing is repeated; the table shows the median and the slowest. The daemon's
//! statements are timed through the store functions that run them, on a warm connection,
//! as in the running daemon; `EXPLAIN QUERY PLAN` of each is printed above the table.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cimg_importd::config::DatabaseSettings;
use cimg_importd::store::{self, Store};
use cimg_importd::validate;

use crate::daemon::{self, Daemon};
use crate::figures::{number, Figure};
use crate::seed;

const S: &str = "history-scale";

/// Finished requests.
const REQUESTS: usize = 100_000;

/// History rows per request (`queued` and nine more): a million in all.
const EVENTS_PER_REQUEST: usize = 10;

/// Repeats of each timing.
const REPEATS: usize = 10;

/// Start-ups timed.
const STARTS: usize = 3;

/// The request `show` is timed on: one in the middle.
const SHOWN_ID: i64 = REQUESTS as i64 / 2;

pub async fn history_scale() -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("imports.db");
    seed::create_database(&db).await?;
    let operator = seed::operator(&db).await?;
    let seeding = Instant::now();
    seed::finished_history(&operator, REQUESTS, EVENTS_PER_REQUEST).await?;
    let (requests, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM import_requests), (SELECT count(*) FROM events)",
    )
    .fetch_one(&operator)
    .await?;
    operator.close().await;
    let mut figures = vec![Figure::info(
        S,
        "database",
        format!(
            "{requests} requests, {events} history rows, {:.0} MiB, seeded in {:.1} s",
            crate::throughput::database_bytes(&db) as f64 / 1048576.0,
            seeding.elapsed().as_secs_f64()
        ),
    )];

    figures.extend(operator_reads(&db).await?);
    let store = Store::open(&settings(&db)).await?;
    figures.extend(daemon_queries(&store).await?);
    figures.push(plans_use_indexes(&store).await?);
    store.close().await;
    figures.extend(start_ups(&db)?);
    Ok(figures)
}

fn settings(db: &Path) -> DatabaseSettings {
    DatabaseSettings {
        path: db.to_owned(),
        ..DatabaseSettings::default()
    }
}

/// Whether this build's binary has the operator's `list` subcommand.
fn cli_has_list() -> bool {
    daemon::binary()
        .ok()
        .and_then(|binary| {
            std::process::Command::new(binary)
                .args(["list", "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
        })
        .is_some_and(|status| status.success())
}

/// `list --limit 100` and `show ID`: the binary's own subcommands, whole processes, when
/// this build has them; otherwise the store functions behind them (`Store::status(100)`
/// and `Store::history(ID)`), each on a fresh connection.
async fn operator_reads(db: &Path) -> anyhow::Result<Vec<Figure>> {
    let (how, list, show) = if cli_has_list() {
        let run = |args: Vec<String>| {
            let db = db.to_owned();
            async move {
                let mut command = daemon::command(&db, "http://127.0.0.1:9", &[])?;
                let status = command.args(&args).stdout(Stdio::null()).status()?;
                anyhow::ensure!(status.success(), "`{}` failed: {status}", args.join(" "));
                Ok(())
            }
        };
        let list = timings(|| run(vec!["list".into(), "--limit".into(), "100".into()])).await?;
        let show = timings(|| run(vec!["show".into(), SHOWN_ID.to_string()])).await?;
        (
            "the binary's `list --limit 100` / `show ID`, whole process",
            list,
            show,
        )
    } else {
        let list = timings(|| async {
            let store = Store::open(&settings(db)).await?;
            let rows = store.status(100).await?;
            anyhow::ensure!(rows.len() == 100, "status gave {} rows", rows.len());
            store.close().await;
            Ok(())
        })
        .await?;
        let show = timings(|| async {
            let store = Store::open(&settings(db)).await?;
            let rows = store.history(SHOWN_ID).await?;
            anyhow::ensure!(
                rows.len() == EVENTS_PER_REQUEST,
                "history gave {}",
                rows.len()
            );
            store.close().await;
            Ok(())
        })
        .await?;
        ("no `list` subcommand in this build: Store::status(100) / Store::history(ID), fresh connection", list, show)
    };
    Ok(vec![
        Figure::info(S, "operator reads timed as", how),
        Figure::under(S, "list --limit 100 (slowest)", max(&list), 50.0, "ms"),
        Figure::info(
            S,
            "list --limit 100 (median)",
            format!("{} ms", number(median(&list))),
        ),
        Figure::under(S, "show ID (slowest)", max(&show), 50.0, "ms"),
        Figure::info(
            S,
            "show ID (median)",
            format!("{} ms", number(median(&show))),
        ),
    ])
}

/// The daemon's own questions, each through the store function that asks it.
async fn daemon_queries(store: &Store) -> anyhow::Result<Vec<Figure>> {
    let horizon = Duration::from_secs(2);
    let unowned = vec!["f".repeat(32)];
    let mut figures = Vec::new();
    let mut add = |name: &str, times: Vec<f64>| {
        figures.push(Figure::info(
            S,
            &format!("daemon query {name}"),
            format!(
                "median {} ms, slowest {} ms",
                number(median(&times)),
                number(max(&times))
            ),
        ));
    };
    add(
        "claim_due",
        timings(|| async {
            store
                .claim_due(8, |fields| validate::check(fields, &[]))
                .await
                .map(drop)
        })
        .await?,
    );
    add(
        "next_queued_in",
        timings(|| async { store.next_queued_in().await.map(drop) }).await?,
    );
    add(
        "due_regions",
        timings(|| async { store.due_regions(horizon).await.map(drop) }).await?,
    );
    add(
        "due_jobs",
        timings(|| async { store.due_jobs("gz", horizon, None, 400).await.map(drop) }).await?,
    );
    add(
        "next_job_due_in",
        timings(|| async { store.next_job_due_in().await.map(drop) }).await?,
    );
    add(
        "in_doubt_due",
        timings(|| async { store.in_doubt_due(50).await.map(drop) }).await?,
    );
    add(
        "next_in_doubt_in",
        timings(|| async { store.next_in_doubt_in().await.map(drop) }).await?,
    );
    add(
        "owned_images",
        timings(|| async { store.owned_images(&unowned).await.map(drop) }).await?,
    );
    Ok(figures)
}

/// Prints the plan of every hot statement; the figure says whether all use an index.
async fn plans_use_indexes(store: &Store) -> anyhow::Result<Figure> {
    println!(
        "EXPLAIN QUERY PLAN of the hot statements ({} requests, {} events):",
        REQUESTS,
        REQUESTS * EVENTS_PER_REQUEST
    );
    let mut unindexed = Vec::new();
    for (name, sql) in store::hot_queries() {
        let plan = store.query_plan(sql).await?;
        println!("  {name}:");
        for line in &plan {
            println!("    {line}");
        }
        if plan.iter().any(|line| is_table_scan(line, sql)) {
            unindexed.push(*name);
        }
    }
    println!();
    let holds = unindexed.is_empty();
    let mut figure = Figure::holds(
        S,
        "every hot query on an index",
        holds,
        "no full table scan",
    );
    if !holds {
        figure.value = format!("no: {}", unindexed.join(", "));
    }
    Ok(figure)
}

/// A plan line reading a whole table (by name or alias) without an index; the rows a batch
/// statement brings along (`WITH o (...) AS (VALUES ...)`), the steps of a `WITH RECURSIVE`
/// walk and constant rows are not tables.
fn is_table_scan(line: &str, sql: &str) -> bool {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let own_rows: Vec<&str> = words
        .windows(3)
        .filter(|words| words[0] == "WITH")
        .map(|words| {
            if words[1] == "RECURSIVE" {
                words[2]
            } else {
                words[1]
            }
        })
        .collect();
    line.trim().strip_prefix("SCAN ").is_some_and(|rest| {
        let subject = rest.split_whitespace().next().unwrap_or_default();
        !rest.contains(" USING ") && !rest.contains("CONSTANT ROW") && !own_rows.contains(&subject)
    })
}

/// Time from starting `cimg-importd run` on the big database to it saying it is ready.
fn start_ups(db: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut times = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let daemon = tokio::task::block_in_place(|| Daemon::start(db, "http://127.0.0.1:9", &[]))?;
        times.push(daemon.ready_after.as_secs_f64() * 1000.0);
        tokio::task::block_in_place(|| daemon.stop())?;
    }
    times.sort_by(f64::total_cmp);
    Ok(vec![
        Figure::under(S, "start-up to ready (slowest)", max(&times), 1000.0, "ms"),
        Figure::info(
            S,
            "start-up to ready (median)",
            format!("{} ms", number(median(&times))),
        ),
    ])
}

/// `REPEATS` timings of `op`, in milliseconds.
async fn timings<F, Fut>(mut op: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let started = Instant::now();
        op().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn median(sorted: &[f64]) -> f64 {
    crate::figures::quantile(sorted, 0.5)
}

fn max(sorted: &[f64]) -> f64 {
    sorted.last().copied().unwrap_or(f64::NAN)
}
