//! The poller: asks JobResult about every open job when it is due, in one call per region
//! per batch, and records what changed.
//!
//! Each job has its own `next_check_at`, set from its age by [`schedule::next_check_in`].
//! A round takes every job due now or within a fifth of `poll.initial_interval`, and the
//! schedule hangs on each job's creation time, so jobs submitted together stay together
//! and share calls. A region's last call of a round, if it has room, also takes the jobs
//! due next within a fifth of `poll.max_interval`, so that jobs queued at scattered moments
//! share calls too. A job the answer leaves out is not an error: it is counted and asked
//! about again next time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, Job};
use crate::config::PollSettings;
use crate::health::{Beat, Health};
use crate::schedule;
use crate::store::{Observation, OpenJob, PolledJob, RoundSummary, Store};

/// Wait after the store itself failed before the next round.
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// Consecutive misses after which a missing job is worth a warning.
const MISSES_WORTH_A_WARNING: u32 = 3;

/// Tracks open jobs until they end.
#[derive(Clone)]
pub struct Poller {
    store: Store,
    api: ApiClient,
    settings: PollSettings,
    jobs_added: Arc<Notify>,
    beat: Arc<Beat>,
}

impl Poller {
    /// A poller that also wakes when `jobs_added` is notified, and reports its activity to
    /// `health` (loop name `poller`).
    pub fn new(
        store: Store,
        api: ApiClient,
        settings: PollSettings,
        jobs_added: Arc<Notify>,
        health: &Health,
    ) -> Self {
        Poller {
            store,
            api,
            settings,
            jobs_added,
            beat: health.beat("poller"),
        }
    }

    /// Polls until `shutdown`. A round already started is finished first, so that what
    /// the API answered is recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let wait = match self.store.next_job_due_in().await {
                Ok(Some(wait)) => wait,
                Ok(None) => self.settings.max_interval,
                Err(err) => {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "cannot read due jobs; will retry"
                    );
                    STORE_ERROR_BACKOFF
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.jobs_added.notified() => continue,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let round = {
                let _working = self.beat.working();
                self.round(&shutdown).await
            };
            if let Err(err) = round {
                tracing::error!(error = format!("{err:#}"), "poll round failed; will retry");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(STORE_ERROR_BACKOFF) => {}
                }
            }
        }
    }

    /// How far ahead of its time a job may be checked alongside others.
    fn early(&self) -> Duration {
        self.settings.initial_interval / 5
    }

    /// How far ahead of its time a job may be taken into a call that goes out anyway, to
    /// fill its last batch: a fifth of `poll.max_interval`. Jobs due at scattered moments
    /// (queued one by one, hours apart) then share calls instead of each costing one.
    fn fill_window(&self) -> Duration {
        (self.settings.max_interval / 5).max(self.early())
    }

    /// One round: every due job of every region, in batches of `poll.batch_size`, with at
    /// most `poll.concurrency` calls in flight. The calls keep going out while a recorder
    /// writes what came back, each write covering every answer that arrived meanwhile: the
    /// database work of a round overlaps its calls, and a busy round costs few commits.
    async fn round(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let (answered, to_record) = mpsc::channel(self.settings.concurrency);
        let recorder = tokio::spawn(record_as_they_come(self.store.clone(), to_record));
        let asked = self.ask_due(shutdown, &answered).await;
        drop(answered);
        let recorded = recorder
            .await
            .map_err(|err| anyhow::anyhow!("poll recorder failed: {err}"))?;
        recorded.and(asked)
    }

    /// Asks about every due job, region by region, page by page, keeping at most
    /// `poll.concurrency` calls in flight; each call hands what it learned to `answered`.
    async fn ask_due(
        &self,
        shutdown: &CancellationToken,
        answered: &mpsc::Sender<Vec<PolledJob>>,
    ) -> anyhow::Result<()> {
        let horizon = self.early();
        let batch_size = self.settings.batch_size;
        let page = batch_size * self.settings.concurrency;
        let mut calls = JoinSet::new();
        let mut failed = None;
        'regions: for region in self.store.due_regions(horizon).await? {
            let mut position: Option<(String, i64)> = None;
            loop {
                let after = position.as_ref().map(|(at, id)| (at.as_str(), *id));
                let mut jobs = self.store.due_jobs(&region, horizon, after, page).await?;
                let Some(last) = jobs.last() else { break };
                position = Some((last.next_check_at.clone(), last.id));
                let full = jobs.len() == page;
                let room = (batch_size - jobs.len() % batch_size) % batch_size;
                if !full && room > 0 {
                    let after = position.as_ref().map(|(at, id)| (at.as_str(), *id));
                    let window = self.fill_window();
                    jobs.extend(self.store.due_jobs(&region, window, after, room).await?);
                }
                let mut jobs = jobs.into_iter().peekable();
                while jobs.peek().is_some() {
                    let batch: Vec<OpenJob> = jobs.by_ref().take(batch_size).collect();
                    while calls.len() >= self.settings.concurrency {
                        failed = failed.or(task_failure(calls.join_next().await));
                    }
                    let poller = self.clone();
                    let region = region.clone();
                    let answered = answered.clone();
                    calls.spawn(async move {
                        let polled = poller.poll_batch(&region, batch).await;
                        // Refused only when recording failed, which the round reports.
                        let _ = answered.send(polled).await;
                    });
                }
                // A closed channel means recording failed: the rest waits for the next round.
                if !full || shutdown.is_cancelled() || answered.is_closed() {
                    break;
                }
            }
            if shutdown.is_cancelled() || answered.is_closed() {
                break 'regions;
            }
        }
        while let Some(joined) = calls.join_next().await {
            failed = failed.or(task_failure(Some(joined)));
        }
        failed.map_or(Ok(()), Err)
    }

    /// One JobResult call for up to `batch_size` jobs of one region, and what it learned
    /// of each.
    async fn poll_batch(&self, region: &str, batch: Vec<OpenJob>) -> Vec<PolledJob> {
        let uuids: Vec<String> = batch.iter().map(|job| job.job_uuid.clone()).collect();
        let observations = match self.api.job_results(region, &uuids).await {
            Ok(answer) => match_answer(&batch, answer.data, &answer.request_id),
            Err(err) => {
                tracing::warn!(
                    %region,
                    jobs = batch.len(),
                    errno = err.errno(),
                    api_request_id = err.request_id(),
                    error = %err,
                    "JobResult call failed; the jobs are asked about again later"
                );
                vec![Observation::CallFailed; batch.len()]
            }
        };
        batch
            .into_iter()
            .zip(observations)
            .map(|(open, observation)| self.plan(open, observation))
            .collect()
    }
}

impl Poller {
    /// Decides the next check of a job from its age and what the round learned: overdue
    /// jobs wait `max_interval`, jobs whose call failed back off further. A job checked
    /// ahead of its time (`due_in`) moves on to its next point, not back to the one it was
    /// checked for.
    fn plan(&self, open: OpenJob, observation: Observation) -> PolledJob {
        let settings = &self.settings;
        let finished = matches!(&observation, Observation::Seen { job, .. } if job.done);
        let newly_overdue = !finished && !open.overdue && open.age >= settings.overdue_after;
        let mut next_check = if open.overdue || newly_overdue {
            settings.max_interval
        } else {
            schedule::next_check_in(
                open.age,
                settings.initial_interval,
                settings.max_interval,
                self.early() + open.due_in,
            )
        };
        if matches!(observation, Observation::CallFailed) {
            let backoff = schedule::retry_delay(
                open.poll_errors + 1,
                settings.initial_interval,
                settings.max_interval,
            );
            next_check = next_check.max(backoff);
        }
        if newly_overdue {
            tracing::warn!(
                request_id = open.request_id,
                job_uuid = %open.job_uuid,
                age_s = open.age.as_secs(),
                "job overdue: still running past poll.overdue_after; still tracking it"
            );
        }
        PolledJob {
            open,
            observation,
            next_check,
            newly_overdue,
        }
    }
}

/// Pairs each asked job with what the answer said of it, by job uuid; a job the answer left
/// out is [`Observation::Missing`], and entries for jobs not asked about are ignored.
fn match_answer(batch: &[OpenJob], jobs: Vec<Job>, api_request_id: &str) -> Vec<Observation> {
    let mut by_uuid: std::collections::HashMap<String, Job> = jobs
        .into_iter()
        .map(|job| (job.id().to_owned(), job))
        .collect();
    batch
        .iter()
        .map(|open| match by_uuid.remove(&open.job_uuid) {
            Some(job) => Observation::Seen {
                job,
                api_request_id: api_request_id.to_owned(),
            },
            None => Observation::Missing,
        })
        .collect()
}

/// Records what the calls of a round hand over, as they do: whatever arrived while one
/// write ran goes into the next.
async fn record_as_they_come(
    store: Store,
    mut to_record: mpsc::Receiver<Vec<PolledJob>>,
) -> anyhow::Result<()> {
    while let Some(mut rows) = to_record.recv().await {
        while let Ok(more) = to_record.try_recv() {
            rows.extend(more);
        }
        warn_about_missing(&rows);
        let summary = store.record_round(&rows).await?;
        log_round(rows.len(), &summary);
    }
    Ok(())
}

/// The failure of a call task that ended, if it failed. Its jobs keep their due time and
/// are asked about in the next round.
fn task_failure(joined: Option<Result<(), JoinError>>) -> Option<anyhow::Error> {
    match joined {
        Some(Err(err)) => Some(anyhow::anyhow!("poll task failed: {err}")),
        _ => None,
    }
}

fn warn_about_missing(rows: &[PolledJob]) {
    for polled in rows {
        let misses = polled.open.missed_polls + 1;
        if matches!(polled.observation, Observation::Missing)
            && misses % MISSES_WORTH_A_WARNING == 0
        {
            tracing::warn!(
                region = %polled.open.region_id,
                request_id = polled.open.request_id,
                job_uuid = %polled.open.job_uuid,
                misses,
                "JobResult keeps leaving this job out; still tracking it"
            );
        }
    }
}

fn log_round(jobs: usize, summary: &RoundSummary) {
    tracing::debug!(
        jobs,
        changed = summary.changed,
        missing = summary.missing,
        "jobs polled"
    );
    for finished in &summary.finished {
        if finished.success {
            tracing::info!(request_id = finished.request_id, job_uuid = %finished.job_uuid, "import succeeded");
        } else {
            tracing::warn!(
                request_id = finished.request_id,
                job_uuid = %finished.job_uuid,
                result = %finished.result,
                "import failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(uuid: &str) -> OpenJob {
        OpenJob {
            id: 1,
            request_id: 1,
            region_id: "gz".into(),
            job_uuid: uuid.into(),
            last: Job::default(),
            age: Duration::ZERO,
            missed_polls: 0,
            poll_errors: 0,
            overdue: false,
            next_check_at: String::new(),
            due_in: Duration::ZERO,
        }
    }

    fn answered(uuid: &str) -> Job {
        Job {
            job_uuid: uuid.into(),
            progress: 50.0,
            ..Job::default()
        }
    }

    #[test]
    fn answers_are_matched_by_uuid_whatever_their_order_or_count() {
        let batch = [open("a"), open("b"), open("c")];
        let cases: [(&str, Vec<Job>, [bool; 3]); 4] = [
            (
                "all, reordered",
                vec![answered("c"), answered("a"), answered("b")],
                [true, true, true],
            ),
            (
                "fewer than asked",
                vec![answered("b")],
                [false, true, false],
            ),
            ("empty data", vec![], [false, false, false]),
            (
                "a stranger only",
                vec![answered("zzz")],
                [false, false, false],
            ),
        ];
        for (name, jobs, seen) in cases {
            let got = match_answer(&batch, jobs, "req");
            let got: Vec<bool> = got
                .iter()
                .map(|o| matches!(o, Observation::Seen { .. }))
                .collect();
            assert_eq!(got, seen, "{name}");
        }
    }
}
