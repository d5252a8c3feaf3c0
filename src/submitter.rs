//! The submitter: claims due queued rows and sends each to ImportCIMG, a bounded number at
//! a time, then records what came of it.
//!
//! Outcomes, by [`Disposition`]:
//! - a job: the request is `submitted` and the poller is woken;
//! - transient: back to `queued` with exponential backoff (and any `Retry-After`), until
//!   `queue.max_attempts`, then `failed`;
//! - permanent: `failed` with errno, errmsg and requestId;
//! - unknown (sent, no clear answer): `in_doubt`, never sent again blindly, because the
//!   API has no idempotency key and a second call could copy the image twice;
//! - account-wide: the request goes back to `queued` without spending its attempt, and
//!   all submissions pause; one request is tried every `queue.pause_probe_interval` until
//!   the account works again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{Answer, ApiClient, ApiError, Disposition, Job};
use crate::config::Settings;
use crate::health::{Beat, Health};
use crate::schedule;
use crate::store::{ClaimedRequest, Failure, RequestState, Store, Submission};
use crate::validate;

/// Wait after the store itself failed (not a lock: those are waited out inside the store).
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// Sends queued requests to the API.
#[derive(Clone)]
pub struct Submitter {
    store: Store,
    api: ApiClient,
    settings: Arc<Settings>,
    jobs_added: Arc<Notify>,
    pause: Arc<Mutex<Pause>>,
    health: Arc<Health>,
    beat: Arc<Beat>,
}

/// Whether submissions are held back because the account is refused.
#[derive(Debug, Default)]
struct Pause {
    /// Set while paused: when the next probe may go out.
    until: Option<Instant>,
}

impl Submitter {
    /// A submitter that wakes `jobs_added` whenever it records a new job and reports its
    /// activity and pauses to `health` (loop name `submitter`).
    pub fn new(
        store: Store,
        api: ApiClient,
        settings: Arc<Settings>,
        jobs_added: Arc<Notify>,
        health: Arc<Health>,
    ) -> Self {
        Submitter {
            store,
            api,
            settings,
            jobs_added,
            pause: Arc::default(),
            beat: health.beat("submitter"),
            health,
        }
    }

    /// Claims and submits until `shutdown`; then stops claiming and waits for the calls
    /// in flight to be answered and recorded (the caller bounds that wait).
    ///
    /// The calls run as tasks that only talk to the API. This loop takes what they brought
    /// back, every call that came back since it last looked, and records the jobs in the
    /// same transaction that claims the next rows: one commit per step, whatever the load.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut in_flight = JoinSet::new();
        // Jobs that came back, recorded with the next claim.
        let mut pending: Vec<Submission> = Vec::new();
        while !shutdown.is_cancelled() {
            // A stop asked for while a step waits (say, on an operator's lock) abandons the
            // step: its transaction rolls back, no new call leaves after the signal, and the
            // jobs it held are recorded below.
            let step = async {
                let _working = self.beat.working();
                self.record_and_claim(&mut pending, &mut in_flight).await
            };
            let wait = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                wait = step => wait,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(first) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let answered = with_the_rest(first, &mut in_flight);
                    pending.extend(self.sort_out(answered).await);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if !in_flight.is_empty() {
            tracing::info!(
                in_flight = in_flight.len(),
                "waiting for ImportCIMG calls in flight"
            );
        }
        while let Some(first) = in_flight.join_next().await {
            let answered = with_the_rest(first, &mut in_flight);
            pending.extend(self.sort_out(answered).await);
        }
        if !pending.is_empty() {
            let _working = self.beat.working();
            let first_check = self.settings.poll.initial_interval;
            if let Err(err) = self.store.record_submitted(&pending, first_check).await {
                unrecorded(&pending, &err);
            }
        }
    }

    /// Records the jobs in `pending` and claims what can be sent now, in one transaction,
    /// then starts the calls; returns how long to wait before the next step if no call
    /// comes back first. `pending` is emptied once recorded.
    async fn record_and_claim(
        &self,
        pending: &mut Vec<Submission>,
        in_flight: &mut JoinSet<Answered>,
    ) -> Duration {
        let scan = self.settings.queue.scan_interval;
        let free = self
            .settings
            .queue
            .concurrency
            .saturating_sub(in_flight.len());
        let (limit, wait) = match self.pause_state() {
            PauseState::Running => (free, scan),
            PauseState::Probe => (free.min(1), scan),
            PauseState::Waiting(left) => (0, left),
        };
        if limit == 0 && pending.is_empty() {
            return wait;
        }
        if pending.is_empty() {
            // Most scans find nothing due: a read says so without taking the write lock.
            match self.store.next_queued_in().await {
                Ok(Some(next)) if next.is_zero() => {}
                Ok(Some(next)) => return next.min(wait),
                Ok(None) => return wait,
                Err(err) => {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "cannot read the queue; will retry"
                    );
                    return STORE_ERROR_BACKOFF;
                }
            }
        }
        let allowed = &self.settings.queue.allowed_regions;
        let first_check = self.settings.poll.initial_interval;
        let claimed = match self
            .store
            .record_and_claim(pending, first_check, limit, |fields| {
                validate::check(fields, allowed)
            })
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::error!(
                    error = format!("{err:#}"),
                    unrecorded_jobs = pending.len(),
                    "cannot record submissions or claim queued requests; will retry"
                );
                return STORE_ERROR_BACKOFF;
            }
        };
        if !pending.is_empty() {
            pending.clear();
            self.jobs_added.notify_one();
        }
        if limit == 0 {
            return wait;
        }
        let filled = claimed.len() == limit;
        for request in claimed {
            let api = self.api.clone();
            in_flight.spawn(async move {
                let outcome = api.import_cimg(&request.spec).await;
                Answered { request, outcome }
            });
        }
        if filled {
            // More may be due: look again as soon as a call finishes.
            return scan;
        }
        match self.store.next_queued_in().await {
            Ok(Some(next)) if next > Duration::ZERO => next.min(scan),
            _ => scan,
        }
    }

    /// Whether to claim freely, send one probe (and hold the rest until the next one), or
    /// keep waiting.
    fn pause_state(&self) -> PauseState {
        let mut pause = self
            .pause
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(until) = pause.until else {
            return PauseState::Running;
        };
        let now = Instant::now();
        match until.checked_duration_since(now) {
            Some(left) if !left.is_zero() => PauseState::Waiting(left),
            _ => {
                pause.until = Some(now + self.settings.queue.pause_probe_interval);
                PauseState::Probe
            }
        }
    }

    /// Sorts out what calls brought back: each failure is recorded by its own rule, and
    /// the jobs are returned, to be recorded with the next claim.
    async fn sort_out(&self, answered: Vec<Answered>) -> Vec<Submission> {
        let mut submitted = Vec::with_capacity(answered.len());
        for Answered { request, outcome } in answered {
            match outcome {
                Ok(answer) => {
                    self.resume_if_paused();
                    tracing::info!(
                        request_id = request.id,
                        region = %request.spec.region_id,
                        name = %request.spec.name,
                        job_uuid = %answer.data.id(),
                        api_request_id = %answer.request_id,
                        "request submitted"
                    );
                    submitted.push(Submission {
                        request_id: request.id,
                        job: answer.data,
                        api_request_id: answer.request_id,
                    });
                }
                Err(err) => {
                    let _working = self.beat.working();
                    if let Err(record_err) = self.record_failure(&request, &err).await {
                        tracing::error!(
                            request_id = request.id,
                            error = format!("{record_err:#}"),
                            "cannot record the outcome of a submission; the request stays \
                             submitting and is reconciled at the next start"
                        );
                    }
                }
            }
        }
        submitted
    }

    async fn record_failure(&self, request: &ClaimedRequest, err: &ApiError) -> anyhow::Result<()> {
        let queue = &self.settings.queue;
        let disposition = err.disposition(&self.settings.api.errno);
        let mut failure = Failure {
            reason: err.to_string(),
            errno: err.errno(),
            errmsg: err.errmsg().map(str::to_owned),
            api_request_id: err.request_id().map(str::to_owned),
        };
        tracing::warn!(
            request_id = request.id,
            attempt = request.attempts,
            errno = err.errno(),
            api_request_id = err.request_id(),
            disposition = ?disposition,
            error = %err,
            "submission failed"
        );
        match disposition {
            Disposition::Transient | Disposition::UnknownErrno => {
                self.resume_if_paused();
                if request.attempts >= queue.max_attempts {
                    failure.reason = format!(
                        "gave up after {} attempts: {}",
                        request.attempts, failure.reason
                    );
                    return self
                        .store
                        .record_stopped(request.id, RequestState::Failed, &failure)
                        .await;
                }
                let backoff =
                    schedule::retry_delay(request.attempts, queue.retry_initial, queue.retry_max);
                let delay = backoff.max(err.retry_after().unwrap_or_default());
                self.store
                    .record_retry(request.id, &failure, delay, false)
                    .await
            }
            Disposition::Permanent => {
                self.resume_if_paused();
                self.store
                    .record_stopped(request.id, RequestState::Failed, &failure)
                    .await
            }
            Disposition::Unknown => {
                failure.reason = format!(
                    "{}; the image may have been created, so the request is not sent again \
                     until it is reconciled",
                    failure.reason
                );
                self.store
                    .record_stopped(request.id, RequestState::InDoubt, &failure)
                    .await
            }
            Disposition::AccountWide => {
                self.pause_for_account(err);
                failure.reason = format!("submissions paused: {}", failure.reason);
                self.store
                    .record_retry(request.id, &failure, Duration::ZERO, true)
                    .await
            }
        }
    }

    fn pause_for_account(&self, err: &ApiError) {
        let probe = self.settings.queue.pause_probe_interval;
        let mut pause = self
            .pause
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pause.until.is_none() {
            tracing::error!(
                errno = err.errno(),
                api_request_id = err.request_id(),
                error = %err,
                probe_every_s = probe.as_secs(),
                "the API refuses the account; all submissions paused until a probe succeeds \
                 (check the token and the account's balance and permissions)"
            );
        }
        pause.until = Some(Instant::now() + probe);
        self.health.set_paused(true);
    }

    fn resume_if_paused(&self) {
        let mut pause = self
            .pause
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pause.until.take().is_some() {
            self.health.set_paused(false);
            tracing::info!("the API accepts the account again; submissions resumed");
        }
    }
}

/// An ImportCIMG call that came back, with or without a job, not yet recorded.
struct Answered {
    request: ClaimedRequest,
    outcome: Result<Answer<Job>, ApiError>,
}

/// `first` and every other call that has already come back.
fn with_the_rest(
    first: Result<Answered, JoinError>,
    in_flight: &mut JoinSet<Answered>,
) -> Vec<Answered> {
    let mut answered = Vec::with_capacity(in_flight.len() + 1);
    let mut joined = Some(first);
    while let Some(result) = joined.take().or_else(|| in_flight.try_join_next()) {
        match result {
            Ok(one) => answered.push(one),
            // Only a panic in the HTTP client gets here; its request stays `submitting`
            // and is reconciled at the next start.
            Err(err) => tracing::error!(error = %err, "an ImportCIMG call task failed"),
        }
    }
    answered
}

fn unrecorded(pending: &[Submission], err: &anyhow::Error) {
    let request_ids: Vec<String> = pending
        .iter()
        .map(|one| one.request_id.to_string())
        .collect();
    tracing::error!(
        request_ids = %request_ids.join(","),
        error = format!("{err:#}"),
        "cannot record the jobs of these submissions; the requests stay submitting and are \
         reconciled at the next start"
    );
}

enum PauseState {
    Running,
    Probe,
    Waiting(Duration),
}
