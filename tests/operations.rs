//! Running it for years: the Prometheus endpoint reports the figures monitoring needs, and
//! retention removes old finished requests with their jobs and history.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use cimg_importd::simulator::SimOptions;
use common::{wait_for, World};

/// Samples of a Prometheus text page: `name{labels}` → value.
fn parse(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        panic!(
            "no sample `{key}` in {:#?}",
            samples.keys().collect::<Vec<_>>()
        )
    })
}

/// One scrape, or `None` while the endpoint is not up yet.
async fn try_scrape(address: std::net::SocketAddr) -> Option<HashMap<String, f64>> {
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .ok()?;
    Some(parse(&response.text().await.ok()?))
}

async fn scrape(address: std::net::SocketAddr) -> HashMap<String, f64> {
    try_scrape(address)
        .await
        .expect("the metrics endpoint answers")
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn metrics_endpoint_reports_states_calls_latency_jobs_and_pause() {
    let mut world = World::new(SimOptions {
        job_duration: Duration::from_millis(2500),
        ..SimOptions::default()
    })
    .await;
    let address = free_port();
    world.settings.metrics.listen = Some(address);
    world.insert("gz", "metered-1", "bj").await;
    world.insert("bj", "metered-fail", "gz").await;
    world.insert("gz", "", "bj").await;
    let daemon = world.start();

    let tracking = wait_for(Duration::from_secs(5), || async {
        world.count_in("submitted").await == 2
    })
    .await;
    assert!(tracking);
    let during = scrape(address).await;
    assert_eq!(sample(&during, "cimg_importd_jobs_tracked"), 2.0);
    assert_eq!(
        sample(&during, "cimg_importd_requests{state=\"submitted\"}"),
        2.0
    );
    assert_eq!(
        sample(&during, "cimg_importd_requests{state=\"rejected\"}"),
        1.0
    );
    assert_eq!(sample(&during, "cimg_importd_submissions_paused"), 0.0);

    world.insert("gz", "queued-late", "bj").await;
    world.wait_all_ended(Duration::from_secs(15)).await;
    let after = scrape(address).await;
    daemon.stop().await;

    assert_eq!(
        sample(&after, "cimg_importd_requests{state=\"succeeded\"}"),
        2.0
    );
    assert_eq!(
        sample(&after, "cimg_importd_requests{state=\"failed\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "cimg_importd_requests{state=\"queued\"}"),
        0.0
    );
    assert_eq!(sample(&after, "cimg_importd_oldest_queued_seconds"), 0.0);
    assert_eq!(sample(&after, "cimg_importd_jobs_tracked"), 0.0);
    let imports = sample(
        &after,
        "cimg_importd_api_calls_total{endpoint=\"ImportCIMG\",outcome=\"ok\"}",
    );
    assert!(imports >= 3.0, "ImportCIMG calls: {imports}");
    let polls = sample(
        &after,
        "cimg_importd_api_calls_total{endpoint=\"JobResult\",outcome=\"ok\"}",
    );
    assert!(polls >= 2.0, "JobResult calls: {polls}");
    let latency_count = sample(
        &after,
        "cimg_importd_api_call_duration_seconds_count{endpoint=\"ImportCIMG\"}",
    );
    assert!(
        latency_count >= imports,
        "latency observations: {latency_count}"
    );
}

#[tokio::test]
async fn metrics_show_the_oldest_queued_request_and_a_pause() {
    let mut world = World::new(SimOptions::default()).await;
    let address = free_port();
    world.settings.metrics.listen = Some(address);
    world.simulator.set_faults(cimg_importd::simulator::Faults {
        reject_token: true,
        ..Default::default()
    });
    world.insert("gz", "waiting", "bj").await;
    let daemon = world.start();
    let paused = wait_for(Duration::from_secs(5), || async {
        try_scrape(address)
            .await
            .is_some_and(|s| sample(&s, "cimg_importd_submissions_paused") == 1.0)
    })
    .await;
    assert!(paused, "the pause is not reported");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let samples = scrape(address).await;
    daemon.stop().await;
    let oldest = sample(&samples, "cimg_importd_oldest_queued_seconds");
    assert!(oldest >= 1.0, "oldest queued: {oldest}");
    let refused = sample(
        &samples,
        "cimg_importd_api_calls_total{endpoint=\"ImportCIMG\",outcome=\"errno\"}",
    );
    assert!(refused >= 1.0);
}

#[tokio::test]
async fn retention_removes_old_finished_requests_with_their_jobs_and_history_only() {
    let mut world = World::new(SimOptions {
        job_duration: Duration::from_millis(300),
        ..SimOptions::default()
    })
    .await;
    for n in 0..7 {
        world.insert("gz", &format!("old-{n}"), "bj").await;
    }
    let daemon = world.start();
    world.wait_all_ended(Duration::from_secs(10)).await;
    daemon.stop().await;
    // Age the finished rows, and add fresh ones that must stay.
    sqlx::query("UPDATE import_requests SET updated_at = '2020-01-01T00:00:00.000Z'")
        .execute(&world.operator)
        .await
        .unwrap();
    let fresh_done = world.insert("gz", "recently-done", "bj").await;
    sqlx::query("UPDATE import_requests SET state = 'succeeded' WHERE id = ?")
        .bind(fresh_done)
        .execute(&world.operator)
        .await
        .unwrap();
    let still_queued = world.insert("gz", "", "bj").await;
    sqlx::query("UPDATE import_requests SET state = 'in_doubt', updated_at = '2020-01-01T00:00:00.000Z' WHERE id = ?")
        .bind(still_queued)
        .execute(&world.operator)
        .await
        .unwrap();

    world.settings.retention.finished_after = Some(Duration::from_secs(30 * 24 * 3600));
    world.settings.retention.batch_size = 3;
    let daemon = world.start();
    let pruned = wait_for(Duration::from_secs(5), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM import_requests")
            .fetch_one(&world.operator)
            .await
            .unwrap();
        left == 2
    })
    .await;
    daemon.stop().await;
    assert!(pruned, "old finished requests were not removed");
    let orphans: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs WHERE request_id NOT IN (SELECT id FROM import_requests)),
                (SELECT count(*) FROM events WHERE request_id NOT IN (SELECT id FROM import_requests))",
    )
    .fetch_one(&world.operator)
    .await
    .unwrap();
    assert_eq!(orphans, (0, 0), "jobs and history go with their request");
    assert_eq!(world.state(fresh_done).await, "succeeded");
    assert_eq!(
        world.state(still_queued).await,
        "in_doubt",
        "unfinished requests are never removed"
    );
}
