//! Benchmarks of cimg-importd: speed, footprint and API economy, against the bundled
//! simulator on loopback, with a fresh database in a temporary directory per scenario.
//!
//! ```text
//! cargo run --release --example bench -- SCENARIO
//! ```
//!
//! where SCENARIO is `throughput`, `latency-bound`, `poll-scale`, `idle`, `pickup`,
//! `history-scale` or `all`. The daemon runs as the release binary in a child process
//! (built first if needed), so that its CPU time, wake-ups and memory can be read from
//! `/proc` apart from the simulator's; the simulator runs in this process. The output is
//! one table: each figure, its target where the issue sets one, and whether it is met.
//! `BENCHMARKS.md` explains each scenario and keeps the latest figures.

#[path = "bench/daemon.rs"]
mod daemon;
#[path = "bench/figures.rs"]
mod figures;
#[path = "bench/history.rs"]
mod history;
#[path = "bench/idle.rs"]
mod idle;
#[path = "bench/pickup.rs"]
mod pickup;
#[path = "bench/poll_scale.rs"]
mod poll_scale;
#[path = "bench/procfs.rs"]
mod procfs;
#[path = "bench/seed.rs"]
mod seed;
#[path = "bench/throughput.rs"]
mod throughput;

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};

use figures::Figure;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 10,000 rows queued at once; no added latency; quick jobs.
    Throughput,
    /// 2,000 rows with 50 ms added to every API call; default concurrency.
    LatencyBound,
    /// 100,000 jobs in flight in three regions; two full poll rounds.
    PollScale,
    /// No work for a minute, then 1,000 jobs at the slowest poll interval for a minute.
    Idle,
    /// 200 single-row INSERTs at random moments; time to the ImportCIMG call.
    Pickup,
    /// 100,000 finished requests and 1,000,000 history rows.
    HistoryScale,
    /// Every scenario above, in that order.
    All,
}

const EVERY: [Scenario; 6] = [
    Scenario::Throughput,
    Scenario::LatencyBound,
    Scenario::PollScale,
    Scenario::Idle,
    Scenario::Pickup,
    Scenario::HistoryScale,
];

/// Benchmarks of cimg-importd against the bundled simulator.
#[derive(Debug, Parser)]
struct Args {
    /// Which scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    if let Err(err) = daemon::binary() {
        eprintln!("bench: {err:#}");
        return ExitCode::FAILURE;
    }
    println!("machine: {}", procfs::machine());
    println!("commit:  {}", commit());
    println!("load average at start (1/5/15 min): {}", procfs::load());
    println!();

    let chosen: Vec<Scenario> = match args.scenario {
        Scenario::All => EVERY.to_vec(),
        one => vec![one],
    };
    let mut figures = Vec::new();
    let mut failed = false;
    for scenario in chosen {
        let name = scenario
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        println!("== {name}: load before {}", procfs::load());
        let began = Instant::now();
        match run(scenario).await {
            Ok(found) => figures.extend(found),
            Err(err) => {
                eprintln!("bench: {name} failed: {err:#}");
                failed = true;
            }
        }
        println!(
            "== {name}: {:.0} s, load after {}\n",
            began.elapsed().as_secs_f64(),
            procfs::load()
        );
    }
    print!("{}", figures::table(&figures));
    println!(
        "\nrun time {:.0} s; load average at end: {}",
        started.elapsed().as_secs_f64(),
        procfs::load()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(scenario: Scenario) -> anyhow::Result<Vec<Figure>> {
    match scenario {
        Scenario::Throughput => throughput::throughput().await,
        Scenario::LatencyBound => throughput::latency_bound().await,
        Scenario::PollScale => poll_scale::poll_scale().await,
        Scenario::Idle => idle::idle().await,
        Scenario::Pickup => pickup::pickup().await,
        Scenario::HistoryScale => history::history_scale().await,
        Scenario::All => unreachable!("expanded by the caller"),
    }
}

/// The commit measured, marked when the work tree has changes on top of it.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head} with uncommitted changes"),
        _ => head,
    }
}
