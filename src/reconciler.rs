//! The reconciler: settles `in_doubt` requests without ever risking a second copy.
//!
//! A request is `in_doubt` when its ImportCIMG call may have reached the API but no clear
//! answer was recorded (a timeout after sending, a gateway error, the daemon killed
//! mid-call). ImportCIMG has no idempotency key, so instead of sending again the
//! reconciler asks ListCIMG for images of that name in the target region, created since
//! the request's first attempt and not already recorded for any request:
//!
//! - exactly one: adopt it: track its job if one runs, or record how it ended;
//! - none, once the latest attempt is older than `reconcile.grace` (an unanswered call may
//!   still be creating its image for a moment): nothing was created, the request is
//!   queued again (its attempts are kept);
//! - none yet within the grace, several, or the listing failed: stay `in_doubt`, say
//!   why, look again after `reconcile.interval`.
//!
//! It also looks up the image of a job that JobResult has left out of
//! [`LOOKUP_AFTER_MISSES`] answers in a row: still importing, it is polled on; ready or
//! in error, the job's end is recorded; not listed at all, the job is recorded as lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, Image};
use crate::config::Settings;
use crate::health::{Beat, Health};
use crate::store::{DoubtfulRequest, JobOutcome, ListedEnd, MissingJob, Store, TrackedJob};

/// Most in-doubt requests looked up in one pass.
const PASS_SIZE: usize = 50;

/// Most images asked for in one ListCIMG page.
const PAGE_SIZE: u64 = 100;

/// Most pages read for one name; more images than this of one name is itself a reason to
/// leave the decision to a person.
const MAX_PAGES: u64 = 10;

/// Answers in a row that leave a job out before its image is looked up.
pub const LOOKUP_AFTER_MISSES: u32 = 5;

/// How much earlier than our first attempt the provider's clock may date an image we
/// created (clocks differ).
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Settles `in_doubt` requests through ListCIMG.
#[derive(Clone)]
pub struct Reconciler {
    store: Store,
    api: ApiClient,
    settings: Arc<Settings>,
    jobs_added: Arc<Notify>,
    beat: Arc<Beat>,
}

/// What a look-up concluded for one request.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// One image fits: it is ours.
    Adopt(Image),
    /// No image fits and the grace has passed: nothing was created.
    Requeue,
    /// Undecided for now, with the reason.
    Wait(String),
}

impl Reconciler {
    /// A reconciler that wakes `jobs_added` when it adopts a running job, and reports its
    /// activity to `health` (loop name `reconciler`).
    pub fn new(
        store: Store,
        api: ApiClient,
        settings: Arc<Settings>,
        jobs_added: Arc<Notify>,
        health: &Health,
    ) -> Self {
        Reconciler {
            store,
            api,
            settings,
            jobs_added,
            beat: health.beat("reconciler"),
        }
    }

    /// Looks up due `in_doubt` requests until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = self.settings.reconcile.interval;
        while !shutdown.is_cancelled() {
            let pass = {
                let _working = self.beat.working();
                self.pass().await
            };
            if let Err(err) = pass {
                tracing::error!(
                    error = format!("{err:#}"),
                    "cannot reconcile in-doubt requests; will retry"
                );
            }
            let wait = match self.store.next_in_doubt_in().await {
                Ok(Some(next)) => next.clamp(Duration::from_millis(100), interval),
                _ => interval,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look at every due `in_doubt` request.
    ///
    /// # Errors
    ///
    /// The database cannot be read or written.
    pub async fn pass(&self) -> anyhow::Result<()> {
        for request in self.store.in_doubt_due(PASS_SIZE).await? {
            let verdict = match self.candidates(&request).await {
                Ok(images) => self.judge(&request, images).await?,
                Err(err) => Verdict::Wait(format!("cannot look for the image yet: {err}")),
            };
            self.settle(&request, verdict).await?;
        }
        for job in self
            .store
            .missing_jobs(LOOKUP_AFTER_MISSES, PASS_SIZE)
            .await?
        {
            self.look_up_missing(&job).await?;
        }
        Ok(())
    }

    /// Decides what became of a job JobResult keeps leaving out, from its image.
    async fn look_up_missing(&self, job: &MissingJob) -> anyhow::Result<()> {
        let names = [job.name.clone()];
        let listed = match self
            .api
            .list_cimg(&job.region_id, &names, 0, PAGE_SIZE)
            .await
        {
            Ok(answer) => answer.data.items,
            Err(err) => {
                tracing::warn!(job_uuid = %job.job_uuid, error = %err, "cannot look up a missing job's image; trying later");
                return Ok(());
            }
        };
        let image = listed
            .into_iter()
            .find(|image| image.cimg_uuid == job.resource_uuid);
        let end = match image {
            Some(image) if image.job.as_ref().is_some_and(|j| !j.done) => {
                return self.store.record_job_listed(job.id).await;
            }
            Some(image) => match image.status.to_ascii_lowercase().as_str() {
                "ready" | "available" => ListedEnd::Succeeded(format!(
                    "JobResult left job {} out {} times; ListCIMG shows image {} ready",
                    job.job_uuid, job.misses, image.cimg_uuid
                )),
                status if status.contains("error") || status.contains("fail") => {
                    ListedEnd::Failed(format!(
                        "JobResult left job {} out {} times; ListCIMG shows image {} in status {}",
                        job.job_uuid, job.misses, image.cimg_uuid, image.status
                    ))
                }
                _ => return self.store.record_job_listed(job.id).await,
            },
            None => ListedEnd::Lost(format!(
                "JobResult left job {} out {} times and ListCIMG does not list image {}: the job \
                 is lost; check the target region before retrying",
                job.job_uuid, job.misses, job.resource_uuid
            )),
        };
        tracing::warn!(request_id = job.request_id, job_uuid = %job.job_uuid, end = ?end, "missing job settled by ListCIMG");
        self.store.record_job_ended_by_listing(job, &end).await
    }

    /// Images of the request's name in its region, created since its first attempt.
    async fn candidates(&self, request: &DoubtfulRequest) -> Result<Vec<Image>, ApiError> {
        let names = [request.name.clone()];
        let since = request.first_attempt_ms - CLOCK_SKEW.as_millis() as i64;
        let mut found = Vec::new();
        for page in 0..MAX_PAGES {
            let answer = self
                .api
                .list_cimg(&request.region_id, &names, page * PAGE_SIZE, PAGE_SIZE)
                .await?;
            let listed = answer.data.items.len() as u64;
            found.extend(
                answer
                    .data
                    .items
                    .into_iter()
                    .filter(|image| image.name == request.name && image.create_time >= since),
            );
            if listed < PAGE_SIZE || (page + 1) * PAGE_SIZE >= answer.data.count {
                break;
            }
        }
        Ok(found)
    }

    async fn judge(
        &self,
        request: &DoubtfulRequest,
        images: Vec<Image>,
    ) -> anyhow::Result<Verdict> {
        let uuids: Vec<String> = images.iter().map(|image| image.cimg_uuid.clone()).collect();
        let owned = self.store.owned_images(&uuids).await?;
        let mut free: Vec<Image> = images
            .into_iter()
            .filter(|image| !owned.contains(&image.cimg_uuid))
            .collect();
        let grace = self.settings.reconcile.grace;
        Ok(match free.len() {
            1 => Verdict::Adopt(free.remove(0)),
            0 if request.since_last_attempt >= grace => Verdict::Requeue,
            0 => Verdict::Wait(format!(
                "no image named `{}` in `{}` yet; looking again until {} after the latest attempt",
                request.name,
                request.region_id,
                humantime::format_duration(grace)
            )),
            n => Verdict::Wait(format!(
                "{n} images named `{}` were created in `{}` since the first attempt ({}): \
                 delete the extra copies in the console; the one left is then adopted",
                request.name,
                request.region_id,
                free.iter()
                    .map(|image| image.cimg_uuid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
    }

    async fn settle(&self, request: &DoubtfulRequest, verdict: Verdict) -> anyhow::Result<()> {
        match verdict {
            Verdict::Adopt(image) => self.adopt(request, image).await,
            Verdict::Requeue => {
                tracing::info!(
                    request_id = request.id,
                    region = %request.region_id,
                    name = %request.name,
                    "no image was created by the unanswered call; queued again"
                );
                let detail = format!(
                    "ListCIMG shows no image named `{}` in `{}` {} after the latest attempt: \
                     nothing was created; queued again",
                    request.name,
                    request.region_id,
                    humantime::format_duration(Duration::from_secs(
                        request.since_last_attempt.as_secs()
                    ))
                );
                self.store.record_requeued(request.id, &detail).await
            }
            Verdict::Wait(reason) => {
                if request.reason.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(request_id = request.id, name = %request.name, reason = %reason, "request still in doubt");
                }
                self.store
                    .record_still_in_doubt(request.id, &reason, self.settings.reconcile.interval)
                    .await
            }
        }
    }

    async fn adopt(&self, request: &DoubtfulRequest, image: Image) -> anyhow::Result<()> {
        tracing::info!(
            request_id = request.id,
            name = %request.name,
            image = %image.cimg_uuid,
            status = %image.status,
            "found the image an unanswered call created; adopting it"
        );
        if let Some(job) = image
            .job
            .as_ref()
            .filter(|job| !job.id().is_empty() && !job.done)
        {
            let tracked = TrackedJob {
                job,
                resource_uuid: &image.cimg_uuid,
                api_request_id: None,
            };
            let detail = format!(
                "found image {} ({}) with its job still running: tracking it",
                image.cimg_uuid, image.status
            );
            self.store
                .record_job(
                    request.id,
                    &tracked,
                    Duration::ZERO,
                    &JobOutcome {
                        from: "in_doubt",
                        kind: "adopted",
                        detail: &detail,
                    },
                )
                .await?;
            self.jobs_added.notify_one();
            return Ok(());
        }
        let status = image.status.to_ascii_lowercase();
        if status == "ready" || status == "available" {
            let detail = format!("found image {} already ready", image.cimg_uuid);
            return self
                .store
                .record_adopted_image(request.id, &image.cimg_uuid, true, &detail)
                .await;
        }
        if status.contains("error") || status.contains("fail") {
            let detail = format!(
                "found image {} in status {}: the copy failed",
                image.cimg_uuid, image.status
            );
            return self
                .store
                .record_adopted_image(request.id, &image.cimg_uuid, false, &detail)
                .await;
        }
        let reason = format!(
            "found image {} in status `{}` with no job to follow; looking again later",
            image.cimg_uuid, image.status
        );
        self.store
            .record_still_in_doubt(request.id, &reason, self.settings.reconcile.interval)
            .await
    }
}
