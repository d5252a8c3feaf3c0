//! What the store records in batches, against a real SQLite file: a batch of outcomes
//! applies to each request only while it is still in the state the daemon left it in, so
//! an operator's change or delete made while a call was out is never overwritten.

mod common;

use std::time::Duration;

use cimg_importd::api::Job;
use cimg_importd::simulator::SimOptions;
use cimg_importd::store::{Observation, OpenJob, PolledJob, Store, Submission};
use cimg_importd::validate;
use common::World;

fn job(uuid: &str, done: bool) -> Job {
    Job {
        job_uuid: uuid.to_owned(),
        resource_uuid: format!("img-{uuid}"),
        status: if done { "Done" } else { "Processing" }.to_owned(),
        progress: if done { 100.0 } else { 10.0 },
        done,
        success: done,
        ..Job::default()
    }
}

/// What a round learns when the answer shows each of `open` as `job` says.
fn seen_as(open: Vec<OpenJob>, job: &Job) -> Vec<PolledJob> {
    open.into_iter()
        .map(|open| PolledJob {
            open,
            observation: Observation::Seen {
                job: job.clone(),
                api_request_id: "req-poll".to_owned(),
            },
            next_check: Duration::ZERO,
            newly_overdue: false,
        })
        .collect()
}

async fn job_count(world: &World, request_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE request_id = ?")
        .bind(request_id)
        .fetch_one(&world.operator)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_of_outcomes_skips_requests_an_operator_changed_meanwhile() {
    let world = World::new(SimOptions::default()).await;
    let store = Store::open(&world.settings.database).await.unwrap();
    let kept = world.insert("gz", "kept", "bj").await;
    let changed = world.insert("gz", "changed", "bj").await;
    let deleted = world.insert("gz", "deleted", "bj").await;
    let claimed = store
        .claim_due(10, |fields| validate::check(fields, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);

    // While the three calls are out, an operator fails one request by hand and deletes
    // another.
    sqlx::query("UPDATE import_requests SET state = 'failed', reason = 'by hand' WHERE id = ?")
        .bind(changed)
        .execute(&world.operator)
        .await
        .unwrap();
    sqlx::query("DELETE FROM import_requests WHERE id = ?")
        .bind(deleted)
        .execute(&world.operator)
        .await
        .unwrap();

    let submissions: Vec<Submission> = [
        (kept, "j-kept"),
        (changed, "j-changed"),
        (deleted, "j-deleted"),
    ]
    .into_iter()
    .map(|(request_id, uuid)| Submission {
        request_id,
        job: job(uuid, false),
        api_request_id: format!("req-{uuid}"),
    })
    .collect();
    store
        .record_submitted(&submissions, Duration::ZERO)
        .await
        .unwrap();

    assert_eq!(world.state(kept).await, "submitted");
    assert_eq!(job_count(&world, kept).await, 1);
    assert_eq!(world.state(changed).await, "failed");
    assert_eq!(
        world.column(changed, "last_error").await.as_deref(),
        Some("by hand")
    );
    assert_eq!(job_count(&world, changed).await, 0);
    assert!(!world
        .history_kinds(changed)
        .await
        .contains(&"submitted".to_owned()));
    assert_eq!(job_count(&world, deleted).await, 0);

    // The job is polled and found done, but the operator cancelled the request first: the
    // job stops being tracked, and the request keeps the operator's state.
    let open = store
        .due_jobs("gz", Duration::from_secs(1), None, 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    sqlx::query("UPDATE import_requests SET state = 'cancelled' WHERE id = ?")
        .bind(kept)
        .execute(&world.operator)
        .await
        .unwrap();
    let polled = seen_as(open, &job("j-kept", true));
    let summary = store.record_round(&polled).await.unwrap();
    assert!(summary.finished.is_empty(), "{summary:?}");
    assert_eq!(world.state(kept).await, "cancelled");
    let kinds = world.history_kinds(kept).await;
    assert!(!kinds.contains(&"succeeded".to_owned()), "{kinds:?}");
    assert!(store
        .due_jobs("gz", Duration::from_secs(3600), None, 10)
        .await
        .unwrap()
        .is_empty());
    store.close().await;
}

#[tokio::test]
async fn a_round_records_every_job_of_a_large_batch_once() {
    let world = World::new(SimOptions::default()).await;
    let store = Store::open(&world.settings.database).await.unwrap();
    // 300 rows: more than one statement's worth, and not a power of two, so the batch is
    // split into statements of several sizes.
    for n in 0..300 {
        world.insert("gz", &format!("image-{n}"), "bj").await;
    }
    let claimed = store
        .claim_due(1000, |fields| validate::check(fields, &[]))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 300);
    let submissions: Vec<Submission> = claimed
        .iter()
        .map(|request| Submission {
            request_id: request.id,
            job: job(&format!("j-{}", request.id), false),
            api_request_id: "req".to_owned(),
        })
        .collect();
    store
        .record_submitted(&submissions, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(world.count_in("submitted").await, 300);

    let open = store
        .due_jobs("gz", Duration::from_secs(1), None, 1000)
        .await
        .unwrap();
    assert_eq!(open.len(), 300);
    let polled: Vec<PolledJob> = open
        .into_iter()
        .enumerate()
        .map(|(n, open)| {
            let observation = match n % 3 {
                0 => Observation::Seen {
                    job: job(&open.job_uuid, true),
                    api_request_id: "req-poll".to_owned(),
                },
                1 => Observation::Missing,
                _ => Observation::CallFailed,
            };
            PolledJob {
                open,
                observation,
                next_check: Duration::from_secs(60),
                newly_overdue: false,
            }
        })
        .collect();
    let summary = store.record_round(&polled).await.unwrap();
    assert_eq!(summary.finished.len(), 100);
    assert_eq!(summary.changed, 100);
    assert_eq!(summary.missing, 100);
    assert_eq!(world.count_in("succeeded").await, 100);
    assert_eq!(world.count_in("submitted").await, 200);
    let events: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
            .fetch_all(&world.operator)
            .await
            .unwrap();
    let want: Vec<(String, i64)> = [
        ("queued", 300),
        ("submitted", 300),
        ("submitting", 300),
        ("succeeded", 100),
    ]
    .into_iter()
    .map(|(kind, count)| (kind.to_owned(), count))
    .collect();
    assert_eq!(events, want);
    let (missed, errors): (i64, i64) =
        sqlx::query_as("SELECT sum(missed_polls), sum(poll_errors) FROM jobs")
            .fetch_one(&world.operator)
            .await
            .unwrap();
    assert_eq!((missed, errors), (100, 100));
    store.close().await;
}

#[tokio::test]
async fn the_next_job_due_is_the_earliest_across_regions() {
    let world = World::new(SimOptions::default()).await;
    let store = Store::open(&world.settings.database).await.unwrap();
    assert_eq!(store.next_job_due_in().await.unwrap(), None);
    for (region, first_check) in [("gz", 30), ("bj", 45), ("sh", 10), ("hk", 60)] {
        world.insert(region, &format!("{region}-image"), "hb").await;
        let claimed = store
            .claim_due(10, |fields| validate::check(fields, &[]))
            .await
            .unwrap();
        let submissions: Vec<Submission> = claimed
            .iter()
            .map(|request| Submission {
                request_id: request.id,
                job: job(&format!("j-{region}"), false),
                api_request_id: "req".to_owned(),
            })
            .collect();
        store
            .record_submitted(&submissions, Duration::from_secs(first_check))
            .await
            .unwrap();
    }
    let next = store
        .next_job_due_in()
        .await
        .unwrap()
        .expect("jobs are open");
    assert!(
        next > Duration::from_secs(8) && next <= Duration::from_secs(10),
        "{next:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn progress_within_one_percent_updates_the_job_but_not_the_history() {
    let world = World::new(SimOptions::default()).await;
    let store = Store::open(&world.settings.database).await.unwrap();
    let id = world.insert("gz", "slow-copy", "hb").await;
    store
        .claim_due(1, |fields| validate::check(fields, &[]))
        .await
        .unwrap();
    let submitted = Submission {
        request_id: id,
        job: job("j-slow", false),
        api_request_id: "req".to_owned(),
    };
    store
        .record_submitted(&[submitted], Duration::ZERO)
        .await
        .unwrap();
    let progressed = || async {
        world
            .history_kinds(id)
            .await
            .iter()
            .filter(|kind| *kind == "job_progressed")
            .count()
    };
    // Recorded at 10%; the API then says 10.3, 10.4, then 11.
    for (progress, events) in [(10.3, 0), (10.4, 0), (11.0, 1)] {
        let open = store
            .due_jobs("gz", Duration::from_secs(1), None, 10)
            .await
            .unwrap();
        let polled = seen_as(
            open,
            &Job {
                progress,
                ..job("j-slow", false)
            },
        );
        assert_eq!(polled.len(), 1);
        store.record_round(&polled).await.unwrap();
        assert_eq!(progressed().await, events, "at {progress}%");
        let stored: f64 = sqlx::query_scalar("SELECT progress FROM jobs WHERE request_id = ?")
            .bind(id)
            .fetch_one(&world.operator)
            .await
            .unwrap();
        assert_eq!(stored, progress);
    }
    store.close().await;
}
