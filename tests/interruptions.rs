//! The real binary interrupted: SIGTERM with calls in flight, and SIGKILL at random
//! moments while requests flow through faults. Afterwards every request ends in a terminal
//! state and no (region, name) was ever imported twice.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cimg_importd::simulator::{Faults, PerEndpoint, SimOptions};
use common::{signal, wait_for, World};
use rand::Rng;

fn spawn_run(world: &World) -> Child {
    world
        .binary()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon starts")
}

fn stop(mut child: Child, name: &str) -> std::process::ExitStatus {
    signal(&child, name);
    child.wait().expect("daemon exits")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_calls_in_flight_finish_within_the_grace_and_exits_zero() {
    let faults = Faults {
        latency_ms: 1500,
        ..Faults::default()
    };
    let mut world = World::new(SimOptions {
        job_duration: Duration::from_millis(500),
        faults,
        ..SimOptions::default()
    })
    .await;
    world.settings.service.shutdown_grace = Duration::from_secs(5);
    let ids = [
        world.insert("gz", "term-1", "bj").await,
        world.insert("bj", "term-2", "gz").await,
    ];
    let child = spawn_run(&world);
    let in_flight = wait_for(Duration::from_secs(5), || async {
        world.stats().calls.import >= 2
    })
    .await;
    assert!(in_flight);

    let asked = Instant::now();
    let status = stop(child, "TERM");
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}, beyond the grace"
    );
    for id in ids {
        assert_eq!(
            world.state(id).await,
            "submitted",
            "the answer in flight was recorded"
        );
    }

    world.simulator.set_faults(Faults::default());
    let child = spawn_run(&world);
    world.wait_all_ended(Duration::from_secs(15)).await;
    assert!(stop(child, "TERM").success());
    assert_eq!(world.count_in("succeeded").await, 2);
    assert_eq!(world.stats().max_imports_per_name(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_still_in_flight_when_the_grace_ends_are_reconciled_at_the_next_start() {
    let faults = Faults {
        latency_ms: 4000,
        ..Faults::default()
    };
    let mut world = World::new(SimOptions {
        job_duration: Duration::from_millis(500),
        faults,
        ..SimOptions::default()
    })
    .await;
    world.settings.service.shutdown_grace = Duration::from_millis(500);
    let id = world.insert("gz", "cut-short", "bj").await;
    let child = spawn_run(&world);
    assert!(
        wait_for(Duration::from_secs(5), || async {
            world.stats().calls.import >= 1
        })
        .await
    );
    let status = stop(child, "TERM");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        world.state(id).await,
        "submitting",
        "left for the next start to reconcile"
    );

    world.simulator.set_faults(Faults::default());
    let child = spawn_run(&world);
    world.wait_all_ended(Duration::from_secs(20)).await;
    assert!(stop(child, "TERM").success());
    assert_eq!(world.state(id).await, "succeeded");
    assert_eq!(world.stats().imports_of("gz", "cut-short"), 1);
    let kinds = world.history_kinds(id).await;
    assert!(kinds.contains(&"interrupted".to_owned()), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_twenty_times_at_random_the_daemon_never_imports_twice_nor_loses_a_request() {
    let faults = Faults {
        drop_after_import: 0.15,
        html_502: PerEndpoint {
            import: 0.05,
            job_result: 0.1,
            list: 0.05,
        },
        errno2: PerEndpoint {
            import: 0.05,
            ..PerEndpoint::default()
        },
        omit_jobs: 0.05,
        ..Faults::default()
    };
    let world = World::new(SimOptions {
        job_duration: Duration::from_secs(6),
        job_spread: Duration::from_secs(4),
        faults,
        ..SimOptions::default()
    })
    .await;
    for n in 0..100 {
        let name = if n % 10 == 3 {
            format!("batch-fail-{n}")
        } else {
            format!("batch-{n}")
        };
        let (region, origin) = if n % 2 == 0 {
            ("gz", "bj")
        } else {
            ("bj", "gz")
        };
        world.insert(region, &name, origin).await;
    }

    let mut kills = 0;
    while kills < 20 {
        let child = spawn_run(&world);
        let alive = Duration::from_millis(rand::rng().random_range(100..700));
        tokio::time::sleep(alive).await;
        stop(child, "KILL");
        kills += 1;
    }
    let after_kills = world.unfinished().await;
    assert!(
        after_kills > 0,
        "the kills came after the work was done: nothing was tested"
    );

    let child = spawn_run(&world);
    world.wait_all_ended(Duration::from_secs(90)).await;
    assert!(stop(child, "TERM").success());

    let stats = world.stats();
    assert_eq!(world.unfinished().await, 0);
    assert!(
        stats.answers.import.dropped > 0,
        "the drop fault never fired"
    );
    for entry in &stats.imports {
        assert_eq!(
            entry.count, 1,
            "{}/{} imported {} times",
            entry.region, entry.name, entry.count
        );
    }
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT resource_uuid FROM request_status WHERE resource_uuid IS NOT NULL
                               GROUP BY resource_uuid HAVING count(*) > 1)",
    )
    .fetch_one(&world.operator)
    .await
    .unwrap();
    assert_eq!(duplicates, 0, "one image adopted by two requests");
    let succeeded = world.count_in("succeeded").await;
    let failed = world.count_in("failed").await;
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM events
         WHERE kind IN ('interrupted', 'outcome_unknown', 'adopted', 'requeued', 'retry_scheduled')
         GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&world.operator)
    .await
    .unwrap();
    eprintln!(
        "after {kills} kills: {after_kills} unfinished; final: {succeeded} succeeded, {failed} failed; \
         events {events:?}; import answers {:?}; job_result answers {:?}",
        stats.answers.import, stats.answers.job_result
    );
    assert_eq!(
        succeeded + failed,
        100,
        "{after_kills} unfinished after the kills"
    );
    assert!(succeeded >= 80, "only {succeeded} succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_is_ignored_and_a_second_sigterm_stops_without_waiting() {
    let faults = Faults {
        latency_ms: 8000,
        ..Faults::default()
    };
    let mut world = World::new(SimOptions {
        faults,
        ..SimOptions::default()
    })
    .await;
    world.settings.service.shutdown_grace = Duration::from_secs(20);
    world.insert("gz", "slow-answer", "bj").await;
    let child = spawn_run(&world);
    assert!(
        wait_for(Duration::from_secs(5), || async {
            world.stats().calls.import >= 1
        })
        .await
    );

    signal(&child, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let status = stop(child, "TERM");
    assert!(
        status.success(),
        "SIGHUP must not kill it, and a second SIGTERM exits cleanly: {status:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the second SIGTERM waited {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_database_refuses_to_start() {
    let world = World::new(SimOptions::default()).await;
    let first = spawn_run(&world);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = world.binary().arg("run").output().unwrap();
    assert!(stop(first, "TERM").success());
    assert_eq!(second.status.code(), Some(1));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("another cimg-importd is already running"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_a_claim_waits_for_a_lock_sends_nothing_new() {
    let world = World::new(SimOptions::default()).await;
    let child = spawn_run(&world);
    tokio::time::sleep(Duration::from_millis(700)).await;

    // The operator queues a row inside a transaction that holds the write lock.
    let mut lock = world.operator.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();
    sqlx::query("INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id) VALUES ('gz', 'queued-at-the-stop', ?, 'bj')")
        .bind(common::ORIGIN_UUID)
        .execute(&mut *lock)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::query("COMMIT").execute(&mut *lock).await.unwrap();
    drop(lock);
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait().unwrap()
    })
    .await
    .unwrap();

    assert!(status.success());
    assert_eq!(
        world.stats().calls.import,
        0,
        "a call left after the stop signal"
    );
    let state: String = sqlx::query_scalar("SELECT state FROM import_requests")
        .fetch_one(&world.operator)
        .await
        .unwrap();
    assert_eq!(state, "queued");
}
