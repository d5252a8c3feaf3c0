//! Faults, bad input and interruptions: every request still ends in a clear state with its
//! reason, and no image is ever imported twice.

mod common;

use std::time::{Duration, Instant};

use cimg_importd::simulator::{Faults, PerEndpoint, SimOptions};
use common::{wait_for, World};

fn jobs_of(duration_ms: u64, faults: Faults) -> SimOptions {
    SimOptions {
        job_duration: Duration::from_millis(duration_ms),
        faults,
        ..SimOptions::default()
    }
}

#[tokio::test]
async fn import_that_creates_the_job_then_drops_the_connection_is_adopted_not_resent() {
    let faults = Faults {
        drop_after_import: 1.0,
        ..Faults::default()
    };
    let world = World::new(jobs_of(1500, faults)).await;
    let id = world.insert("gz", "dropped-answer", "bj").await;
    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(20)).await;
    daemon.stop().await;

    assert_eq!(world.state(id).await, "succeeded");
    assert_eq!(world.stats().imports_of("gz", "dropped-answer"), 1);
    let kinds = world.history_kinds(id).await;
    for kind in ["outcome_unknown", "adopted", "succeeded"] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} missing from {kinds:?}"
        );
    }
    assert!(!kinds.contains(&"requeued".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn unanswered_import_that_created_nothing_is_queued_again_after_the_grace() {
    let faults = Faults {
        html_502: PerEndpoint {
            import: 1.0,
            ..PerEndpoint::default()
        },
        ..Faults::default()
    };
    let world = World::new(jobs_of(500, faults)).await;
    let id = world.insert("gz", "behind-a-gateway", "bj").await;
    let daemon = world.start();
    let doubted = wait_for(Duration::from_secs(5), || async {
        world.state(id).await == "in_doubt"
    })
    .await;
    assert!(doubted, "a 502 on ImportCIMG leaves the outcome unknown");
    world.simulator.set_faults(Faults::default());
    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;

    assert_eq!(world.state(id).await, "succeeded");
    assert_eq!(world.stats().imports_of("gz", "behind-a-gateway"), 1);
    let kinds = world.history_kinds(id).await;
    assert!(kinds.contains(&"requeued".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn jobs_are_tracked_to_their_real_end_through_502s_and_omitted_answers() {
    let faults = Faults {
        html_502: PerEndpoint {
            job_result: 0.3,
            ..PerEndpoint::default()
        },
        omit_jobs: 0.1,
        ..Faults::default()
    };
    let mut world = World::new(jobs_of(1500, faults)).await;
    // Small batches make many calls, so the 30% share is sure to fire.
    world.settings.poll.batch_size = 2;
    let mut expected = Vec::new();
    for n in 0..12 {
        let (name, want) = if n % 4 == 0 {
            (format!("nightly-fail-{n}"), "failed")
        } else {
            (format!("nightly-{n}"), "succeeded")
        };
        let region = if n % 2 == 0 {
            ("gz", "bj")
        } else {
            ("bj", "gz")
        };
        expected.push((world.insert(region.0, &name, region.1).await, want));
    }
    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(40)).await;
    daemon.stop().await;

    for (id, want) in expected {
        assert_eq!(world.state(id).await, want, "request {id}");
    }
    let stats = world.stats();
    assert!(
        stats.answers.job_result.html502 > 0,
        "the 502 fault never fired"
    );
    assert_eq!(stats.max_imports_per_name(), 1);
}

#[tokio::test]
async fn a_refused_token_pauses_submissions_without_spending_attempts_then_resumes() {
    let faults = Faults {
        reject_token: true,
        ..Faults::default()
    };
    let world = World::new(jobs_of(500, faults)).await;
    let ids = [
        world.insert("gz", "paused-1", "bj").await,
        world.insert("gz", "paused-2", "bj").await,
        world.insert("bj", "paused-3", "gz").await,
    ];
    let daemon = world.start();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let calls = world.stats().calls.import;
    assert!(
        (2..=8).contains(&calls),
        "one probe per interval, not a call per row per scan: {calls}"
    );
    let attempts: Vec<i64> =
        sqlx::query_scalar("SELECT attempts FROM import_requests WHERE state = 'queued'")
            .fetch_all(&world.operator)
            .await
            .unwrap();
    assert!(
        attempts.len() >= 2 && attempts.iter().all(|a| *a == 0),
        "attempts must not grow: {attempts:?}"
    );
    let paused: i64 = sqlx::query_scalar("SELECT count(*) FROM request_history WHERE errno = 4")
        .fetch_one(&world.operator)
        .await
        .unwrap();
    assert!(paused >= 1, "the pause shows in the history");

    world.simulator.set_faults(Faults::default());
    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;
    for id in ids {
        assert_eq!(world.state(id).await, "succeeded");
    }
    assert_eq!(world.stats().max_imports_per_name(), 1);
}

#[tokio::test]
async fn retry_after_holds_every_call_to_the_api() {
    let world = World::new(jobs_of(20_000, Faults::default())).await;
    world.insert("gz", "long-copy", "bj").await;
    let daemon = world.start();
    // Wait until the job is being polled, so both endpoints want to call.
    let polling = wait_for(Duration::from_secs(5), || async {
        world.stats().calls.job_result >= 1
    })
    .await;
    assert!(polling);

    world.simulator.set_faults(Faults {
        rate_limit: 1.0,
        retry_after_secs: 2,
        ..Faults::default()
    });
    let limited = wait_for(Duration::from_secs(5), || async {
        let stats = world.stats();
        stats.answers.import.rate_limited + stats.answers.job_result.rate_limited > 0
    })
    .await;
    let limited_at = Instant::now();
    world.simulator.set_faults(Faults::default());
    assert!(limited, "no call was rate limited");
    let calls_then = world.stats().total_calls();
    world.insert("bj", "queued-during-the-hold", "gz").await;

    let mut next_call_after = None;
    while limited_at.elapsed() < Duration::from_secs(4) {
        if world.stats().total_calls() > calls_then {
            next_call_after = Some(limited_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.stop().await;
    let next = next_call_after.expect("calls resume after Retry-After");
    assert!(
        next >= Duration::from_millis(1900),
        "a call reached the API {next:?} after a 2 s Retry-After"
    );
}

#[tokio::test]
async fn bad_rows_are_rejected_with_a_reason_while_good_rows_around_them_succeed() {
    let world = World::new(jobs_of(500, Faults::default())).await;
    let good_before = world.insert("gz", "good-before", "bj").await;
    let long = "n".repeat(200);
    let bad_rows: Vec<(&str, i64)> = vec![
        ("`name` is empty", world.insert("gz", "", "bj").await),
        (
            "`name` is 200 characters",
            world.insert("gz", &long, "bj").await,
        ),
        (
            "32 hex",
            world.insert_raw("gz", "bad-uuid", "not-a-uuid", "bj").await,
        ),
        ("both `gz`", world.insert("gz", "same-region", "gz").await),
        (
            "does not look like a region",
            world.insert("Guang Zhou", "odd-region", "bj").await,
        ),
        (
            "`origin_region_id` is empty",
            world.insert("gz", "no-origin", "").await,
        ),
    ];
    let not_utf8: i64 = sqlx::query_scalar(
        "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id)
         VALUES ('gz', CAST(x'ff00fe' AS TEXT), ?, 'bj') RETURNING id",
    )
    .bind(common::ORIGIN_UUID)
    .fetch_one(&world.operator)
    .await
    .unwrap();
    let long_description: i64 = sqlx::query_scalar(
        "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id, description)
         VALUES ('gz', 'wordy', ?, 'bj', ?) RETURNING id",
    )
    .bind(common::ORIGIN_UUID)
    .bind("d".repeat(1000))
    .fetch_one(&world.operator)
    .await
    .unwrap();
    let good_after = world.insert("bj", "good-after", "gz").await;

    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;

    let mut expected = bad_rows;
    expected.push(("`name` is not valid UTF-8", not_utf8));
    expected.push(("`description` is 1000 characters", long_description));
    for (needle, id) in expected {
        assert_eq!(world.state(id).await, "rejected", "row {id}");
        let reason = world.column(id, "last_error").await.unwrap_or_default();
        assert!(
            reason.contains(needle),
            "row {id}: `{reason}` lacks `{needle}`"
        );
        assert_eq!(world.history_kinds(id).await, ["queued", "rejected"]);
    }
    assert_eq!(world.state(good_before).await, "succeeded");
    assert_eq!(world.state(good_after).await, "succeeded");
    assert_eq!(
        world.stats().total_imports(),
        2,
        "nothing of a bad row is sent"
    );
}

#[tokio::test]
async fn an_operator_holding_the_write_lock_for_ten_seconds_delays_but_loses_nothing() {
    let world = World::new(jobs_of(2000, Faults::default())).await;
    let first = world.insert("gz", "before-the-lock", "bj").await;
    let daemon = world.start();
    let submitted = wait_for(Duration::from_secs(5), || async {
        world.state(first).await == "submitted"
    })
    .await;
    assert!(submitted);
    let second = world.insert("bj", "queued-before-the-lock", "gz").await;

    // The operator's sqlite3: BEGIN IMMEDIATE and sit on it. The job ends meanwhile.
    let mut lock = world.operator.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    sqlx::query("COMMIT").execute(&mut *lock).await.unwrap();
    drop(lock);

    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;
    assert_eq!(world.state(first).await, "succeeded");
    assert_eq!(world.state(second).await, "succeeded");
    assert_eq!(world.stats().max_imports_per_name(), 1);
}

#[tokio::test]
async fn a_job_past_the_overdue_limit_is_marked_and_still_polled_never_succeeded() {
    let mut world = World::new(jobs_of(500, Faults::default())).await;
    world.settings.poll.overdue_after = Duration::from_secs(2);
    world.settings.poll.max_interval = Duration::from_secs(1);
    let stuck = world.insert("gz", "stuck-copy", "bj").await;
    let daemon = world.start();
    let overdue = wait_for(Duration::from_secs(8), || async {
        sqlx::query_scalar::<_, bool>("SELECT overdue FROM request_status WHERE id = ?")
            .bind(stuck)
            .fetch_one(&world.operator)
            .await
            .unwrap()
    })
    .await;
    assert!(overdue, "job not marked overdue");
    let calls_at_overdue = world.stats().calls.job_result;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    daemon.stop().await;

    let polls_since = world.stats().calls.job_result - calls_at_overdue;
    assert!(
        (2..=5).contains(&polls_since),
        "polled every max_interval (1 s): {polls_since} in 3.5 s"
    );
    assert_eq!(world.state(stuck).await, "submitted");
    let kinds = world.history_kinds(stuck).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "overdue").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn an_api_that_never_answers_times_out_without_stopping_other_work() {
    let faults = Faults {
        hang: PerEndpoint {
            import: true,
            ..PerEndpoint::default()
        },
        ..Faults::default()
    };
    let mut world = World::new(jobs_of(1000, faults)).await;
    world.settings.api.request_timeout = Duration::from_secs(1);
    let hung = world.insert("gz", "into-the-void", "bj").await;
    let daemon = world.start();
    // The request may already be queued again once the reconciler has found no image, so
    // look for the verdict in its history rather than in its current state.
    let doubted = wait_for(Duration::from_secs(5), || async {
        world
            .history_kinds(hung)
            .await
            .contains(&"outcome_unknown".to_owned())
    })
    .await;
    assert!(doubted, "a timed-out ImportCIMG leaves the outcome unknown");

    // Now JobResult hangs instead: polls time out as transient failures while new rows
    // are still submitted.
    world.simulator.set_faults(Faults {
        hang: PerEndpoint {
            job_result: true,
            ..PerEndpoint::default()
        },
        ..Faults::default()
    });
    let other = world.insert("bj", "served-meanwhile", "gz").await;
    let submitted = wait_for(Duration::from_secs(5), || async {
        world.state(other).await == "submitted"
    })
    .await;
    assert!(submitted, "other rows are still served");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        world.state(other).await,
        "submitted",
        "a hung JobResult ends nothing"
    );

    world.simulator.set_faults(Faults::default());
    world.wait_all_ended(Duration::from_secs(20)).await;
    daemon.stop().await;
    assert_eq!(world.state(hung).await, "succeeded");
    assert_eq!(world.state(other).await, "succeeded");
    assert_eq!(world.stats().max_imports_per_name(), 1);
}

#[tokio::test]
async fn a_job_left_out_answer_after_answer_is_settled_by_its_image() {
    let faults = Faults {
        omit_jobs: 1.0,
        ..Faults::default()
    };
    let mut world = World::new(jobs_of(500, faults)).await;
    world.settings.poll.initial_interval = Duration::from_millis(300);
    world.settings.poll.max_interval = Duration::from_millis(300);
    let ready = world.insert("gz", "listed-ready", "bj").await;
    let running = world.insert("bj", "stuck-but-listed", "gz").await;
    let daemon = world.start();
    let settled = wait_for(Duration::from_secs(15), || async {
        world.state(ready).await == "succeeded"
    })
    .await;
    assert!(settled, "the missing job's ready image was not found");
    // The running job has been asked about (and left out) well past the look-up point.
    let asked_often = wait_for(Duration::from_secs(10), || async {
        world
            .stats()
            .job_result_calls
            .iter()
            .filter(|c| c.region == "bj")
            .count()
            >= 8
    })
    .await;
    assert!(asked_often);
    let misses: i64 = sqlx::query_scalar("SELECT missed_polls FROM jobs WHERE request_id = ?")
        .bind(running)
        .fetch_one(&world.operator)
        .await
        .unwrap();
    let reset = misses < 8;
    daemon.stop().await;

    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM request_history WHERE request_id = ? AND kind = 'succeeded'",
    )
    .bind(ready)
    .fetch_one(&world.operator)
    .await
    .unwrap();
    assert!(detail.contains("ListCIMG shows image"), "{detail}");
    assert!(
        reset,
        "a job still running on its image keeps being polled, misses counted anew: {misses}"
    );
    assert_eq!(world.state(running).await, "submitted");
    assert!(world.stats().calls.list >= 2);
}

#[tokio::test]
async fn a_request_deleted_by_hand_never_lends_its_history_or_job_to_the_next() {
    let world = World::new(jobs_of(2500, Faults::default())).await;
    let doomed = world.insert("gz", "deleted-by-hand", "bj").await;
    let daemon = world.start();
    assert!(
        wait_for(Duration::from_secs(5), || async {
            world.state(doomed).await == "submitted"
        })
        .await
    );

    // As the sqlite3 CLI would: foreign keys off, a plain DELETE.
    let mut cli = world.operator.acquire().await.unwrap();
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *cli)
        .await
        .unwrap();
    sqlx::query("DELETE FROM import_requests WHERE id = ?")
        .bind(doomed)
        .execute(&mut *cli)
        .await
        .unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *cli)
        .await
        .unwrap();
    drop(cli);
    let next = world.insert("gz", "inserted-after", "bj").await;
    assert_eq!(next, doomed, "SQLite hands the id out again");

    world.wait_all_ended(Duration::from_secs(15)).await;
    daemon.stop().await;
    assert_eq!(world.state(next).await, "succeeded");
    let jobs: Vec<String> = sqlx::query_scalar("SELECT job_uuid FROM jobs WHERE request_id = ?")
        .bind(next)
        .fetch_all(&world.operator)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "only its own job: {jobs:?}");
    let kinds = world.history_kinds(next).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "queued").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "submitted").count(),
        1,
        "{kinds:?}"
    );
}
