//! Tests of job progress over time and of the outcome rules (fail, stuck, success).

use std::time::Duration;

use serde_json::{json, Value};

use super::{import_one, job_state, job_uuid, list, start_with_duration};
use crate::simulator::FAIL_REASON;

/// Duration of the jobs whose end is checked.
const JOB_DURATION: Duration = Duration::from_millis(300);
/// Duration of the job whose progress is sampled half way (long enough for a slow machine).
const SAMPLED_DURATION: Duration = Duration::from_millis(600);

fn progress(job: &Value) -> f64 {
    job["progress"].as_f64().expect("progress is a number")
}

/// The single ListCIMG item named `name` in region gz.
async fn image_named(sim: &crate::simulator::Simulator, name: &str) -> Value {
    let body = json!({"regionId": "gz", "start": 0, "limit": 10, "condition": {"names": [name]}});
    let envelope = list(sim, &body).await;
    assert_eq!(envelope["data"]["count"], 1, "{envelope}");
    envelope["data"]["items"][0].clone()
}

#[tokio::test]
async fn progress_rises_linearly_then_the_job_succeeds() {
    let sim = start_with_duration(SAMPLED_DURATION).await;
    let uuid = job_uuid(&import_one(&sim, "gz", "web-2026-12").await);
    let early = job_state(&sim, "gz", &uuid).await;
    tokio::time::sleep(SAMPLED_DURATION / 2).await;
    let middle = job_state(&sim, "gz", &uuid).await;
    assert_eq!(middle["done"], false, "{middle}");
    assert_eq!(middle["status"], "Processing");
    assert!(
        progress(&early) < progress(&middle),
        "{early} then {middle}"
    );
    assert!(
        (25.0..=95.0).contains(&progress(&middle)),
        "about half way: {middle}"
    );
    assert!(
        image_named(&sim, "web-2026-12").await.get("job").is_some(),
        "job shown while running"
    );

    tokio::time::sleep(SAMPLED_DURATION).await;
    let end = job_state(&sim, "gz", &uuid).await;
    assert_eq!(
        (end["done"].as_bool(), end["success"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(progress(&end), 100.0);
    assert_eq!(end["status"], "Success");
    assert_eq!(end["result"], "");
    let image = image_named(&sim, "web-2026-12").await;
    assert_eq!(image["status"], "Ready");
    assert!(image.get("job").is_none(), "no job once it ended: {image}");
}

#[tokio::test]
async fn outcome_depends_on_the_image_name() {
    // (case, name, done, success, status, progress, result, image status, job shown)
    let cases = [
        (
            "fail in the name ends in failure",
            "nightly-FAIL-copy",
            true,
            false,
            "Fail",
            60.0,
            FAIL_REASON,
            "Error",
            false,
        ),
        (
            "stuck in the name never ends",
            "Stuck-image",
            false,
            false,
            "Processing",
            99.0,
            "",
            "Importing",
            true,
        ),
        (
            "fail wins over stuck",
            "stuck-then-fail",
            true,
            false,
            "Fail",
            60.0,
            FAIL_REASON,
            "Error",
            false,
        ),
        (
            "any other name succeeds",
            "plain",
            true,
            true,
            "Success",
            100.0,
            "",
            "Ready",
            false,
        ),
    ];
    let sim = start_with_duration(JOB_DURATION).await;
    let mut uuids = Vec::new();
    for (_, name, ..) in &cases {
        uuids.push(job_uuid(&import_one(&sim, "gz", name).await));
    }
    tokio::time::sleep(JOB_DURATION + Duration::from_millis(150)).await;
    for ((case, name, done, success, status, at, result, image_status, shown), uuid) in
        cases.into_iter().zip(&uuids)
    {
        let job = job_state(&sim, "gz", uuid).await;
        assert_eq!(job["done"], done, "{case}: {job}");
        assert_eq!(job["success"], success, "{case}");
        assert_eq!(job["status"], status, "{case}");
        assert_eq!(progress(&job), at, "{case}");
        assert_eq!(job["result"], result, "{case}");
        let image = image_named(&sim, name).await;
        assert_eq!(image["status"], image_status, "{case}: {image}");
        assert_eq!(image.get("job").is_some(), shown, "{case}: {image}");
    }
}
