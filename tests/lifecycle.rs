//! The main path, end to end: rows inserted by an operator are imported through the
//! simulator over loopback HTTP, tracked to their end and recorded in a real SQLite file.

mod common;

use std::time::{Duration, Instant};

use cimg_importd::simulator::{Faults, SimOptions};
use common::{wait_for, World};

fn quick_jobs(duration_ms: u64) -> SimOptions {
    SimOptions {
        job_duration: Duration::from_millis(duration_ms),
        ..SimOptions::default()
    }
}

#[tokio::test]
async fn row_with_only_the_api_fields_is_imported_and_tracked_to_succeeded() {
    let world = World::new(quick_jobs(1500)).await;
    let id = world.insert("gz", "web-2026-12", "bj").await;
    let defaults: (String, i64, String, String) = sqlx::query_as(
        "SELECT state, attempts, created_at, next_attempt_at FROM import_requests WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&world.operator)
    .await
    .unwrap();
    assert_eq!((defaults.0.as_str(), defaults.1), ("queued", 0));
    assert!(
        defaults.2.ends_with('Z') && defaults.2.contains('T'),
        "UTC ISO-8601: {}",
        defaults.2
    );

    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;

    assert_eq!(world.state(id).await, "succeeded");
    let (job_uuid, resource_uuid, progress): (String, String, f64) =
        sqlx::query_as("SELECT job_uuid, resource_uuid, progress FROM request_status WHERE id = ?")
            .bind(id)
            .fetch_one(&world.operator)
            .await
            .unwrap();
    assert_eq!(job_uuid.len(), 32);
    assert_eq!(resource_uuid.len(), 32);
    assert_eq!(progress, 100.0);
    let kinds = world.history_kinds(id).await;
    assert_eq!(kinds.first().map(String::as_str), Some("queued"));
    assert!(kinds.contains(&"submitted".to_owned()), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("succeeded"),
        "{kinds:?}"
    );
    assert_eq!(world.stats().imports_of("gz", "web-2026-12"), 1);
}

#[tokio::test]
async fn failing_job_ends_failed_with_its_result() {
    let world = World::new(quick_jobs(1000)).await;
    let bad = world.insert("gz", "erp-failover", "bj").await;
    let good = world.insert("bj", "erp-primary", "gz").await;
    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;

    assert_eq!(world.state(bad).await, "failed");
    assert_eq!(world.state(good).await, "succeeded");
    let (result, last_error): (String, String) = sqlx::query_as(
        "SELECT j.result, s.last_error FROM jobs j JOIN request_status s ON s.id = j.request_id
         WHERE j.request_id = ?",
    )
    .bind(bad)
    .fetch_one(&world.operator)
    .await
    .unwrap();
    assert!(result.contains("fail"), "job result: {result}");
    assert!(
        last_error.contains(&result),
        "last_error `{last_error}` lacks `{result}`"
    );
    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM request_history WHERE request_id = ? AND kind = 'failed'",
    )
    .bind(bad)
    .fetch_one(&world.operator)
    .await
    .unwrap();
    assert!(detail.contains(&result), "{detail}");
    assert_eq!(world.stats().max_imports_per_name(), 1);
}

/// Jobs submitted together are polled together: every JobResult call of a region asks
/// about all of that region's open jobs (or a full batch of them).
async fn polled_per_region(batch_size: usize) -> Vec<(String, Vec<u64>)> {
    let mut world = World::new(quick_jobs(2500)).await;
    world.settings.queue.concurrency = 32;
    world.settings.poll.batch_size = batch_size;
    for n in 0..13 {
        world.insert("gz", &format!("gz-image-{n}"), "bj").await;
    }
    for n in 0..12 {
        world.insert("bj", &format!("bj-image-{n}"), "gz").await;
    }
    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(20)).await;
    daemon.stop().await;
    assert_eq!(world.count_in("succeeded").await, 25);

    let stats = world.stats();
    assert_eq!(stats.total_imports(), 25);
    assert_eq!(stats.max_imports_per_name(), 1);
    ["gz", "bj"]
        .iter()
        .map(|region| {
            let asked = stats
                .job_result_calls
                .iter()
                .filter(|c| c.region == *region)
                .map(|c| c.asked)
                .collect();
            (region.to_string(), asked)
        })
        .collect()
}

#[tokio::test]
async fn two_regions_are_polled_with_one_job_result_call_per_region_per_round() {
    let per_region = polled_per_region(100).await;
    for (region, asked) in &per_region {
        let open = if region == "gz" { 13 } else { 12 };
        assert!(asked.len() >= 2, "{region}: {asked:?}");
        assert!(
            asked.iter().all(|n| *n == open),
            "{region}: every call should ask for all {open} jobs: {asked:?}"
        );
    }
    assert_eq!(
        per_region[0].1.len(),
        per_region[1].1.len(),
        "same number of rounds: {per_region:?}"
    );
}

#[tokio::test]
async fn jobs_queued_at_scattered_moments_share_a_call_that_goes_out_anyway() {
    let mut world = World::new(quick_jobs(60_000)).await;
    // Rows are picked up within 50 ms, so each job is created at its own moment and falls
    // due at its own moment; a fifth of a 10 s max_interval lets a call take in jobs due
    // within the next 2 s.
    world.settings.queue.scan_interval = Duration::from_millis(50);
    world.settings.poll.max_interval = Duration::from_secs(10);
    let daemon = world.start();
    for n in 0..8 {
        world.insert("gz", &format!("scattered-{n}"), "bj").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let called = common::wait_for(Duration::from_secs(5), || async {
        !world.stats().job_result_calls.is_empty()
    })
    .await;
    daemon.stop().await;
    assert!(called, "no JobResult call within 5 s");
    let calls = world.stats().job_result_calls;
    // Without filling, the first round would ask only about the jobs due within a fifth
    // of the initial interval: two or three of them.
    assert_eq!(calls[0].asked, 8, "{calls:?}");
}

#[tokio::test]
async fn batches_split_a_region_only_when_the_batch_size_requires() {
    for (region, asked) in polled_per_region(5).await {
        let want: &[u64] = if region == "gz" {
            &[5, 5, 3]
        } else {
            &[5, 5, 2]
        };
        assert_eq!(asked.len() % want.len(), 0, "{region}: {asked:?}");
        for round in asked.chunks(want.len()) {
            let mut round = round.to_vec();
            round.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(round, want, "{region}: {asked:?}");
        }
    }
}

#[tokio::test]
async fn row_inserted_while_the_daemon_runs_is_submitted_within_two_seconds() {
    let world = World::new(quick_jobs(1000)).await;
    let daemon = world.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let inserted = Instant::now();
    let id = world.insert("gz", "late-arrival", "bj").await;
    let seen = wait_for(Duration::from_secs(2), || async {
        world.stats().imports_of("gz", "late-arrival") == 1
    })
    .await;
    let took = inserted.elapsed();
    assert!(seen, "not submitted within 2 s");
    world.wait_all_ended(Duration::from_secs(10)).await;
    daemon.stop().await;
    assert_eq!(world.state(id).await, "succeeded", "took {took:?}");
}

#[tokio::test]
async fn jobs_left_out_of_job_result_answers_are_still_tracked_to_their_end() {
    let world = World::new(SimOptions {
        faults: Faults {
            omit_jobs: 0.5,
            ..Faults::default()
        },
        ..quick_jobs(1000)
    })
    .await;
    let ids = [
        world.insert("gz", "a-image", "bj").await,
        world.insert("gz", "b-image", "bj").await,
        world.insert("bj", "c-image", "gz").await,
        world.insert("bj", "d-fail-image", "gz").await,
    ];
    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(30)).await;
    daemon.stop().await;

    let states: Vec<String> = states_of(&world, &ids).await;
    assert_eq!(states, ["succeeded", "succeeded", "succeeded", "failed"]);
    let stats = world.stats();
    assert!(
        stats.job_result_calls.iter().any(|c| c.returned < c.asked),
        "the fault never fired"
    );
    assert_eq!(stats.max_imports_per_name(), 1);
}

#[tokio::test]
async fn a_job_result_answer_missing_every_job_does_not_stop_the_daemon() {
    let world = World::new(SimOptions {
        faults: Faults {
            omit_jobs: 1.0,
            ..Faults::default()
        },
        ..quick_jobs(500)
    })
    .await;
    let id = world.insert("gz", "hidden-job", "bj").await;
    let daemon = world.start();
    let missed = wait_for(Duration::from_secs(10), || async {
        let misses: Option<i64> =
            sqlx::query_scalar("SELECT missed_polls FROM jobs WHERE request_id = ?")
                .bind(id)
                .fetch_optional(&world.operator)
                .await
                .unwrap();
        misses.unwrap_or(0) >= 2
    })
    .await;
    assert!(missed, "the job was not asked about twice");
    assert_eq!(world.state(id).await, "submitted");

    world.simulator.set_faults(Faults::default());
    world.wait_all_ended(Duration::from_secs(10)).await;
    daemon.stop().await;
    assert_eq!(world.state(id).await, "succeeded");
}

async fn states_of(world: &World, ids: &[i64]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        states.push(world.state(*id).await);
    }
    states
}
