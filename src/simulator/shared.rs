//! State shared by every connection of one simulator: settings, fault switches, the simulated
//! cloud and the counters.
//!
//! Each part sits behind its own short-lived lock; no lock is ever held across an `.await`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::faults::{roll, Endpoint, Faults};
use super::jobs::{now_ms, Job, Page, Store};
use super::parse::{ImportRequest, JobResultRequest, ListRequest};
use super::stats::{AnswerKind, JobResultCall, Recorder, Stats};

/// Everything the handlers of one simulator share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Bearer token required on API calls; `None` accepts any non-empty token.
    pub(crate) token: Option<String>,
    job_duration: Duration,
    job_spread: Duration,
    faults: Mutex<Faults>,
    store: Mutex<Store>,
    recorder: Mutex<Recorder>,
}

/// Locks a mutex, carrying on with the data if another thread panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// New state with no jobs and zeroed counters.
    pub(crate) fn new(
        token: Option<String>,
        job_duration: Duration,
        job_spread: Duration,
        faults: Faults,
    ) -> Shared {
        Shared {
            token,
            job_duration,
            job_spread,
            faults: Mutex::new(faults),
            store: Mutex::new(Store::default()),
            recorder: Mutex::new(Recorder::default()),
        }
    }

    /// The fault switches in force.
    pub(crate) fn faults(&self) -> Faults {
        *lock(&self.faults)
    }

    /// Replaces the fault switches.
    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        lock(&self.recorder).snapshot()
    }

    /// Counts a call that reached a handler.
    pub(crate) fn record_call(&self, endpoint: Endpoint) {
        lock(&self.recorder).call(endpoint);
    }

    /// Counts an answer.
    pub(crate) fn record_answer(&self, endpoint: Endpoint, kind: AnswerKind) {
        lock(&self.recorder).answer(endpoint, kind);
    }

    /// Duration of a new job: the configured duration plus a random part of the spread.
    fn next_job_duration(&self) -> Duration {
        if self.job_spread.is_zero() {
            return self.job_duration;
        }
        self.job_duration + self.job_spread.mul_f64(rand::random::<f64>())
    }

    /// Creates one job and image per requested image, and counts them as imports.
    pub(crate) fn create_jobs(&self, request: &ImportRequest) -> Vec<Job> {
        let jobs: Vec<Job> = {
            let mut store = lock(&self.store);
            request
                .images
                .iter()
                .map(|spec| store.create(&request.region, spec, self.next_job_duration()))
                .collect()
        };
        let mut recorder = lock(&self.recorder);
        for job in &jobs {
            recorder.import(&job.region, &job.name);
        }
        jobs
    }

    /// The JobResult `data` for a request: known jobs of the region, in the order asked, each
    /// left out with probability `omit_share`. The call is added to the JobResult log.
    pub(crate) fn job_results(&self, request: &JobResultRequest, omit_share: f64) -> Vec<Value> {
        let now = tokio::time::Instant::now();
        let data: Vec<Value> = {
            let store = lock(&self.store);
            let mut seen = std::collections::HashSet::new();
            request
                .job_uuids
                .iter()
                .filter(|uuid| seen.insert(uuid.as_str()))
                .filter_map(|uuid| store.job(&request.region, uuid))
                .filter(|_| !roll(omit_share))
                .map(|job| job.result_json(now))
                .collect()
        };
        lock(&self.recorder).job_result(JobResultCall {
            region: request.region.clone(),
            asked: request.job_uuids.len() as u64,
            returned: data.len() as u64,
            at_ms: now_ms(),
        });
        data
    }

    /// One page of ListCIMG.
    pub(crate) fn list(&self, request: &ListRequest) -> Page {
        lock(&self.store).list(
            &request.region,
            &request.names,
            request.start,
            request.limit,
        )
    }
}
