//! The three simulated DiDi Cloud endpoints (ImportCIMG, JobResult, ListCIMG) and the fault
//! gate every API call passes through.
//!
//! Each handler counts the call, applies the fault switches in force (hang, latency, 429,
//! HTML 502, token checks, errno 2), then does the real work and answers in the documented
//! envelope `{"errno", "errmsg", "requestId", "data"}` with HTTP 200.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::control;
use super::faults::{roll, Endpoint, Faults};
use super::jobs::{fresh_uuid, Job};
use super::parse::{self, ApiError};
use super::server::ConnSignal;
use super::shared::Shared;
use super::stats::AnswerKind;

/// Path of ImportCIMG.
pub const IMPORT_PATH: &str = "/dicloud/i/storage/cimg/import";
/// Path of JobResult.
pub const JOB_RESULT_PATH: &str = "/dicloud/i/result";
/// Path of ListCIMG.
pub const LIST_PATH: &str = "/dicloud/i/storage/cimg/list";
/// Body of the HTTP 502 answers of the `html_502` fault.
pub const HTML_502_BODY: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

/// The router of the API and control endpoints.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(IMPORT_PATH, post(import))
        .route(JOB_RESULT_PATH, get(job_result))
        .route(LIST_PATH, post(list))
        .merge(control::routes())
        .with_state(shared)
}

/// `POST /dicloud/i/storage/cimg/import`.
async fn import(
    State(shared): State<Arc<Shared>>,
    conn: Option<Extension<ConnSignal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint = Endpoint::Import;
    let faults = match gate(&shared, endpoint, &headers).await {
        Ok(faults) => faults,
        Err(early) => return early,
    };
    let request = match parse::import_request(&body) {
        Ok(request) => request,
        Err(err) => return answer(&shared, endpoint, Err(err)),
    };
    let jobs = shared.create_jobs(&request);
    tracing::debug!(region = %request.region, jobs = jobs.len(), "import jobs created");
    if let Some(Extension(conn)) = conn.filter(|_| roll(faults.drop_after_import)) {
        shared.record_answer(endpoint, AnswerKind::Dropped);
        tracing::debug!(region = %request.region, "dropping connection after import");
        conn.drop_connection();
        return never().await;
    }
    answer(
        &shared,
        endpoint,
        Ok(jobs.iter().map(Job::created_json).collect()),
    )
}

/// `GET /dicloud/i/result?regionId=..&jobUuids=a,b,c`.
async fn job_result(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let endpoint = Endpoint::JobResult;
    let faults = match gate(&shared, endpoint, &headers).await {
        Ok(faults) => faults,
        Err(early) => return early,
    };
    let result = parse::job_result_request(query.as_deref())
        .map(|request| Value::Array(shared.job_results(&request, faults.omit_jobs)));
    answer(&shared, endpoint, result)
}

/// `POST /dicloud/i/storage/cimg/list`.
async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let endpoint = Endpoint::List;
    if let Err(early) = gate(&shared, endpoint, &headers).await {
        return early;
    }
    let result = parse::list_request(&body).map(|request| {
        let page = shared.list(&request);
        json!({"count": page.count, "items": page.items})
    });
    answer(&shared, endpoint, result)
}

/// Counts the call and applies the fault switches that act before the real work. Returns the
/// faults in force for the rest of the call, or the answer to send instead.
async fn gate(
    shared: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
) -> Result<Faults, Response> {
    shared.record_call(endpoint);
    let faults = shared.faults();
    if faults.hang.get(endpoint) {
        shared.record_answer(endpoint, AnswerKind::Hung);
        tracing::debug!(endpoint = endpoint.name(), "hanging call");
        return never().await;
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if roll(faults.rate_limit) {
        return Err(rate_limited(shared, endpoint, faults.retry_after_secs));
    }
    if roll(faults.html_502.get(endpoint)) {
        return Err(html_502(shared, endpoint));
    }
    if let Err(err) = authorize(shared.token.as_deref(), &faults, headers) {
        return Err(answer(shared, endpoint, Err(err)));
    }
    if roll(faults.errno2.get(endpoint)) {
        return Err(answer(shared, endpoint, Err(ApiError::system())));
    }
    Ok(faults)
}

/// Waits forever; the connection task ends the call (dropped connection or shutdown).
async fn never<T>() -> T {
    let never: Infallible = std::future::pending().await;
    match never {}
}

/// Checks the bearer token: errno 4 when `reject_token` is on, when the header is missing or
/// not a non-empty bearer token, or when it differs from the configured token.
fn authorize(token: Option<&str>, faults: &Faults, headers: &HeaderMap) -> Result<(), ApiError> {
    if faults.reject_token {
        return Err(ApiError::auth());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match (given, token) {
        (Some(given), Some(expected)) if given == expected => Ok(()),
        (Some(_), None) => Ok(()),
        _ => Err(ApiError::auth()),
    }
}

/// The token of an `Authorization: Bearer <token>` header value, if non-empty.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The envelope answer (HTTP 200) for a result, with a fresh request id; counts it.
fn answer(shared: &Shared, endpoint: Endpoint, result: Result<Value, ApiError>) -> Response {
    let request_id = fresh_uuid();
    let (kind, envelope) = match result {
        Ok(data) => {
            tracing::debug!(endpoint = endpoint.name(), request_id = %request_id, "answered ok");
            let body = json!({"errno": 0, "errmsg": "ok", "requestId": request_id, "data": data});
            (AnswerKind::Ok, body)
        }
        Err(err) => {
            tracing::debug!(
                endpoint = endpoint.name(),
                request_id = %request_id,
                errno = err.errno,
                errmsg = %err.errmsg,
                "answered errno"
            );
            let body = json!({
                "errno": err.errno, "errmsg": err.errmsg, "requestId": request_id, "data": []
            });
            (AnswerKind::Errno, body)
        }
    };
    shared.record_answer(endpoint, kind);
    Json(envelope).into_response()
}

/// HTTP 429 with `Retry-After` (fault `rate_limit`); counts it.
fn rate_limited(shared: &Shared, endpoint: Endpoint, retry_after_secs: u64) -> Response {
    shared.record_answer(endpoint, AnswerKind::RateLimited);
    tracing::debug!(endpoint = endpoint.name(), retry_after_secs, "answered 429");
    let headers = [
        (header::RETRY_AFTER, HeaderValue::from(retry_after_secs)),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
    ];
    (
        StatusCode::TOO_MANY_REQUESTS,
        headers,
        "429 Too Many Requests\n",
    )
        .into_response()
}

/// HTTP 502 with an HTML body (fault `html_502`); counts it.
fn html_502(shared: &Shared, endpoint: Endpoint) -> Response {
    shared.record_answer(endpoint, AnswerKind::Html502);
    tracing::debug!(endpoint = endpoint.name(), "answered html 502");
    let content_type = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
    (StatusCode::BAD_GATEWAY, content_type, HTML_502_BODY).into_response()
}
