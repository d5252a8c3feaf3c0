//! `idle`: what the daemon costs when it has nothing to do, and when it only watches
//! 1,000 long jobs at the slowest poll interval.
//!
//! Each phase starts a fresh daemon, lets it settle, then reads its `/proc` figures at the
//! start and end of a one-minute window. In the second phase the jobs are a day old (so
//! at `poll.max_interval`, 5 min by default) and their next checks are spread evenly over
//! the next 5 minutes, as they are for jobs queued at random moments: the window sees a
//! fifth of them checked.

use std::time::Duration;

use cimg_importd::config::PollSettings;
use cimg_importd::schedule;
use cimg_importd::simulator::{SimOptions, Simulator};

use crate::daemon::Daemon;
use crate::figures::{number, Figure};
use crate::procfs;
use crate::seed::{self, TrackedJob};

const S: &str = "idle";

/// Time after start-up before measuring.
const SETTLE: Duration = Duration::from_secs(3);

/// Length of each measured window.
const WINDOW: Duration = Duration::from_secs(60);

/// Jobs of the second phase.
const JOBS: usize = 1_000;

/// Jobs last long enough never to end during the run.
const JOB_DURATION: Duration = Duration::from_secs(6 * 3600);

pub async fn idle() -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("imports.db");
    seed::create_database(&db).await?;
    let options = SimOptions {
        job_duration: JOB_DURATION,
        ..SimOptions::default()
    };
    let simulator = Simulator::start("127.0.0.1:0".parse()?, options).await?;

    let mut figures = Vec::new();
    let empty = measure(&db, &simulator).await?;
    figures.push(Figure::under(
        S,
        "no work: CPU per minute",
        empty.cpu_per_minute(),
        0.05,
        "s",
    ));
    figures.extend(empty.context_figures("no work"));
    figures.push(Figure::under(
        S,
        "no work: RSS",
        empty.rss_mib(),
        20.0,
        "MiB",
    ));

    let operator = seed::operator(&db).await?;
    seed::track_jobs(&operator, &simulator.base_url(), &slow_jobs()).await?;
    operator.close().await;
    let calls_before = simulator.stats().job_result_calls.len();
    let watching = measure(&db, &simulator).await?;
    let calls = simulator.stats().job_result_calls.len() - calls_before;
    let label = "1,000 jobs";
    figures.push(Figure::info(
        S,
        &format!("{label}: CPU per minute"),
        format!("{} s", number(watching.cpu_per_minute())),
    ));
    figures.extend(watching.context_figures(label));
    let per_minute = calls as f64 * 60.0 / watching.delta.wall.as_secs_f64();
    let poll = PollSettings::default();
    let checks_per_minute = JOBS as f64 * 60.0 / poll.max_interval.as_secs_f64();
    let least = (checks_per_minute / poll.batch_size as f64).ceil();
    figures.push(Figure::info(
        S,
        &format!("{label}: JobResult calls per minute"),
        format!(
            "{} (fewest possible: {})",
            number(per_minute),
            number(least)
        ),
    ));
    figures.push(Figure::under(
        S,
        &format!("{label}: RSS"),
        watching.rss_mib(),
        20.0,
        "MiB",
    ));
    simulator.shutdown().await;
    Ok(figures)
}

/// A one-minute window of one daemon.
struct Window {
    delta: procfs::Delta,
    rss_kib: u64,
}

impl Window {
    fn cpu_per_minute(&self) -> f64 {
        self.delta.per_minute(self.delta.cpu_s)
    }

    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    fn context_figures(&self, label: &str) -> Vec<Figure> {
        let d = &self.delta;
        let by_thread: Vec<String> = d
            .wakeups_by_thread
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| format!("{name} {}", number(d.per_minute(*n as f64))))
            .collect();
        vec![
            Figure::info(
                S,
                &format!("{label}: CPU per minute from stat ticks"),
                format!("{} s", number(d.per_minute(d.cpu_ticks_s))),
            ),
            Figure::info(
                S,
                &format!("{label}: wake-ups per minute"),
                format!(
                    "{} (and {} preemptions)",
                    number(d.per_minute(d.wakeups as f64)),
                    number(d.per_minute(d.involuntary as f64))
                ),
            ),
            Figure::info(
                S,
                &format!("{label}: wake-ups by thread"),
                by_thread.join(", "),
            ),
        ]
    }
}

async fn measure(db: &std::path::Path, simulator: &Simulator) -> anyhow::Result<Window> {
    let daemon = tokio::task::block_in_place(|| Daemon::start(db, &simulator.base_url(), &[]))?;
    tokio::time::sleep(SETTLE).await;
    let before = procfs::sample(daemon.pid())?;
    tokio::time::sleep(WINDOW).await;
    let after = procfs::sample(daemon.pid())?;
    tokio::task::block_in_place(|| daemon.stop())?;
    Ok(Window {
        delta: procfs::delta(&before, &after),
        rss_kib: after.rss_kib,
    })
}

/// Jobs a day old, at the slowest interval, due evenly over the next `max_interval`.
fn slow_jobs() -> Vec<TrackedJob> {
    let poll = PollSettings::default();
    let max = poll.max_interval.as_secs_f64();
    // The first checkpoint of the job's life past one day, by the daemon's own schedule.
    let mut day_point = Duration::ZERO;
    while day_point < Duration::from_secs(86_400) {
        day_point += schedule::next_check_in(
            day_point,
            poll.initial_interval,
            poll.max_interval,
            Duration::ZERO,
        );
    }
    let day_point = day_point.as_secs_f64();
    (0..JOBS)
        .map(|n| {
            let due_in_s = (n as f64 + 0.5) * max / JOBS as f64;
            TrackedJob {
                region: seed::region_of(n),
                name: format!("slow-{n}"),
                age_s: day_point - due_in_s,
                due_in_s,
            }
        })
        .collect()
}
