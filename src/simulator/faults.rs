//! Fault switches of the simulator.
//!
//! The daemon must survive a misbehaving API: gateways answering HTML 502 pages, errno 2
//! hiccups, rate limiting, a revoked token, connections dropped after the work was done, jobs
//! missing from answers and calls that never return. These switches make the simulator do each
//! of those on demand, so tests can prove the client copes. They can be set at start (CLI
//! options, [`super::SimOptions`]), and replaced while running (`PUT /_sim/faults`,
//! [`super::Simulator::set_faults`]).

use serde::{Deserialize, Serialize};

/// The three API endpoints of the simulator, used to pick per-endpoint settings and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /dicloud/i/storage/cimg/import`.
    Import,
    /// `GET /dicloud/i/result`.
    JobResult,
    /// `POST /dicloud/i/storage/cimg/list`.
    List,
}

impl Endpoint {
    /// Short name used in logs and in the JSON of stats and faults.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Endpoint::Import => "import",
            Endpoint::JobResult => "job_result",
            Endpoint::List => "list",
        }
    }
}

/// One value per API endpoint (a share, a flag or a counter).
///
/// JSON form: `{"import": .., "job_result": .., "list": ..}`; a missing field takes the
/// default of `T` (0, 0.0 or false).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerEndpoint<T> {
    /// Value for `POST /dicloud/i/storage/cimg/import`.
    pub import: T,
    /// Value for `GET /dicloud/i/result`.
    pub job_result: T,
    /// Value for `POST /dicloud/i/storage/cimg/list`.
    pub list: T,
}

impl<T: Copy> PerEndpoint<T> {
    /// The value for one endpoint.
    pub(crate) fn get(&self, endpoint: Endpoint) -> T {
        match endpoint {
            Endpoint::Import => self.import,
            Endpoint::JobResult => self.job_result,
            Endpoint::List => self.list,
        }
    }

    /// Mutable access to the value of one endpoint.
    pub(crate) fn get_mut(&mut self, endpoint: Endpoint) -> &mut T {
        match endpoint {
            Endpoint::Import => &mut self.import,
            Endpoint::JobResult => &mut self.job_result,
            Endpoint::List => &mut self.list,
        }
    }
}

/// The set of fault switches. The default is "no faults": every share 0.0, every flag false,
/// no latency, and `retry_after_secs` 1.
///
/// A share is a probability between 0.0 (never) and 1.0 (always), rolled independently on
/// every call (for `omit_jobs`: on every job of every call).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added before every API answer, in milliseconds (default 0).
    pub latency_ms: u64,
    /// Share of answers, per endpoint, replaced by HTTP 502 with an HTML body. Nothing is
    /// created by an import answered this way.
    pub html_502: PerEndpoint<f64>,
    /// Share of answers, per endpoint, replaced by errno 2 ("系统错误，请稍后再试"). Nothing is
    /// created by an import answered this way.
    pub errno2: PerEndpoint<f64>,
    /// Share of calls (all endpoints) answered HTTP 429 with a `Retry-After` header.
    pub rate_limit: f64,
    /// Value of the `Retry-After` header of 429 answers, in seconds (default 1).
    pub retry_after_secs: u64,
    /// When true, every API call answers errno 4 (authentication failed), whatever the token.
    pub reject_token: bool,
    /// Share of ImportCIMG calls that create their jobs and images (and count as imports), then
    /// close the connection without sending a single byte of answer.
    pub drop_after_import: f64,
    /// Share of known jobs left out of each JobResult answer, rolled per job per call.
    pub omit_jobs: f64,
    /// Per endpoint: read the request, then never answer (until the client gives up or the
    /// simulator shuts down).
    pub hang: PerEndpoint<bool>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            html_502: PerEndpoint::default(),
            errno2: PerEndpoint::default(),
            rate_limit: 0.0,
            retry_after_secs: 1,
            reject_token: false,
            drop_after_import: 0.0,
            omit_jobs: 0.0,
            hang: PerEndpoint::default(),
        }
    }
}

/// A share outside 0.0..=1.0 (or not a number), naming the field it was given for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} must be a share between 0.0 and 1.0, got {value}")]
pub struct ShareError {
    /// The field, as named in the JSON form (for example `html_502.import`).
    pub field: String,
    /// The rejected value.
    pub value: f64,
}

impl Faults {
    /// Every share with its JSON field name.
    fn shares_mut(&mut self) -> [(&'static str, &mut f64); 9] {
        [
            ("html_502.import", &mut self.html_502.import),
            ("html_502.job_result", &mut self.html_502.job_result),
            ("html_502.list", &mut self.html_502.list),
            ("errno2.import", &mut self.errno2.import),
            ("errno2.job_result", &mut self.errno2.job_result),
            ("errno2.list", &mut self.errno2.list),
            ("rate_limit", &mut self.rate_limit),
            ("drop_after_import", &mut self.drop_after_import),
            ("omit_jobs", &mut self.omit_jobs),
        ]
    }

    /// Checks that every share is within 0.0..=1.0; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ShareError> {
        let mut copy = *self;
        for (field, value) in copy.shares_mut() {
            if !is_share(*value) {
                return Err(ShareError {
                    field: field.to_string(),
                    value: *value,
                });
            }
        }
        Ok(())
    }

    /// The same faults with every share forced into 0.0..=1.0 (NaN becomes 0.0).
    pub fn clamped(mut self) -> Faults {
        for (_, value) in self.shares_mut() {
            *value = if value.is_nan() {
                0.0
            } else {
                value.clamp(0.0, 1.0)
            };
        }
        self
    }
}

/// True when `value` is a valid share (0.0..=1.0, not NaN).
pub(crate) fn is_share(value: f64) -> bool {
    (0.0..=1.0).contains(&value)
}

/// Rolls a share: true with probability `share` (never for 0.0, always for 1.0).
pub(crate) fn roll(share: f64) -> bool {
    share > 0.0 && (share >= 1.0 || rand::random::<f64>() < share)
}
