//! Structural properties the benchmarks rely on, checked without timing anything: the
//! poller spends the fewest JobResult calls a round allows, and the daemon's frequent
//! statements are answered through indexes, whatever the size of the tables.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use cimg_importd::simulator::{SimOptions, IMPORT_PATH};
use cimg_importd::store::{self, Store};
use common::{wait_for, World, ORIGIN_UUID, TOKEN};
use serde_json::{json, Value};

/// Open jobs per region: not multiples of the batch size, so the last batch is partial.
const JOBS: [(&str, usize); 3] = [("gz", 130), ("bj", 100), ("sh", 71)];

/// A small batch, so that every region needs many calls per round.
const BATCH: usize = 7;

/// Calls answered this far apart belong to different rounds.
const ROUND_GAP_MS: u64 = 500;

/// Creates `count` jobs in `region` in the simulator with one ImportCIMG call and records
/// them as submitted requests with open jobs, all due now, created at the same instant.
async fn track_jobs(world: &World, region: &str, count: usize) {
    let cimg: Vec<Value> = (0..count)
        .map(|n| {
            json!({"name": format!("{region}-{n}"), "originImageUuid": ORIGIN_UUID,
                   "originRegionId": "hb"})
        })
        .collect();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}{IMPORT_PATH}", world.simulator.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({"regionId": region, "cimg": cimg}))
        .send()
        .await
        .expect("import call")
        .json()
        .await
        .expect("import answer");
    let jobs: Vec<Value> = answer["data"]
        .as_array()
        .expect("jobs")
        .iter()
        .enumerate()
        .map(|(n, job)| {
            json!({"name": format!("{region}-{n}"), "job": job["jobUuid"],
                   "resource": job["resourceUuid"]})
        })
        .collect();
    assert_eq!(jobs.len(), count);
    sqlx::query(
        "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id,
                                      state, attempts)
         SELECT ?1, value ->> 'name', ?2, 'hb', 'submitted', 1 FROM json_each(?3)",
    )
    .bind(region)
    .bind(ORIGIN_UUID)
    .bind(Value::Array(jobs.clone()).to_string())
    .execute(&world.operator)
    .await
    .expect("requests");
    sqlx::query(
        "INSERT INTO jobs (request_id, region_id, job_uuid, resource_uuid, status, created_at,
                           next_check_at)
         SELECT r.id, ?1, value ->> 'job', value ->> 'resource', 'Processing',
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         FROM json_each(?2) JOIN import_requests AS r
           ON r.region_id = ?1 AND r.name = value ->> 'name'",
    )
    .bind(region)
    .bind(Value::Array(jobs).to_string())
    .execute(&world.operator)
    .await
    .expect("jobs");
}

#[tokio::test]
async fn each_poll_round_makes_the_fewest_job_result_calls_its_batches_allow() {
    let mut world = World::new(SimOptions {
        job_duration: Duration::from_secs(3600),
        ..SimOptions::default()
    })
    .await;
    world.settings.poll.batch_size = BATCH;
    world.settings.poll.initial_interval = Duration::from_secs(2);
    world.settings.poll.max_interval = Duration::from_secs(4);
    for (region, count) in JOBS {
        track_jobs(&world, region, count).await;
    }
    // Created at one instant and due now: every round takes every job at once.
    sqlx::query(
        "UPDATE jobs SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
                         next_check_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .execute(&world.operator)
    .await
    .unwrap();
    let total: usize = JOBS.iter().map(|(_, n)| n).sum();

    let daemon = world.start();
    let three_rounds = wait_for(Duration::from_secs(30), || async {
        let asked: u64 = world.stats().job_result_calls.iter().map(|c| c.asked).sum();
        asked >= 3 * total as u64
    })
    .await;
    daemon.stop().await;
    assert!(three_rounds, "three rounds did not happen within 30 s");

    let minimum: usize = JOBS.iter().map(|(_, n)| n.div_ceil(BATCH)).sum();
    let rounds = split_into_rounds(world.stats().job_result_calls);
    assert!(rounds.len() >= 3, "rounds: {}", rounds.len());
    for (i, round) in rounds.iter().enumerate().take(3) {
        let asked: HashMap<&str, u64> = round.iter().fold(HashMap::new(), |mut by, call| {
            *by.entry(call.region.as_str()).or_default() += call.asked;
            by
        });
        for (region, count) in JOBS {
            assert_eq!(
                asked.get(region),
                Some(&(count as u64)),
                "round {i}, {region}"
            );
        }
        assert!(round.iter().all(|call| call.asked as usize <= BATCH));
        assert_eq!(round.len(), minimum, "round {i}: calls per round");
    }
}

/// Groups the JobResult log into rounds: calls closer together than `ROUND_GAP_MS`.
fn split_into_rounds(
    calls: Vec<cimg_importd::simulator::JobResultCall>,
) -> Vec<Vec<cimg_importd::simulator::JobResultCall>> {
    let mut rounds: Vec<Vec<_>> = Vec::new();
    let mut last_at = 0;
    for call in calls {
        if rounds.is_empty() || call.at_ms > last_at + ROUND_GAP_MS {
            rounds.push(Vec::new());
        }
        last_at = call.at_ms;
        rounds.last_mut().expect("a round").push(call);
    }
    rounds
}

/// A plan line that reads a table, by its name or its alias (`SEARCH r USING ...`). The
/// rows a batch statement brings in its `VALUES` list are not a table: neither the list
/// itself (`SCAN CONSTANT ROW`, `SCAN 3-ROW VALUES CLAUSE`) nor the common table
/// expression that names it, which the plan builds first (`MATERIALIZE claimed`,
/// `CO-ROUTINE t`).
fn reads_a_table<'p>(line: &'p str, plan: &[String]) -> Option<&'p str> {
    let line = line.trim();
    let rest = line
        .strip_prefix("SCAN ")
        .or_else(|| line.strip_prefix("SEARCH "))?;
    let name = rest.split_whitespace().next()?;
    let built_by_the_plan = plan.iter().any(|other| {
        let other = other.trim();
        other.strip_prefix("MATERIALIZE ") == Some(name)
            || other.strip_prefix("CO-ROUTINE ") == Some(name)
    });
    let values = rest.starts_with("CONSTANT ROW") || rest.contains("VALUES CLAUSE");
    (!built_by_the_plan && !values && !rest.contains("VIRTUAL TABLE")).then_some(line)
}

fn uses_an_index(line: &str) -> bool {
    [
        "USING INDEX",
        "USING COVERING INDEX",
        "USING INTEGER PRIMARY KEY",
    ]
    .iter()
    .any(|how| line.contains(how))
}

#[tokio::test]
async fn the_daemons_hot_queries_are_answered_through_indexes() {
    let world = World::new(SimOptions::default()).await;
    let store = Store::open(&world.settings.database).await.unwrap();
    let queries = store::hot_queries();
    assert!(queries.len() >= 8, "{queries:?}");
    for (name, sql) in queries {
        let plan = store
            .query_plan(sql)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err:#}"));
        let reads: Vec<&str> = plan
            .iter()
            .filter_map(|line| reads_a_table(line, &plan))
            .collect();
        assert!(
            !reads.is_empty(),
            "{name} reads none of our tables: {plan:#?}"
        );
        for line in reads {
            assert!(
                uses_an_index(line),
                "{name} reads a whole table: `{line}` in {plan:#?}"
            );
        }
        // A sort means the index does not give the order: every matching row is read
        // before the first is returned (how claiming 10,000 queued rows became quadratic).
        assert!(
            !plan.iter().any(|line| line.contains("TEMP B-TREE")),
            "{name} sorts what it reads: {plan:#?}"
        );
    }
    store.close().await;
}

#[test]
fn the_plan_check_tells_a_table_scan_from_an_index_read() {
    let cases = [
        ("SCAN import_requests", Some(false)),
        ("SCAN jobs", Some(false)),
        ("  SCAN events", Some(false)),
        (
            "SEARCH jobs USING INDEX jobs_open_due (region_id=?)",
            Some(true),
        ),
        ("SCAN jobs USING COVERING INDEX jobs_open_due", Some(true)),
        (
            "SEARCH import_requests USING INTEGER PRIMARY KEY (rowid=?)",
            Some(true),
        ),
        ("USE TEMP B-TREE FOR ORDER BY", None),
        ("SCAN r", Some(false)),
        ("SEARCH r USING INTEGER PRIMARY KEY (rowid=?)", Some(true)),
        ("SCAN json_each VIRTUAL TABLE INDEX 1:", None),
        ("SCAN o VIRTUAL TABLE INDEX 1:", None),
        ("SCAN CONSTANT ROW", None),
        ("SCAN 3-ROW VALUES CLAUSE", None),
        ("SCAN claimed", None),
        ("SCAN t", None),
    ];
    let plan = ["MATERIALIZE claimed".to_owned(), "CO-ROUTINE t".to_owned()];
    for (line, want) in cases {
        assert_eq!(
            reads_a_table(line, &plan).map(uses_an_index),
            want,
            "{line}"
        );
    }
}
