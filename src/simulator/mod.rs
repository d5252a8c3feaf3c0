//! A loopback HTTP simulator of the DiDi Cloud OpenAPI, as far as `cimg-importd` uses it.
//!
//! The public service is gone, so the daemon's tests, demo and benchmarks run its real HTTP
//! client against this server instead. It implements the three endpoints of the API contract
//! (`didiyun-api.md`) with jobs that progress over time, keeps counters that let a test prove
//! nothing was imported twice, and has switches for the faults a real gateway produces.
//!
//! # API endpoints
//!
//! Every answer is HTTP 200 with the envelope `{"errno", "errmsg", "requestId", "data"}` and a
//! fresh 32-hex `requestId`; failures have a Chinese `errmsg` and `data: []`.
//!
//! - `POST /dicloud/i/storage/cimg/import`: body `regionId` (target region) and `cimg`, an
//!   array of CIMGInput or a single CIMGInput (the documented curl form). Bad input is errno 1;
//!   `originImageUuid` `00000000000000000000000000000000` is errno 41026 ("查询镜像失败",
//!   source image not found). Otherwise one job per image is created, each with a new image
//!   in the target region, and `data` lists the jobs.
//! - `GET /dicloud/i/result?regionId=R&jobUuids=a,b,c`: the jobs of region `R` among those
//!   asked, in the order asked; unknown uuids and jobs of other regions are left out.
//! - `POST /dicloud/i/storage/cimg/list`: body `regionId`, `start`, `limit` (1..=1000) and
//!   optional `condition.names` (exact names; absent or empty means all). `data` is an object
//!   `{"count", "items"}` (the documented quirk), items sorted by `createTime` ascending.
//!
//! Auth: `Authorization: Bearer <token>` on every API call. With a configured token only that
//! token is accepted; without one any non-empty bearer token is. Anything else is errno 4.
//!
//! # Job outcome rules
//!
//! A job's progress rises linearly from 0 to 100 over its duration ([`SimOptions::job_duration`],
//! default 20 s, plus a random extra of up to [`SimOptions::job_spread`], default none). How it
//! ends depends on the name of the image (case-insensitive):
//!
//! - name contains `fail`: progress climbs to 60 and stays there; at the end of the duration
//!   the job ends in failure (`done` true, `success` false, `status` "Fail", progress 60,
//!   `result` "simulated copy failure: image name contains \"fail\""); its image stays listed
//!   with status "Error". `fail` wins when the name also contains `stuck`;
//! - name contains `stuck`: the job never ends; progress climbs to 99 and stays, `done` stays
//!   false and the image stays "Importing";
//! - any other name: at the end of the duration the job succeeds (progress 100, `done` and
//!   `success` true, `status` "Success") and the image becomes "Ready".
//!
//! While a job runs its image is "Importing" and carries a `job` object in ListCIMG.
//!
//! # Faults and control
//!
//! See [`Faults`] for the switches, settable at start ([`SimOptions::faults`], CLI options),
//! and while running ([`Simulator::set_faults`], `PUT /_sim/faults`). `GET /_sim/stats` serves
//! the [`Stats`] counters. The control endpoints need no token.
//!
//! The simulator only ever binds loopback addresses.

mod api;
mod cli;
mod control;
mod faults;
mod jobs;
mod parse;
mod server;
mod shared;
mod stats;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::{HTML_502_BODY, IMPORT_PATH, JOB_RESULT_PATH, LIST_PATH};
pub use cli::{run, SimulateArgs, SIMULATE_ABOUT};
pub use control::{FAULTS_PATH, STATS_PATH};
pub use faults::{Faults, PerEndpoint, ShareError};
pub use jobs::{FAIL_PROGRESS, FAIL_REASON, STUCK_PROGRESS};
pub use parse::{MAX_LIST_LIMIT, MISSING_IMAGE_UUID};
pub use stats::{AnswerCounts, ImportCount, JobResultCall, Stats, JOB_RESULT_LOG_LIMIT};

use shared::Shared;

/// Default duration of a simulated import job: 20 seconds.
pub const DEFAULT_JOB_DURATION: Duration = Duration::from_secs(20);

/// How a simulator behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Bearer token required on API calls. `None` (the default) accepts any non-empty token.
    pub token: Option<String>,
    /// How long a job runs before it ends (default [`DEFAULT_JOB_DURATION`], 20 s).
    pub job_duration: Duration,
    /// Each job runs `job_duration` plus a uniformly random extra between zero and this
    /// (default zero: every job runs exactly `job_duration`).
    pub job_spread: Duration,
    /// Fault switches in force at start (default: none).
    pub faults: Faults,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            token: None,
            job_duration: DEFAULT_JOB_DURATION,
            job_spread: Duration::ZERO,
            faults: Faults::default(),
        }
    }
}

/// A running simulator. Dropping it stops it too, without waiting; prefer
/// [`Simulator::shutdown`].
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Binds `listen` (a loopback address; port 0 picks a free port) and starts serving in the
    /// background. Fails with `InvalidInput` for a non-loopback address or a fault share
    /// outside 0.0..=1.0, and with the bind error otherwise.
    pub async fn start(listen: SocketAddr, opts: SimOptions) -> io::Result<Simulator> {
        if !listen.ip().is_loopback() {
            let msg = format!("the simulator binds only loopback addresses, not {listen}");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        opts.faults
            .validate()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(
            opts.token,
            opts.job_duration,
            opts.job_spread,
            opts.faults,
        ));
        let (stop, stop_rx) = watch::channel(false);
        let router = api::router(Arc::clone(&shared));
        let task = tokio::spawn(server::accept_loop(listener, router, stop_rx));
        tracing::debug!(%addr, "simulator started");
        Ok(Simulator {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// The address the simulator listens on (with the real port when started with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the API, such as `http://127.0.0.1:8780` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the counters (the same as `GET /_sim/stats`).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The fault switches in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the fault switches; they apply to calls that arrive from now on. Shares
    /// outside 0.0..=1.0 are clamped into it (NaN becomes 0.0), with a warning.
    pub fn set_faults(&self, faults: Faults) {
        if let Err(err) = faults.validate() {
            tracing::warn!(error = %err, "fault share clamped");
        }
        self.shared.set_faults(faults.clamped());
    }

    /// Stops accepting connections, closes every open connection (ending hung calls without an
    /// answer) and returns once the listener is closed.
    pub async fn shutdown(self) {
        // Sending fails only when the accept loop is already gone, which is what we want.
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "simulator task ended abnormally");
        }
        tracing::debug!(addr = %self.addr, "simulator stopped");
    }
}
