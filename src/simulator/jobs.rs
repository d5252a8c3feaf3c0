//! The simulated cloud: import jobs and the images they create, per region.
//!
//! Every ImportCIMG image becomes one job and one image in the target region. Nothing runs in
//! the background: a job's progress and end are computed from its age whenever it is looked at,
//! following the outcome rules described in the module documentation of [`super`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::time::Instant;

/// Progress at which a job bound to fail stops, and which it keeps once failed (percent).
pub const FAIL_PROGRESS: f64 = 60.0;
/// Progress at which a job that never finishes stays (percent).
pub const STUCK_PROGRESS: f64 = 99.0;
/// `result` of a job that failed because of the `fail` rule.
pub const FAIL_REASON: &str = "simulated copy failure: image name contains \"fail\"";

/// How a job ends, decided from the image name when the job is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Ends in success at the end of its duration.
    Success,
    /// Name contains `fail`: ends in failure at the end of its duration.
    Fail,
    /// Name contains `stuck`: never ends.
    Stuck,
}

impl Outcome {
    /// The outcome for an image name (case-insensitive; `fail` wins over `stuck`).
    pub(crate) fn for_name(name: &str) -> Outcome {
        let lower = name.to_lowercase();
        if lower.contains("fail") {
            Outcome::Fail
        } else if lower.contains("stuck") {
            Outcome::Stuck
        } else {
            Outcome::Success
        }
    }
}

/// Where a job stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JobState {
    /// 0.0..=100.0, rounded to two decimals.
    pub(crate) progress: f64,
    pub(crate) done: bool,
    pub(crate) success: bool,
}

impl JobState {
    /// `status` of the job in JobResult answers.
    fn job_status(&self) -> &'static str {
        match (self.done, self.success) {
            (false, _) => "Processing",
            (true, true) => "Success",
            (true, false) => "Fail",
        }
    }

    /// `status` of the image in ListCIMG answers.
    fn image_status(&self) -> &'static str {
        match (self.done, self.success) {
            (false, _) => "Importing",
            (true, true) => "Ready",
            (true, false) => "Error",
        }
    }
}

/// What an import asks for, per image (already validated).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageSpec {
    pub(crate) name: String,
    pub(crate) description: String,
}

/// One import job and the image it creates.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) job_uuid: String,
    pub(crate) resource_uuid: String,
    pub(crate) region: String,
    pub(crate) name: String,
    description: String,
    created: Instant,
    create_time_ms: u64,
    duration: Duration,
    outcome: Outcome,
}

impl Job {
    /// State of the job at `now`.
    pub(crate) fn state_at(&self, now: Instant) -> JobState {
        let elapsed = now.saturating_duration_since(self.created);
        let fraction = if self.duration.is_zero() {
            1.0
        } else {
            (elapsed.as_secs_f64() / self.duration.as_secs_f64()).min(1.0)
        };
        let linear = fraction * 100.0;
        let finished = fraction >= 1.0;
        let (progress, done, success) = match self.outcome {
            Outcome::Success if finished => (100.0, true, true),
            Outcome::Success => (linear, false, false),
            Outcome::Fail => (linear.min(FAIL_PROGRESS), finished, false),
            Outcome::Stuck => (linear.min(STUCK_PROGRESS), false, false),
        };
        JobState {
            progress: (progress * 100.0).round() / 100.0,
            done,
            success,
        }
    }

    /// The job as ImportCIMG returns it (progress 0, as an integer like the documented example).
    pub(crate) fn created_json(&self) -> Value {
        json!({
            "done": false,
            "jobUuid": self.job_uuid,
            "progress": 0,
            "resourceType": "cimg",
            "resourceUuid": self.resource_uuid,
            "status": "Processing",
            "success": false,
            "type": "ImportCIMG",
            "uuid": self.job_uuid,
        })
    }

    /// The job as JobResult returns it at `now`.
    pub(crate) fn result_json(&self, now: Instant) -> Value {
        let state = self.state_at(now);
        let result = if state.done && !state.success {
            FAIL_REASON
        } else {
            ""
        };
        json!({
            "done": state.done,
            "jobUuid": self.job_uuid,
            "progress": state.progress,
            "resourceType": "cimg",
            "resourceUuid": self.resource_uuid,
            "result": result,
            "status": state.job_status(),
            "success": state.success,
            "type": "ImportCIMG",
            "uuid": self.job_uuid,
        })
    }

    /// The image as ListCIMG returns it at `now` (with `job` only while the job runs).
    pub(crate) fn image_json(&self, now: Instant) -> Value {
        let state = self.state_at(now);
        let mut item = json!({
            "cimgUuid": self.resource_uuid,
            "name": self.name,
            "createTime": self.create_time_ms,
            "status": state.image_status(),
            "regions": [self.region],
            "description": self.description,
            "isShared": false,
            "size": 20,
            "osFamily": "CentOS",
            "osVersion": "7.6",
            "platform": "Linux",
        });
        if !state.done {
            item["job"] = json!({
                "jobUuid": self.job_uuid,
                "progress": state.progress,
                "done": false,
                "success": false,
                "type": "ImportCIMG",
            });
        }
        item
    }
}

/// Jobs and images of one region, in creation order.
#[derive(Debug, Default)]
struct Region {
    jobs: Vec<Job>,
    by_job_uuid: HashMap<String, usize>,
}

/// One page of ListCIMG.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    /// Images matching the filter, over all pages.
    pub(crate) count: usize,
    pub(crate) items: Vec<Value>,
}

/// All regions of the simulated cloud.
#[derive(Debug, Default)]
pub(crate) struct Store {
    regions: HashMap<String, Region>,
}

impl Store {
    /// Creates one job (and image) in `region`, lasting `duration`.
    pub(crate) fn create(&mut self, region: &str, spec: &ImageSpec, duration: Duration) -> Job {
        let job = Job {
            job_uuid: fresh_uuid(),
            resource_uuid: fresh_uuid(),
            region: region.to_string(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            created: Instant::now(),
            create_time_ms: now_ms(),
            duration,
            outcome: Outcome::for_name(&spec.name),
        };
        let entry = self.regions.entry(region.to_string()).or_default();
        entry
            .by_job_uuid
            .insert(job.job_uuid.clone(), entry.jobs.len());
        entry.jobs.push(job.clone());
        job
    }

    /// The job with this uuid in this region, if any.
    pub(crate) fn job(&self, region: &str, job_uuid: &str) -> Option<&Job> {
        let entry = self.regions.get(region)?;
        entry
            .by_job_uuid
            .get(job_uuid)
            .and_then(|&i| entry.jobs.get(i))
    }

    /// Images of `region` whose name is in `names` (all when `names` is empty), sorted by
    /// creation time, paged by `start` (offset) and `limit` (page size).
    pub(crate) fn list(
        &self,
        region: &str,
        names: &HashSet<String>,
        start: usize,
        limit: usize,
    ) -> Page {
        let mut matching: Vec<&Job> = self
            .regions
            .get(region)
            .map(|r| {
                r.jobs
                    .iter()
                    .filter(|j| names.is_empty() || names.contains(&j.name))
                    .collect()
            })
            .unwrap_or_default();
        matching.sort_by_key(|j| j.create_time_ms);
        let now = Instant::now();
        let items = matching
            .iter()
            .skip(start)
            .take(limit)
            .map(|j| j.image_json(now))
            .collect();
        Page {
            count: matching.len(),
            items,
        }
    }
}

/// A fresh random 32-hex-digit identifier (job uuids, image uuids, request ids).
pub(crate) fn fresh_uuid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, duration: Duration) -> Job {
        let spec = ImageSpec {
            name: name.to_string(),
            description: String::new(),
        };
        Store::default().create("gz", &spec, duration)
    }

    #[test]
    fn state_follows_the_outcome_rules_over_time() {
        let second = Duration::from_secs(1);
        // (case, name, elapsed ms of a 1 s job, progress, done, success)
        let cases = [
            ("success starts at zero", "web", 0, 0.0, false, false),
            ("success rises linearly", "web", 250, 25.0, false, false),
            (
                "success ends at the duration",
                "web",
                1000,
                100.0,
                true,
                true,
            ),
            ("success stays done", "web", 5000, 100.0, true, true),
            ("fail rises like any job", "FailMe", 500, 50.0, false, false),
            ("fail stops at 60", "FailMe", 900, 60.0, false, false),
            (
                "fail ends at the duration",
                "FailMe",
                1000,
                60.0,
                true,
                false,
            ),
            ("stuck stops at 99", "is-STUCK", 995, 99.0, false, false),
            ("stuck never ends", "is-STUCK", 60_000, 99.0, false, false),
        ];
        for (case, name, elapsed, progress, done, success) in cases {
            let job = job(name, second);
            let state = job.state_at(job.created + Duration::from_millis(elapsed));
            assert_eq!(
                state,
                JobState {
                    progress,
                    done,
                    success
                },
                "{case}"
            );
        }
    }

    #[test]
    fn zero_duration_jobs_end_at_once() {
        let job = job("quick", Duration::ZERO);
        let state = job.state_at(job.created);
        assert_eq!(
            state,
            JobState {
                progress: 100.0,
                done: true,
                success: true
            }
        );
    }
}
