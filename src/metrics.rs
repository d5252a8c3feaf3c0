//! The optional Prometheus endpoint (`metrics.listen`, off by default).
//!
//! Counters and the latency histogram are recorded where the calls are made (the API
//! client); the figures that live in the database (requests by state, age of the oldest
//! queued request, jobs tracked and overdue) are read at each scrape, so they are never
//! stale and cost nothing between scrapes.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::store::{RequestState, Store};

/// Calls to the API, by `endpoint` and `outcome`.
pub const API_CALLS: &str = "cimg_importd_api_calls_total";

/// Time from sending a call to the end of its answer, by `endpoint`.
pub const API_CALL_SECONDS: &str = "cimg_importd_api_call_duration_seconds";

/// Histogram buckets for [`API_CALL_SECONDS`], in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use. Until it is, recording a counter
/// costs nothing.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(API_CALL_SECONDS.to_owned()), &LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; API call counters will be missing"
            );
        }
        handle
    })
}

#[derive(Clone)]
struct Scrape {
    store: Store,
    health: Arc<Health>,
}

/// Serves `GET /metrics` on `listen` until `stop`.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve(
    listen: SocketAddr,
    store: Store,
    health: Arc<Health>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    handle();
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|err| {
        anyhow::anyhow!("cannot listen for metrics on {listen} (`metrics.listen`): {err}")
    })?;
    tracing::info!(address = %listener.local_addr()?, "metrics at /metrics");
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { store, health });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "metrics endpoint failed");
        }
    });
    Ok(())
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut text = handle().render();
    match scrape.store.metrics_snapshot().await {
        Ok(snapshot) => {
            gauge(
                &mut text,
                "cimg_importd_requests",
                "Requests by state.",
                &[],
            );
            for state in RequestState::ALL {
                let count = snapshot
                    .by_state
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                let _ = writeln!(
                    text,
                    "cimg_importd_requests{{state=\"{}\"}} {count}",
                    state.as_str()
                );
            }
            let oldest = snapshot.oldest_queued_seconds.unwrap_or(0.0);
            gauge(
                &mut text,
                "cimg_importd_oldest_queued_seconds",
                "Age of the oldest queued request.",
                &[oldest],
            );
            gauge(
                &mut text,
                "cimg_importd_jobs_tracked",
                "Jobs being polled.",
                &[snapshot.jobs_tracked as f64],
            );
            gauge(
                &mut text,
                "cimg_importd_jobs_overdue",
                "Jobs still running past poll.overdue_after.",
                &[snapshot.jobs_overdue as f64],
            );
        }
        Err(err) => {
            tracing::warn!(
                error = format!("{err:#}"),
                "metrics scrape cannot read the database"
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain")],
                format!("database unreadable: {err:#}\n"),
            );
        }
    }
    let paused = if scrape.health.is_paused() { 1.0 } else { 0.0 };
    gauge(
        &mut text,
        "cimg_importd_submissions_paused",
        "1 while the API refuses the account.",
        &[paused],
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
}

/// Appends a gauge's HELP and TYPE lines and, when given, its one unlabelled value.
fn gauge(text: &mut String, name: &str, help: &str, value: &[f64]) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
    if let Some(value) = value.first() {
        let _ = writeln!(text, "{name} {value}");
    }
}
