//! `poll-scale`: 100,000 jobs in flight at once, in three regions, all due together.
//!
//! The jobs are created in the simulator (long ones, so none ends) and recorded in the
//! database as if the daemon had submitted them all at one instant a few seconds ahead,
//! which is also when they are first due; the daemon starts meanwhile with the default
//! poll settings. Round 1 is every job's first check; round 2 is the next one, when the
//! schedule brings the jobs due again (at 10 s of age). A round lasts from the moment its
//! jobs are due to the last `last_checked_at` it wrote; its calls are the simulator's
//! JobResult log within that time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cimg_importd::config::PollSettings;
use cimg_importd::simulator::{SimOptions, Simulator};
use sqlx::SqlitePool;

use crate::daemon::Daemon;
use crate::figures::Figure;
use crate::procfs;
use crate::seed::{self, TrackedJob};

const S: &str = "poll-scale";

/// Jobs per region.
const JOBS: [(&str, usize); 3] = [("gz", 40_000), ("bj", 35_000), ("sh", 25_000)];

/// Simulated jobs take this long, so that none ends during the run and every answer
/// shows progress (and so a history row per job per round).
const JOB_DURATION: Duration = Duration::from_secs(6 * 3600);

/// The jobs are created, and first due, this long after seeding: time enough for the
/// daemon to start, so that round 1 is timed from the moment its jobs are due.
const FIRST_DUE: Duration = Duration::from_secs(10);

/// Longest one round may take before the run is abandoned.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

/// What one round measured.
struct Round {
    wall_s: f64,
    cpu: procfs::Delta,
    calls: u64,
    asked: u64,
}

pub async fn poll_scale() -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("imports.db");
    seed::create_database(&db).await?;
    let options = SimOptions {
        job_duration: JOB_DURATION,
        ..SimOptions::default()
    };
    let simulator = Simulator::start("127.0.0.1:0".parse()?, options).await?;
    let operator = seed::operator(&db).await?;
    let seeding = std::time::Instant::now();
    seed::track_jobs(&operator, &simulator.base_url(), &jobs()).await?;
    let seeded_in = seeding.elapsed();

    let first_due = next_round_start(&operator).await?;
    let daemon = tokio::task::block_in_place(|| Daemon::start(&db, &simulator.base_url(), &[]))?;
    anyhow::ensure!(
        unix_ms() < first_due,
        "the daemon started after its jobs were due"
    );
    let first = measure_round(&operator, &simulator, &daemon, first_due).await?;
    let second_due = next_round_start(&operator).await?;
    let second = measure_round(&operator, &simulator, &daemon, second_due).await?;
    let hwm_kib = procfs::sample(daemon.pid())?.hwm_kib;
    tokio::task::block_in_place(|| daemon.stop())?;
    operator.close().await;
    simulator.shutdown().await;

    let batch = PollSettings::default().batch_size;
    let jobs = per_region();
    let minimum: u64 = jobs.iter().map(|(_, n)| n.div_ceil(batch) as u64).sum();
    let total: u64 = jobs.iter().map(|(_, n)| *n as u64).sum();
    let mut figures = vec![Figure::info(
        S,
        "jobs in flight (gz / bj / sh)",
        format!(
            "{total} ({} / {} / {}), seeded in {:.1} s",
            jobs[0].1,
            jobs[1].1,
            jobs[2].1,
            seeded_in.as_secs_f64()
        ),
    )];
    for (label, round) in [("round 1", &first), ("round 2", &second)] {
        figures.push(Figure::equal(
            S,
            &format!("{label}: JobResult calls"),
            round.calls,
            minimum,
        ));
        figures.push(Figure::info(
            S,
            &format!("{label}: jobs asked about"),
            format!("{} of {total}", round.asked),
        ));
        figures.push(Figure::under(
            S,
            &format!("{label}: wall time"),
            round.wall_s,
            5.0,
            "s",
        ));
        figures.push(Figure::info(
            S,
            &format!("{label}: daemon CPU time"),
            format!("{:.2} s ({})", round.cpu.cpu_s, round.cpu.cpu_by_thread()),
        ));
    }
    figures.push(Figure::under(
        S,
        "daemon peak RSS",
        hwm_kib as f64 / 1024.0,
        64.0,
        "MiB",
    ));
    Ok(figures)
}

/// Jobs per region: [`JOBS`], or `BENCH_POLL_JOBS` in all (for a profile of a smaller
/// round) in the same proportions.
fn per_region() -> [(&'static str, usize); 3] {
    let total: usize = JOBS.iter().map(|(_, n)| n).sum();
    let wanted = std::env::var("BENCH_POLL_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(total);
    JOBS.map(|(region, n)| (region, n * wanted / total))
}

fn jobs() -> Vec<TrackedJob> {
    per_region()
        .into_iter()
        .flat_map(|(region, count)| {
            (0..count).map(move |n| TrackedJob {
                region,
                name: format!("{region}-scale-{n}"),
                age_s: -FIRST_DUE.as_secs_f64(),
                due_in_s: FIRST_DUE.as_secs_f64(),
            })
        })
        .collect()
}

/// Measures the round that starts at `due_at` (Unix ms), waiting for it.
async fn measure_round(
    pool: &SqlitePool,
    simulator: &Simulator,
    daemon: &Daemon,
    due_at: u64,
) -> anyhow::Result<Round> {
    let cutoff: String =
        sqlx::query_scalar("SELECT max(next_check_at) FROM jobs WHERE finished_at IS NULL")
            .fetch_one(pool)
            .await?;
    tokio::time::sleep(Duration::from_millis(due_at.saturating_sub(unix_ms()))).await;
    let start_ms = due_at;
    let before = procfs::sample(daemon.pid())?;
    wait_until_checked(pool, &cutoff).await?;
    let after = procfs::sample(daemon.pid())?;
    let end_ms: i64 = sqlx::query_scalar(
        "SELECT CAST((julianday(max(last_checked_at)) - 2440587.5) * 86400000.0 AS INTEGER)
         FROM jobs",
    )
    .fetch_one(pool)
    .await?;
    let end_ms = end_ms as u64;
    let calls: Vec<_> = simulator
        .stats()
        .job_result_calls
        .into_iter()
        .filter(|call| (start_ms..=end_ms).contains(&call.at_ms))
        .collect();
    Ok(Round {
        wall_s: end_ms.saturating_sub(start_ms) as f64 / 1000.0,
        cpu: procfs::delta(&before, &after),
        calls: calls.len() as u64,
        asked: calls.iter().map(|call| call.asked).sum(),
    })
}

/// Waits until no open job is due at or before `cutoff` any more: each was checked and
/// given its next time.
async fn wait_until_checked(pool: &SqlitePool, cutoff: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + ROUND_LIMIT;
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE finished_at IS NULL AND next_check_at <= ?",
        )
        .bind(cutoff)
        .fetch_one(pool)
        .await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{left} jobs still unchecked after {ROUND_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When the earliest open job is next due, in Unix ms.
async fn next_round_start(pool: &SqlitePool) -> anyhow::Result<u64> {
    let at: i64 = sqlx::query_scalar(
        "SELECT CAST((julianday(min(next_check_at)) - 2440587.5) * 86400000.0 AS INTEGER)
         FROM jobs WHERE finished_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(at as u64)
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
