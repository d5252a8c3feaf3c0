//! Tests of the simulator over real loopback HTTP, with shared helpers.
//!
//! Every test starts its own simulator on `127.0.0.1:0` and talks to it with the hand-written
//! client of [`client`], so the answers checked are the bytes on the wire.

mod api_tests;
mod cli_tests;
mod client;
mod fault_tests;
mod job_tests;
mod list_tests;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::{SimOptions, Simulator, IMPORT_PATH, JOB_RESULT_PATH, LIST_PATH};
use client::Client;

/// Token the test simulators require.
pub(crate) const TOKEN: &str = "9a609744ad675e8fbfcdbf14511b24e6ddd6b427b4d256969534a81d0773f4d7";
/// A well-formed source image uuid.
pub(crate) const ORIGIN_UUID: &str = "4a48f88391134a01befe88ff98b68af8";

/// Loopback address with a free port.
pub(crate) fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts a simulator requiring [`TOKEN`], with jobs of the given duration.
pub(crate) async fn start_with_duration(job_duration: Duration) -> Simulator {
    let opts = SimOptions {
        token: Some(TOKEN.to_string()),
        job_duration,
        ..SimOptions::default()
    };
    Simulator::start(any_port(), opts)
        .await
        .expect("simulator starts")
}

/// Starts a simulator requiring [`TOKEN`], with jobs lasting 20 s (they stay running).
pub(crate) async fn start() -> Simulator {
    start_with_duration(Duration::from_secs(20)).await
}

/// A client with the right token.
pub(crate) fn client(sim: &Simulator) -> Client {
    Client::new(sim.local_addr(), TOKEN)
}

/// A valid CIMGInput.
pub(crate) fn cimg(name: &str) -> Value {
    json!({"name": name, "originImageUuid": ORIGIN_UUID, "originRegionId": "bj"})
}

/// POSTs JSON to an API path; asserts HTTP 200 and returns the envelope.
pub(crate) async fn post_json(sim: &Simulator, path: &str, body: &Value) -> Value {
    let reply = client(sim).post(path, &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Imports one image into `region`; asserts success and returns its job.
pub(crate) async fn import_one(sim: &Simulator, region: &str, name: &str) -> Value {
    let body = json!({"regionId": region, "cimg": [cimg(name)]});
    let envelope = post_json(sim, IMPORT_PATH, &body).await;
    assert_eq!(envelope["errno"], 0, "{envelope}");
    envelope["data"][0].clone()
}

/// Calls JobResult; asserts HTTP 200 and returns the envelope.
pub(crate) async fn job_result(sim: &Simulator, region: &str, uuids: &[&str]) -> Value {
    let target = format!(
        "{JOB_RESULT_PATH}?regionId={region}&jobUuids={}",
        uuids.join(",")
    );
    let reply = client(sim).get(&target).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The one job JobResult returns for `uuid` in `region`.
pub(crate) async fn job_state(sim: &Simulator, region: &str, uuid: &str) -> Value {
    let envelope = job_result(sim, region, &[uuid]).await;
    assert_eq!(envelope["errno"], 0, "{envelope}");
    envelope["data"][0].clone()
}

/// Calls ListCIMG; asserts HTTP 200 and returns the envelope.
pub(crate) async fn list(sim: &Simulator, body: &Value) -> Value {
    post_json(sim, LIST_PATH, body).await
}

/// True for a 32-hex-digit string.
pub(crate) fn is_hex32(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The uuid string of a job (`jobUuid`).
pub(crate) fn job_uuid(job: &Value) -> String {
    job["jobUuid"]
        .as_str()
        .expect("jobUuid is a string")
        .to_string()
}
