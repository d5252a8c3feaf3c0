//! `throughput` and `latency-bound`: many rows queued at once, every one submitted and
//! tracked to its end.
//!
//! The rows go in with one INSERT while the daemon runs. Rates and durations come from
//! the timestamps the daemon itself wrote: the rows' `created_at` (the insert), the
//! `submitting` events (claims) and `submitted` events (answers recorded), and the rows'
//! final `updated_at`.

use std::time::{Duration, Instant};

use anyhow::Context;
use cimg_importd::config::QueueSettings;
use cimg_importd::simulator::{Faults, SimOptions, Simulator, Stats};
use sqlx::SqlitePool;

use crate::daemon::Daemon;
use crate::figures::{number, Figure};
use crate::{procfs, seed};

/// Rows of `throughput`.
const THROUGHPUT_ROWS: usize = 10_000;

/// `queue.concurrency` of the main `throughput` run. With no latency the in-flight limit
/// hardly bounds anything; what is measured is the daemon's own cost per request, spread
/// over bigger steps. The run at the default (8) is reported beside it.
const THROUGHPUT_CONCURRENCY: usize = 64;

/// Rows of `latency-bound`: at the expected ~160 submissions per second, about 13 s.
const LATENCY_ROWS: usize = 2_000;

/// Latency the simulator adds to every call in `latency-bound`.
const LATENCY_MS: u64 = 50;

/// Jobs end this long after they are created: before their first check at the default
/// `poll.initial_interval` (10 s).
const JOB_DURATION: Duration = Duration::from_secs(2);

/// Longest a run may take before it is abandoned (and its figures reported as they are).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// What one run measured.
struct Run {
    rows: usize,
    times: Timestamps,
    stats: Stats,
    db_bytes: u64,
    cpu: procfs::Delta,
    hwm_kib: u64,
}

/// What the daemon's own timestamps say about a run.
#[derive(sqlx::FromRow)]
struct Timestamps {
    submitted: i64,
    succeeded: i64,
    /// Seconds from the first claim to the last answer recorded.
    submit_span_s: f64,
    /// Seconds from the insert to the first claim.
    pickup_s: f64,
    /// Seconds from the insert to the last request's end.
    ended_s: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.times.submitted as f64 / self.times.submit_span_s.max(1e-3)
    }
}

/// `throughput`: 10,000 rows, no added latency, jobs ending in 2 s; at
/// [`THROUGHPUT_CONCURRENCY`] calls in flight, then at the default.
pub async fn throughput() -> anyhow::Result<Vec<Figure>> {
    const S: &str = "throughput";
    let concurrency = THROUGHPUT_CONCURRENCY.to_string();
    let run = submit_all(
        THROUGHPUT_ROWS,
        0,
        &[("QUEUE__CONCURRENCY", concurrency.clone())],
    )
    .await?;
    let mut figures = vec![
        Figure::info(S, "queue.concurrency", concurrency),
        Figure::at_least(S, "submissions per second", run.rate(), 2000.0, "/s"),
        Figure::under(
            S,
            "first insert to every request ended",
            run.times.ended_s,
            15.0,
            "s",
        ),
    ];
    figures.extend(common_figures(S, &run));

    let default = QueueSettings::default().concurrency;
    let at_default = submit_all(THROUGHPUT_ROWS, 0, &[]).await?;
    figures.extend([
        Figure::info(
            S,
            &format!("at the default queue.concurrency ({default}): submissions per second"),
            format!("{} /s", number(at_default.rate())),
        ),
        Figure::info(
            S,
            &format!("at the default queue.concurrency ({default}): every request ended"),
            format!("{:.1} s after the first insert", at_default.times.ended_s),
        ),
        Figure::info(
            S,
            &format!("at the default queue.concurrency ({default}): daemon CPU time"),
            format!(
                "{:.2} s over {:.1} s",
                at_default.cpu.cpu_s,
                at_default.cpu.wall.as_secs_f64()
            ),
        ),
    ]);
    Ok(figures)
}

/// `latency-bound`: 2,000 rows with 50 ms added to every call, default concurrency.
pub async fn latency_bound() -> anyhow::Result<Vec<Figure>> {
    const S: &str = "latency-bound";
    let run = submit_all(LATENCY_ROWS, LATENCY_MS, &[]).await?;
    let concurrency = QueueSettings::default().concurrency as f64;
    let ceiling = concurrency / (LATENCY_MS as f64 / 1000.0);
    let share = run.rate() / ceiling * 100.0;
    let mut figures = vec![
        Figure::info(
            S,
            "submissions per second",
            format!("{} /s", number(run.rate())),
        ),
        Figure::info(
            S,
            "in-flight limit / latency",
            format!("{concurrency} / {LATENCY_MS} ms = {} /s", number(ceiling)),
        ),
        Figure::at_least(S, "share of the ceiling", share, 80.0, "%"),
        Figure::info(
            S,
            "first insert to every request ended",
            format!("{:.1} s", run.times.ended_s),
        ),
    ];
    figures.extend(common_figures(S, &run));
    Ok(figures)
}

fn common_figures(scenario: &'static str, run: &Run) -> Vec<Figure> {
    let calls = &run.stats.calls;
    let min_polls: u64 = ["gz", "bj", "sh"]
        .iter()
        .map(|region| {
            let jobs = (0..run.rows)
                .filter(|n| seed::region_of(*n) == *region)
                .count();
            jobs.div_ceil(100) as u64
        })
        .sum();
    vec![
        Figure::info(
            scenario,
            "insert to first claim",
            format!("{:.2} s", run.times.pickup_s),
        ),
        Figure::info(
            scenario,
            "requests succeeded",
            format!("{} of {}", run.times.succeeded, run.rows),
        ),
        Figure::holds(
            scenario,
            "no image imported twice",
            run.stats.max_imports_per_name() == 1 && run.stats.total_imports() == run.rows as u64,
            "one import per request",
        ),
        Figure::info(
            scenario,
            "API calls: ImportCIMG / JobResult / ListCIMG",
            format!("{} / {} / {}", calls.import, calls.job_result, calls.list),
        ),
        Figure::info(
            scenario,
            "JobResult calls if every job were asked once",
            format!("{min_polls} (batches of 100 per region)"),
        ),
        Figure::info(
            scenario,
            "database size per request",
            format!("{:.0} bytes", run.db_bytes as f64 / run.rows as f64),
        ),
        Figure::info(
            scenario,
            "daemon CPU time",
            format!(
                "{:.2} s over {:.1} s",
                run.cpu.cpu_s,
                run.cpu.wall.as_secs_f64()
            ),
        ),
        Figure::info(
            scenario,
            "daemon CPU time by thread",
            run.cpu.cpu_by_thread(),
        ),
        Figure::info(
            scenario,
            "daemon peak RSS",
            format!("{:.1} MiB", run.hwm_kib as f64 / 1024.0),
        ),
    ]
}

/// Queues `rows` rows at once with the daemon running (with `overrides` to its settings)
/// and waits until all have ended.
async fn submit_all(
    rows: usize,
    latency_ms: u64,
    overrides: &[(&str, String)],
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("imports.db");
    seed::create_database(&db).await?;
    let options = SimOptions {
        job_duration: JOB_DURATION,
        faults: Faults {
            latency_ms,
            ..Faults::default()
        },
        ..SimOptions::default()
    };
    let simulator = Simulator::start("127.0.0.1:0".parse()?, options).await?;
    let base_url = simulator.base_url();
    let daemon = tokio::task::block_in_place(|| Daemon::start(&db, &base_url, overrides))?;
    let operator = seed::operator(&db).await?;

    let before = procfs::sample(daemon.pid())?;
    seed::queue_rows(&operator, rows, "bench").await?;
    wait_until_all_ended(&operator, RUN_LIMIT).await?;
    let after = procfs::sample(daemon.pid())?;
    tokio::task::block_in_place(|| daemon.stop())?;

    let times = read_timestamps(&operator).await?;
    operator.close().await;
    let stats = simulator.stats();
    simulator.shutdown().await;
    Ok(Run {
        rows,
        times,
        stats,
        db_bytes: database_bytes(&db),
        cpu: procfs::delta(&before, &after),
        hwm_kib: after.hwm_kib,
    })
}

/// Polls every 100 ms until no request is left unfinished, or `limit` passes.
pub async fn wait_until_all_ended(pool: &SqlitePool, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM import_requests
             WHERE state IN ('queued', 'submitting', 'submitted', 'in_doubt')",
        )
        .fetch_one(pool)
        .await?;
        if open == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!("bench: {open} requests still open after {limit:?}; reporting as is");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_timestamps(pool: &SqlitePool) -> anyhow::Result<Timestamps> {
    sqlx::query_as(
        "WITH
           inserted AS (SELECT julianday(min(created_at)) AS at FROM import_requests),
           claims AS (SELECT julianday(min(at)) AS first FROM events WHERE kind = 'submitting'),
           answers AS (SELECT count(*) AS n, julianday(max(at)) AS last
                       FROM events WHERE kind = 'submitted')
         SELECT answers.n AS submitted,
                (SELECT count(*) FROM import_requests WHERE state = 'succeeded') AS succeeded,
                (answers.last - claims.first) * 86400.0 AS submit_span_s,
                (claims.first - inserted.at) * 86400.0 AS pickup_s,
                ((SELECT julianday(max(updated_at)) FROM import_requests) - inserted.at)
                    * 86400.0 AS ended_s
         FROM inserted, claims, answers",
    )
    .fetch_one(pool)
    .await
    .context("reading the run's timestamps")
}

/// The database file and its WAL, if one is left.
pub fn database_bytes(db: &std::path::Path) -> u64 {
    let size = |suffix: &str| {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        std::fs::metadata(path).map_or(0, |m| m.len())
    };
    size("") + size("-wal")
}
