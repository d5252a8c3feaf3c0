//! Control endpoints for tests on loopback: read the counters, read and replace the faults.
//!
//! They need no token (the simulator only listens on loopback) and are not counted in the
//! stats:
//! - `GET /_sim/stats`: the [`super::Stats`] snapshot as JSON;
//! - `GET /_sim/faults`: the [`super::Faults`] in force;
//! - `PUT /_sim/faults`: replaces the whole set from a JSON body (missing fields take their
//!   defaults, unknown fields and shares outside 0.0..=1.0 are refused with HTTP 400); answers
//!   the new set.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::faults::Faults;
use super::shared::Shared;

/// Path of the stats endpoint.
pub const STATS_PATH: &str = "/_sim/stats";
/// Path of the faults endpoint.
pub const FAULTS_PATH: &str = "/_sim/faults";

/// Routes of the control endpoints.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(STATS_PATH, get(stats))
        .route(FAULTS_PATH, get(get_faults).put(put_faults))
}

/// `GET /_sim/stats`.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats()).into_response()
}

/// `GET /_sim/faults`.
async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults()).into_response()
}

/// `PUT /_sim/faults`.
async fn put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => faults,
        Err(err) => return bad_request(format!("invalid faults: {err}")),
    };
    if let Err(err) = faults.validate() {
        return bad_request(err.to_string());
    }
    shared.set_faults(faults);
    tracing::info!(?faults, "faults replaced");
    Json(faults).into_response()
}

/// HTTP 400 with `{"error": message}`.
fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}
