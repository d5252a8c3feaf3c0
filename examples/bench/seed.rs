//! Filling a fresh database and the simulator quickly: queued rows as an operator would
//! insert them, jobs already in flight, and years of finished history.
//!
//! Bulk rows go in as JSON arrays expanded by `json_each`, thousands per statement, so
//! seeding takes seconds even for a million rows.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use cimg_importd::config::{DatabaseSettings, Settings};
use cimg_importd::service;
use cimg_importd::simulator::IMPORT_PATH;

/// A source image uuid the simulator accepts.
pub const ORIGIN_UUID: &str = "4a48f88391134a01befe88ff98b68af8";

/// Rows per bulk statement.
const CHUNK: usize = 5_000;

/// Images per seeding ImportCIMG call.
const IMPORT_CHUNK: usize = 1_000;

/// Creates and migrates a database at `path`.
pub async fn create_database(path: &Path) -> anyhow::Result<()> {
    let settings = Settings {
        database: DatabaseSettings {
            path: path.to_owned(),
            ..DatabaseSettings::default()
        },
        ..Settings::default()
    };
    let store = service::open_store(&settings).await?;
    store.close().await;
    Ok(())
}

/// A connection of the operator's own, as `sqlite3` would be.
pub async fn operator(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(30));
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

/// The region a numbered row goes to: three regions, unevenly.
pub fn region_of(n: usize) -> &'static str {
    match n % 20 {
        0..=7 => "gz",
        8..=14 => "bj",
        _ => "sh",
    }
}

/// Queues `rows` requests in one INSERT (one transaction), names `{prefix}-{n}`.
pub async fn queue_rows(pool: &SqlitePool, rows: usize, prefix: &str) -> anyhow::Result<()> {
    let items: Vec<Value> = (0..rows)
        .map(|n| json!({"region": region_of(n), "name": format!("{prefix}-{n}")}))
        .collect();
    sqlx::query(
        "INSERT INTO import_requests (region_id, name, origin_image_uuid, origin_region_id)
         SELECT value ->> 'region', value ->> 'name', ?, 'hb' FROM json_each(?)",
    )
    .bind(ORIGIN_UUID)
    .bind(Value::Array(items).to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// One job in flight, to be created in the simulator and recorded in the database.
#[derive(Debug, Clone)]
pub struct TrackedJob {
    pub region: &'static str,
    pub name: String,
    /// Job age at seeding, in seconds.
    pub age_s: f64,
    /// Seconds from seeding until it is due (negative: overdue already).
    pub due_in_s: f64,
}

/// Creates the jobs in the simulator (many images per ImportCIMG call), then records them
/// as `submitted` requests with open jobs, as if the daemon had submitted them.
pub async fn track_jobs(
    pool: &SqlitePool,
    base_url: &str,
    jobs: &[TrackedJob],
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut rows = Vec::with_capacity(jobs.len());
    for region in ["gz", "bj", "sh"] {
        let of_region: Vec<&TrackedJob> = jobs.iter().filter(|j| j.region == region).collect();
        for chunk in of_region.chunks(IMPORT_CHUNK) {
            let created = import_many(&client, base_url, region, chunk).await?;
            for (job, (job_uuid, resource_uuid)) in chunk.iter().zip(created) {
                rows.push(json!({
                    "id": rows.len() + 1,
                    "region": job.region,
                    "name": job.name,
                    "job": job_uuid,
                    "resource": resource_uuid,
                    "created": format!("{:+.3} seconds", -job.age_s),
                    "due": format!("{:+.3} seconds", job.due_in_s),
                }));
            }
        }
    }
    let mut tx = pool.begin().await?;
    // One instant for every row, whatever the time the chunks take.
    let now: String = sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
        .fetch_one(&mut *tx)
        .await?;
    for chunk in rows.chunks(CHUNK) {
        let batch = Value::Array(chunk.to_vec()).to_string();
        sqlx::query(
            "INSERT INTO import_requests (id, region_id, name, origin_image_uuid, origin_region_id,
                                          state, attempts, first_attempt_at, last_attempt_at,
                                          created_at, updated_at)
             SELECT value ->> 'id', value ->> 'region', value ->> 'name', ?, 'hb', 'submitted', 1,
                    t, t, t, t
             FROM (SELECT value, strftime('%Y-%m-%dT%H:%M:%fZ', ?, value ->> 'created') AS t
                   FROM json_each(?))",
        )
        .bind(ORIGIN_UUID)
        .bind(&now)
        .bind(&batch)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobs (request_id, region_id, job_uuid, resource_uuid, status, progress,
                               created_at, next_check_at)
             SELECT value ->> 'id', value ->> 'region', value ->> 'job', value ->> 'resource',
                    'Processing', 0,
                    strftime('%Y-%m-%dT%H:%M:%fZ', ?1, value ->> 'created'),
                    strftime('%Y-%m-%dT%H:%M:%fZ', ?1, value ->> 'due')
             FROM json_each(?2)",
        )
        .bind(&now)
        .bind(&batch)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One ImportCIMG call creating every job of `chunk` in `region`; their uuids in order.
async fn import_many(
    client: &reqwest::Client,
    base_url: &str,
    region: &str,
    chunk: &[&TrackedJob],
) -> anyhow::Result<Vec<(String, String)>> {
    let cimg: Vec<Value> = chunk
        .iter()
        .map(
            |job| json!({"name": job.name, "originImageUuid": ORIGIN_UUID, "originRegionId": "hb"}),
        )
        .collect();
    let answer: Value = client
        .post(format!("{base_url}{IMPORT_PATH}"))
        .bearer_auth("seeding")
        .json(&json!({"regionId": region, "cimg": cimg}))
        .send()
        .await?
        .json()
        .await?;
    let data = answer["data"]
        .as_array()
        .context("ImportCIMG answered no jobs")?;
    anyhow::ensure!(
        data.len() == chunk.len(),
        "ImportCIMG created {} jobs",
        data.len()
    );
    Ok(data
        .iter()
        .map(|job| {
            let text = |key: &str| job[key].as_str().unwrap_or_default().to_owned();
            (text("jobUuid"), text("resourceUuid"))
        })
        .collect())
}

/// Fills the database with `requests` finished requests over the last 30 days, each with
/// `events_per_request` history rows (the `queued` one included) and, for those that were
/// submitted, a finished job.
pub async fn finished_history(
    pool: &SqlitePool,
    requests: usize,
    events_per_request: usize,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO import_requests (id, region_id, name, origin_image_uuid, origin_region_id,
                                      state, attempts, reason, first_attempt_at, last_attempt_at,
                                      created_at, updated_at)
         SELECT i, CASE i % 3 WHEN 0 THEN 'gz' WHEN 1 THEN 'bj' ELSE 'sh' END,
                'image-' || i, printf('%032x', i), 'hb', s,
                CASE WHEN s IN ('rejected', 'cancelled') THEN 0 ELSE 1 END,
                CASE s WHEN 'failed' THEN 'job failed: simulated copy failure'
                       WHEN 'rejected' THEN '`name` is empty' END,
                t, t, t, strftime('%Y-%m-%dT%H:%M:%fZ', t, '+40 minutes')
         FROM (SELECT i,
                      CASE WHEN i % 100 < 90 THEN 'succeeded' WHEN i % 100 < 97 THEN 'failed'
                           WHEN i % 100 < 99 THEN 'rejected' ELSE 'cancelled' END AS s,
                      strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-30 days',
                               printf('+%d seconds', i * 2592000 / ?1)) AS t
               FROM n)",
    )
    .bind(requests as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO jobs (request_id, region_id, job_uuid, resource_uuid, status, progress, done,
                           success, created_at, last_checked_at, next_check_at, finished_at)
         SELECT id, region_id, printf('%032x', id + 1000000000), printf('%032x', id + 2000000000),
                CASE state WHEN 'succeeded' THEN 'Success' ELSE 'Fail' END,
                CASE state WHEN 'succeeded' THEN 100 ELSE 60 END, 1, state = 'succeeded',
                created_at, updated_at, updated_at, updated_at
         FROM import_requests WHERE state IN ('succeeded', 'failed')",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH RECURSIVE k(step) AS (SELECT 1 UNION ALL SELECT step + 1 FROM k WHERE step < ?1)
         INSERT INTO events (request_id, at, kind, state, job_uuid, progress, detail)
         SELECT r.id, strftime('%Y-%m-%dT%H:%M:%fZ', r.created_at, printf('+%d seconds', step * 60)),
                CASE WHEN step = 1 THEN 'submitting' WHEN step = 2 THEN 'submitted'
                     WHEN step = ?1 THEN r.state ELSE 'job_progressed' END,
                CASE WHEN step = 1 THEN 'submitting' WHEN step = ?1 THEN r.state
                     ELSE 'submitted' END,
                j.job_uuid, step * 100.0 / ?1, 'step ' || step
         FROM import_requests AS r CROSS JOIN k LEFT JOIN jobs AS j ON j.request_id = r.id",
    )
    .bind((events_per_request - 1) as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
