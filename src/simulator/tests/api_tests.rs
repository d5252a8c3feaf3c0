//! Tests of ImportCIMG, JobResult and authentication: answer shapes and errno cases.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use super::client::Client;
use super::{
    cimg, client, import_one, is_hex32, job_result, job_uuid, post_json, start, ORIGIN_UUID, TOKEN,
};
use crate::simulator::{SimOptions, Simulator, IMPORT_PATH, JOB_RESULT_PATH, LIST_PATH};

/// Keys of a job in the ImportCIMG answer.
const IMPORT_JOB_KEYS: [&str; 9] = [
    "done",
    "jobUuid",
    "progress",
    "resourceType",
    "resourceUuid",
    "status",
    "success",
    "type",
    "uuid",
];

fn assert_created_job(job: &Value) {
    let keys: BTreeSet<&str> = job
        .as_object()
        .expect("job object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, IMPORT_JOB_KEYS.into_iter().collect(), "{job}");
    assert_eq!(job["done"], false);
    assert_eq!(job["progress"], 0);
    assert_eq!(job["resourceType"], "cimg");
    assert_eq!(job["status"], "Processing");
    assert_eq!(job["success"], false);
    assert_eq!(job["type"], "ImportCIMG");
    assert_eq!(job["uuid"], job["jobUuid"]);
    assert!(
        is_hex32(&job["jobUuid"]) && is_hex32(&job["resourceUuid"]),
        "{job}"
    );
    assert_ne!(job["jobUuid"], job["resourceUuid"]);
}

#[tokio::test]
async fn import_accepts_array_and_single_object_forms() {
    let described = json!({"name": "d", "originImageUuid": ORIGIN_UUID, "originRegionId": "bj",
        "description": "openapi测试"});
    let cases = [
        (
            "array form with two images",
            json!({"regionId": "gz", "cimg": [cimg("a"), cimg("b")]}),
            2,
        ),
        (
            "single object form with regionId",
            json!({"regionId": "gz", "cimg": cimg("c")}),
            1,
        ),
        (
            "array form with a description",
            json!({"regionId": "gz", "cimg": [described]}),
            1,
        ),
    ];
    let sim = start().await;
    for (case, body, jobs) in cases {
        let envelope = post_json(&sim, IMPORT_PATH, &body).await;
        assert_eq!(envelope["errno"], 0, "{case}: {envelope}");
        assert_eq!(envelope["errmsg"], "ok", "{case}");
        assert!(is_hex32(&envelope["requestId"]), "{case}: {envelope}");
        let data = envelope["data"].as_array().expect("data is an array");
        assert_eq!(data.len(), jobs, "{case}");
        data.iter().for_each(assert_created_job);
    }
    let stats = sim.stats();
    assert_eq!(stats.total_imports(), 4);
    assert_eq!(stats.imports_of("gz", "a"), 1);
    assert_eq!(stats.imports_of("gz", "c"), 1);
}

#[tokio::test]
async fn import_rejects_invalid_requests_with_errno_1_and_creates_nothing() {
    let bad_uuid =
        |uuid: &str| json!({"name": "n", "originImageUuid": uuid, "originRegionId": "bj"});
    let cases: Vec<(&str, String)> = vec![
        ("body is not json", "not json".to_string()),
        ("body is a json array", "[]".to_string()),
        (
            "regionId missing in array form",
            json!({"cimg": [cimg("a")]}).to_string(),
        ),
        (
            "regionId missing in single object form",
            json!({"cimg": cimg("a")}).to_string(),
        ),
        (
            "regionId empty",
            json!({"regionId": "", "cimg": [cimg("a")]}).to_string(),
        ),
        (
            "regionId not a string",
            json!({"regionId": 7, "cimg": [cimg("a")]}).to_string(),
        ),
        ("cimg missing", json!({"regionId": "gz"}).to_string()),
        (
            "cimg empty array",
            json!({"regionId": "gz", "cimg": []}).to_string(),
        ),
        (
            "cimg a string",
            json!({"regionId": "gz", "cimg": "a"}).to_string(),
        ),
        (
            "name empty",
            json!({"regionId": "gz", "cimg": [cimg("")]}).to_string(),
        ),
        (
            "name blank",
            json!({"regionId": "gz", "cimg": [cimg("  ")]}).to_string(),
        ),
        (
            "name missing",
            json!({"regionId": "gz", "cimg": [{"originImageUuid": ORIGIN_UUID,
                "originRegionId": "bj"}]})
            .to_string(),
        ),
        (
            "uuid too short",
            json!({"regionId": "gz", "cimg": [bad_uuid("4a48f883")]}).to_string(),
        ),
        (
            "uuid not hex",
            json!({"regionId": "gz", "cimg": [bad_uuid("zz48f88391134a01befe88ff98b68af8")]})
                .to_string(),
        ),
        (
            "originRegionId missing",
            json!({"regionId": "gz", "cimg": [{"name": "n", "originImageUuid": ORIGIN_UUID}]})
                .to_string(),
        ),
        (
            "description not a string",
            json!({"regionId": "gz", "cimg": [{"name": "n", "originImageUuid": ORIGIN_UUID,
                "originRegionId": "bj", "description": 5}]})
            .to_string(),
        ),
        (
            "one bad image among good ones",
            json!({"regionId": "gz", "cimg": [cimg("good"), cimg("")]}).to_string(),
        ),
    ];
    let sim = start().await;
    for (case, body) in cases {
        let reply = client(&sim).post(IMPORT_PATH, &body).await;
        assert_eq!(reply.status, 200, "{case}");
        let envelope = reply.json();
        assert_eq!(envelope["errno"], 1, "{case}: {envelope}");
        assert_eq!(envelope["data"], json!([]), "{case}");
        assert!(
            envelope["errmsg"]
                .as_str()
                .is_some_and(|m| m.starts_with("请求参数错误")),
            "{case}"
        );
    }
    assert_eq!(sim.stats().total_imports(), 0);
}

#[tokio::test]
async fn import_of_a_missing_source_image_answers_errno_41026() {
    let sim = start().await;
    let missing = json!({"name": "m", "originImageUuid": "00000000000000000000000000000000",
        "originRegionId": "bj"});
    let body = json!({"regionId": "gz", "cimg": [cimg("ok"), missing]});
    let envelope = post_json(&sim, IMPORT_PATH, &body).await;
    assert_eq!(envelope["errno"], 41026, "{envelope}");
    assert_eq!(envelope["errmsg"], "查询镜像失败");
    assert_eq!(sim.stats().total_imports(), 0);
}

#[tokio::test]
async fn wrong_or_missing_token_answers_errno_4_with_http_200() {
    let basic = format!("Basic {TOKEN}");
    let cases = [
        ("no authorization header", None),
        ("another token", Some("Bearer 0000")),
        ("basic scheme with the right token", Some(basic.as_str())),
        ("empty bearer token", Some("Bearer ")),
        ("token without scheme", Some(TOKEN)),
    ];
    let sim = start().await;
    let body = json!({"regionId": "gz", "cimg": [cimg("a")]}).to_string();
    let list_body = json!({"regionId": "gz", "start": 0, "limit": 10}).to_string();
    let target = format!("{JOB_RESULT_PATH}?regionId=gz&jobUuids={ORIGIN_UUID}");
    for (case, authorization) in cases {
        let client = Client::with_authorization(sim.local_addr(), authorization);
        for reply in [
            client.post(IMPORT_PATH, &body).await,
            client.get(&target).await,
            client.post(LIST_PATH, &list_body).await,
        ] {
            assert_eq!(reply.status, 200, "{case}");
            let envelope = reply.json();
            assert_eq!(envelope["errno"], 4, "{case}: {envelope}");
            assert_eq!(envelope["errmsg"], "认证失败", "{case}");
        }
    }
    assert_eq!(sim.stats().total_imports(), 0);
    let right = client(&sim).post(IMPORT_PATH, &body).await.json();
    assert_eq!(
        right["errno"], 0,
        "the configured token is accepted: {right}"
    );
}

#[tokio::test]
async fn without_configured_token_any_bearer_token_is_accepted() {
    let sim = Simulator::start(super::any_port(), SimOptions::default())
        .await
        .expect("starts");
    let body = json!({"regionId": "gz", "cimg": [cimg("a")]}).to_string();
    let cases = [
        ("some bearer token", Some("Bearer abc"), 0),
        ("lowercase scheme", Some("bearer xyz"), 0),
        ("no header", None, 4),
        ("empty bearer token", Some("Bearer"), 4),
    ];
    for (case, authorization, errno) in cases {
        let reply = Client::with_authorization(sim.local_addr(), authorization)
            .post(IMPORT_PATH, &body)
            .await;
        assert_eq!(reply.json()["errno"], errno, "{case}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_fresh_request_id() {
    let sim = start().await;
    let mut seen = HashSet::new();
    for body in [
        json!({"regionId": "gz", "cimg": [cimg("a")]}),
        json!({"regionId": "gz"}),
    ] {
        for _ in 0..3 {
            let envelope = post_json(&sim, IMPORT_PATH, &body).await;
            assert!(is_hex32(&envelope["requestId"]), "{envelope}");
            assert!(
                seen.insert(envelope["requestId"].to_string()),
                "request id repeated"
            );
        }
    }
}

#[tokio::test]
async fn job_result_returns_only_known_jobs_of_the_asked_region() {
    let sim = start().await;
    let gz1 = job_uuid(&import_one(&sim, "gz", "one").await);
    let gz2 = job_uuid(&import_one(&sim, "gz", "two").await);
    let bj1 = job_uuid(&import_one(&sim, "bj", "three").await);
    let unknown = "ffffffffffffffffffffffffffffffff";
    let envelope = job_result(&sim, "gz", &[&gz1, unknown, &bj1, &gz2]).await;
    assert_eq!(envelope["errno"], 0, "{envelope}");
    let returned: Vec<String> = envelope["data"]
        .as_array()
        .expect("data is an array")
        .iter()
        .map(job_uuid)
        .collect();
    assert_eq!(
        returned,
        vec![gz1.clone(), gz2],
        "known gz jobs, in the order asked"
    );
    let job = &envelope["data"][0];
    for key in [
        "uuid",
        "resourceUuid",
        "resourceType",
        "type",
        "status",
        "progress",
        "result",
    ] {
        assert!(job.get(key).is_some(), "job has {key}: {job}");
    }
    assert_eq!(job["status"], "Processing");
    assert_eq!(job["result"], "");
    let nothing = job_result(&sim, "bj", &[unknown, &gz1]).await;
    assert_eq!(
        nothing["data"],
        json!([]),
        "no known job is an empty data array"
    );
    let call = &sim.stats().job_result_calls[0];
    assert_eq!(
        (call.region.as_str(), call.asked, call.returned),
        ("gz", 4, 2)
    );
}

#[tokio::test]
async fn job_result_without_region_or_uuids_answers_errno_1() {
    let cases = [
        ("no query", JOB_RESULT_PATH.to_string()),
        (
            "regionId missing",
            format!("{JOB_RESULT_PATH}?jobUuids={ORIGIN_UUID}"),
        ),
        (
            "regionId empty",
            format!("{JOB_RESULT_PATH}?regionId=&jobUuids={ORIGIN_UUID}"),
        ),
        ("jobUuids missing", format!("{JOB_RESULT_PATH}?regionId=gz")),
        (
            "jobUuids empty",
            format!("{JOB_RESULT_PATH}?regionId=gz&jobUuids="),
        ),
        (
            "jobUuids only commas",
            format!("{JOB_RESULT_PATH}?regionId=gz&jobUuids=,,"),
        ),
    ];
    let sim = start().await;
    for (case, target) in cases {
        let reply = client(&sim).get(&target).await;
        assert_eq!(reply.status, 200, "{case}");
        assert_eq!(reply.json()["errno"], 1, "{case}: {}", reply.text());
    }
    assert!(
        sim.stats().job_result_calls.is_empty(),
        "failed calls are not in the log"
    );
}
