//! Counters the simulator keeps about what its clients did.
//!
//! Tests of the daemon need proof, not just absence of errors: that no image was imported
//! twice (imports per region and name, counting imports whose answer was dropped), how often
//! each endpoint was called and how it answered, and how JobResult calls were batched. The
//! [`Stats`] snapshot is served as JSON at `GET /_sim/stats` and returned by
//! [`super::Simulator::stats`]; it deserializes back, so tests can fetch it over HTTP.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::faults::{Endpoint, PerEndpoint};

/// How many JobResult calls the log keeps (the oldest are forgotten first).
pub const JOB_RESULT_LOG_LIMIT: usize = 10_000;

/// How the simulator answered one API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    /// errno 0.
    Ok,
    /// Any errno other than 0 (HTTP 200).
    Errno,
    /// HTTP 502 with an HTML body.
    Html502,
    /// HTTP 429 with `Retry-After`.
    RateLimited,
    /// Connection closed without an answer after the import was done.
    Dropped,
    /// Never answered.
    Hung,
}

/// Number of answers of one endpoint, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerCounts {
    /// Answers with errno 0.
    pub ok: u64,
    /// Answers with an errno other than 0 (1, 2, 4, 41026, ...).
    pub errno: u64,
    /// HTTP 502 HTML answers (fault `html_502`).
    pub html502: u64,
    /// HTTP 429 answers (fault `rate_limit`).
    pub rate_limited: u64,
    /// Calls whose connection was closed without an answer (fault `drop_after_import`).
    pub dropped: u64,
    /// Calls never answered (fault `hang`), counted when the hang starts.
    pub hung: u64,
}

impl AnswerCounts {
    fn bump(&mut self, kind: AnswerKind) {
        let slot = match kind {
            AnswerKind::Ok => &mut self.ok,
            AnswerKind::Errno => &mut self.errno,
            AnswerKind::Html502 => &mut self.html502,
            AnswerKind::RateLimited => &mut self.rate_limited,
            AnswerKind::Dropped => &mut self.dropped,
            AnswerKind::Hung => &mut self.hung,
        };
        *slot += 1;
    }

    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        self.ok + self.errno + self.html502 + self.rate_limited + self.dropped + self.hung
    }
}

/// Number of import jobs created for one image name in one target region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCount {
    /// Target region (`regionId` of the ImportCIMG call).
    pub region: String,
    /// Name of the new image.
    pub name: String,
    /// Jobs created, including those whose answer was deliberately dropped.
    pub count: u64,
}

/// One JobResult call that was answered with errno 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResultCall {
    /// `regionId` of the call.
    pub region: String,
    /// Number of uuids in `jobUuids` (empty entries not counted, duplicates counted).
    pub asked: u64,
    /// Number of jobs in the answer's `data`.
    pub returned: u64,
    /// When the call was answered, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A snapshot of everything the simulator counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Calls per endpoint that reached the handler, faulted ones included.
    pub calls: PerEndpoint<u64>,
    /// Answers per endpoint, by kind.
    pub answers: PerEndpoint<AnswerCounts>,
    /// Jobs created per (target region, name), sorted by region then name.
    pub imports: Vec<ImportCount>,
    /// The last [`JOB_RESULT_LOG_LIMIT`] JobResult calls answered with errno 0, oldest first.
    pub job_result_calls: Vec<JobResultCall>,
}

impl Stats {
    /// Jobs created for `name` in target region `region` (0 if none).
    pub fn imports_of(&self, region: &str, name: &str) -> u64 {
        self.imports
            .iter()
            .find(|c| c.region == region && c.name == name)
            .map_or(0, |c| c.count)
    }

    /// The largest number of jobs created for one (region, name); 0 when nothing was imported.
    /// A value above 1 means some image was imported more than once.
    pub fn max_imports_per_name(&self) -> u64 {
        self.imports.iter().map(|c| c.count).max().unwrap_or(0)
    }

    /// All jobs created, over every region and name.
    pub fn total_imports(&self) -> u64 {
        self.imports.iter().map(|c| c.count).sum()
    }

    /// All calls, over the three endpoints.
    pub fn total_calls(&self) -> u64 {
        self.calls.import + self.calls.job_result + self.calls.list
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    calls: PerEndpoint<u64>,
    answers: PerEndpoint<AnswerCounts>,
    imports: BTreeMap<(String, String), u64>,
    job_result_calls: VecDeque<JobResultCall>,
}

impl Recorder {
    /// Counts a call that reached the handler.
    pub(crate) fn call(&mut self, endpoint: Endpoint) {
        *self.calls.get_mut(endpoint) += 1;
    }

    /// Counts an answer of the given kind.
    pub(crate) fn answer(&mut self, endpoint: Endpoint, kind: AnswerKind) {
        self.answers.get_mut(endpoint).bump(kind);
    }

    /// Counts one created import job.
    pub(crate) fn import(&mut self, region: &str, name: &str) {
        *self
            .imports
            .entry((region.to_string(), name.to_string()))
            .or_default() += 1;
    }

    /// Appends a JobResult call to the bounded log.
    pub(crate) fn job_result(&mut self, call: JobResultCall) {
        if self.job_result_calls.len() >= JOB_RESULT_LOG_LIMIT {
            self.job_result_calls.pop_front();
        }
        self.job_result_calls.push_back(call);
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> Stats {
        let imports = self
            .imports
            .iter()
            .map(|((region, name), count)| ImportCount {
                region: region.clone(),
                name: name.clone(),
                count: *count,
            })
            .collect();
        Stats {
            calls: self.calls,
            answers: self.answers,
            imports,
            job_result_calls: self.job_result_calls.iter().cloned().collect(),
        }
    }
}
