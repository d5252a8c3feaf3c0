//! `pickup`: how soon a row an operator inserts reaches the API.
//!
//! 200 single-row INSERTs, each its own transaction on the harness's own connection, at
//! random moments (gaps uniform between 0 and 300 ms), against a daemon with the default
//! `queue.scan_interval`. The time of a row is from its INSERT's commit returning to the
//! simulator first counting an import of its name; the simulator's counters are read every
//! millisecond, which bounds the resolution.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cimg_importd::config::QueueSettings;
use cimg_importd::simulator::{SimOptions, Simulator};
use rand::Rng;

use crate::daemon::Daemon;
use crate::figures::{number, quantile, Figure};
use crate::procfs;
use crate::seed::{self, ORIGIN_UUID};

const S: &str = "pickup";

/// Rows inserted.
const INSERTS: usize = 200;

/// Longest gap between two inserts.
const MAX_GAP: Duration = Duration::from_millis(300);

/// Longest wait for the last row to reach the simulator.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(30);

pub async fn pickup() -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("imports.db");
    seed::create_database(&db).await?;
    let simulator =
        Arc::new(Simulator::start("127.0.0.1:0".parse()?, SimOptions::default()).await?);
    let daemon = tokio::task::block_in_place(|| Daemon::start(&db, &simulator.base_url(), &[]))?;
    let operator = seed::operator(&db).await?;

    let watcher = tokio::spawn(watch_arrivals(Arc::clone(&simulator)));
    let before = procfs::sample(daemon.pid())?;
    let mut committed = HashMap::with_capacity(INSERTS);
    for n in 0..INSERTS {
        let gap = rand::rng().random_range(Duration::ZERO..=MAX_GAP);
        tokio::time::sleep(gap).await;
        let name = format!("pickup-{n}");
        sqlx::query(
            "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id)
             VALUES (?, ?, ?, 'hb')",
        )
        .bind(seed::region_of(n))
        .bind(&name)
        .bind(ORIGIN_UUID)
        .execute(&operator)
        .await?;
        committed.insert(name, Instant::now());
    }
    let arrived = watcher.await??;
    let after = procfs::sample(daemon.pid())?;
    let claims = claim_delays_ms(&operator).await?;
    tokio::task::block_in_place(|| daemon.stop())?;
    operator.close().await;

    let mut latencies: Vec<f64> = committed
        .iter()
        .filter_map(|(name, at)| {
            arrived
                .get(name)
                .map(|seen| ms(seen.saturating_duration_since(*at)))
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let scan = QueueSettings::default().scan_interval;
    let cpu = procfs::delta(&before, &after);
    Ok(vec![
        Figure::info(
            S,
            "rows that reached the API",
            format!("{} of {INSERTS}", latencies.len()),
        ),
        Figure::info(
            S,
            "commit to ImportCIMG: p50",
            format!("{} ms", number(quantile(&latencies, 0.5))),
        ),
        Figure::under(
            S,
            "commit to ImportCIMG: p99",
            quantile(&latencies, 0.99),
            ms(scan) + 100.0,
            "ms",
        ),
        Figure::info(
            S,
            "commit to ImportCIMG: max",
            format!(
                "{} ms",
                number(latencies.last().copied().unwrap_or(f64::NAN))
            ),
        ),
        Figure::info(
            S,
            "insert to claim (database clock): p50 / p99",
            format!(
                "{} / {} ms",
                number(quantile(&claims, 0.5)),
                number(quantile(&claims, 0.99))
            ),
        ),
        Figure::info(
            S,
            "daemon CPU per minute meanwhile",
            format!("{} s", number(cpu.per_minute(cpu.cpu_s))),
        ),
    ])
}

/// Reads the simulator's import counts every millisecond and notes when each name first
/// appears, until `INSERTS` have or `ARRIVAL_LIMIT` passes after the first.
async fn watch_arrivals(simulator: Arc<Simulator>) -> anyhow::Result<HashMap<String, Instant>> {
    let mut seen = HashMap::with_capacity(INSERTS);
    let mut deadline: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while seen.len() < INSERTS {
        tick.tick().await;
        let now = Instant::now();
        for count in simulator.stats().imports {
            seen.entry(count.name).or_insert(now);
        }
        let deadline = *deadline.get_or_insert(now + ARRIVAL_LIMIT + MAX_GAP * INSERTS as u32);
        if now >= deadline {
            eprintln!(
                "bench: only {} of {INSERTS} rows reached the API",
                seen.len()
            );
            break;
        }
    }
    Ok(seen)
}

/// For every row, milliseconds from its `created_at` to its first `submitting` event, by
/// the database's clock; sorted.
async fn claim_delays_ms(pool: &sqlx::SqlitePool) -> anyhow::Result<Vec<f64>> {
    let mut delays: Vec<f64> = sqlx::query_scalar(
        "SELECT (julianday(min(e.at)) - julianday(r.created_at)) * 86400000.0
         FROM import_requests AS r JOIN events AS e ON e.request_id = r.id
         WHERE e.kind = 'submitting'
         GROUP BY r.id",
    )
    .fetch_all(pool)
    .await?;
    delays.sort_by(f64::total_cmp);
    Ok(delays)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
