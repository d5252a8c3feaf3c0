//! The SQLite store: every SQL statement of the daemon lives here.
//!
//! The database is the only queue and the only state. Each change of a request is one
//! short `BEGIN IMMEDIATE` transaction that updates the row and appends to `events`, so
//! the process can be killed at any instant and restarted without losing or repeating
//! work, and an operator's `sqlite3` session can write beside it (WAL, busy timeout).
//!
//! Timestamps are computed by SQLite itself (`strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`), so
//! every row uses one clock and one format.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Arguments, Row, SqlitePool};

use crate::api::{ImportSpec, Job};
use crate::config::DatabaseSettings;

mod missing;
pub mod operator;
mod reconcile;

pub use missing::{ListedEnd, MissingJob};
pub use reconcile::DoubtfulRequest;

/// Connections in the pool: enough for the submitter, the poller and a report at once.
const POOL_SIZE: u32 = 4;

/// Prepared statements kept per connection: the hot queries, the other statements, and the
/// 19 texts (row counts) of each batch statement (see [`execute_rows`]).
const STATEMENT_CACHE: usize = 256;

/// Longest wait between two tries of a write that found the database locked.
const LOCKED_RETRY_MAX: Duration = Duration::from_secs(2);

/// Rows left `submitting` by a crash become `in_doubt` (run once at start-up).
const RECOVER_INTERRUPTED: &str = "
    UPDATE import_requests
    SET state = 'in_doubt',
        reason = 'the daemon stopped while this request was being submitted; \
                  the image may exist: check the target region before retrying',
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE state = 'submitting'
    RETURNING id";

/// The submitter's question: the due queued rows, oldest first.
const CLAIM_DUE: &str = "
    SELECT id, attempts, region_id, name, origin_image_uuid, origin_region_id, description
    FROM import_requests INDEXED BY import_requests_due
    WHERE state = 'queued' AND next_attempt_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    ORDER BY next_attempt_at, id
    LIMIT ?";

/// When the next queued row is due.
const NEXT_QUEUED: &str = "
    SELECT (julianday(min(next_attempt_at)) - julianday('now')) * 86400.0
    FROM import_requests INDEXED BY import_requests_due
    WHERE state = 'queued'";

/// Regions with open jobs due now or within the horizon.
const DUE_REGIONS: &str = "
    SELECT DISTINCT region_id
    FROM jobs INDEXED BY jobs_open_due
    WHERE finished_at IS NULL AND next_check_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
    ORDER BY region_id";

/// One page of a region's due open jobs, in due order. Only what an open job can hold is
/// read: every column of every row is a copy, and a round reads every open job.
const DUE_JOBS: &str = "
    SELECT id, request_id, job_uuid, resource_uuid, status, progress, result,
           missed_polls, poll_errors, overdue_at IS NOT NULL AS overdue,
           next_check_at,
           (julianday('now') - julianday(created_at)) * 86400.0 AS age_seconds,
           (julianday(next_check_at) - julianday('now')) * 86400.0 AS due_in_seconds
    FROM jobs INDEXED BY jobs_open_due
    WHERE finished_at IS NULL AND region_id = ?
      AND next_check_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
      AND (next_check_at, id) > (?, ?)
    ORDER BY next_check_at, id
    LIMIT ?";

/// When the next open job is due: the earliest of each region's earliest, found by hopping
/// from region to region along `jobs_open_due` (a handful of index seeks, however many jobs
/// are open).
const NEXT_JOB_DUE: &str = "
    WITH RECURSIVE regions (region_id) AS (
        SELECT (SELECT region_id FROM jobs INDEXED BY jobs_open_due
                WHERE finished_at IS NULL ORDER BY region_id LIMIT 1)
        UNION ALL
        SELECT (SELECT j.region_id FROM jobs AS j INDEXED BY jobs_open_due
                WHERE j.finished_at IS NULL AND j.region_id > regions.region_id
                ORDER BY j.region_id LIMIT 1)
        FROM regions WHERE regions.region_id IS NOT NULL)
    SELECT (julianday(min((SELECT min(j.next_check_at) FROM jobs AS j INDEXED BY jobs_open_due
                           WHERE j.finished_at IS NULL AND j.region_id = regions.region_id)))
            - julianday('now')) * 86400.0
    FROM regions WHERE regions.region_id IS NOT NULL";

/// The newest requests of the `request_status` view.
const STATUS: &str = "
    SELECT id, state, region_id, name, origin_region_id, job_uuid, resource_uuid,
           progress, attempts, last_error, created_at, updated_at
    FROM request_status ORDER BY id DESC LIMIT ?";

/// One request's timeline from the `request_history` view.
const HISTORY: &str = "
    SELECT at, kind, state, job_uuid, progress, detail, errno, errmsg, api_request_id
    FROM request_history WHERE request_id = ? ORDER BY event_id";

// The batch statements below are written for one row of `VALUES`; [`execute_rows`] repeats
// the row for as many as a batch has, so that a batch of any size is a few statements.

/// Claimed rows become `submitting`, their attempt counted.
const MARK_SUBMITTING: &str = "
    WITH claimed (id) AS (VALUES (?))
    UPDATE import_requests
    SET state = 'submitting', attempts = attempts + 1,
        first_attempt_at = coalesce(first_attempt_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        last_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id IN (SELECT id FROM claimed)";

/// New jobs, each inserted once, first checked after its delay.
const TRACK_JOBS: &str = "
    WITH t (request_id, job_uuid, resource_uuid, api_request_id, status, progress, first_check)
        AS (VALUES (?, ?, ?, ?, ?, ?, ?))
    INSERT INTO jobs (request_id, region_id, job_uuid, resource_uuid, api_request_id,
                      status, progress, done, success, result, next_check_at)
    SELECT r.id, r.region_id, t.job_uuid, t.resource_uuid, t.api_request_id, t.status,
           t.progress, 0, 0, NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', t.first_check)
    FROM t JOIN import_requests AS r ON r.id = t.request_id
    WHERE true
    ON CONFLICT (region_id, job_uuid) DO NOTHING";

/// The requests of new jobs become `submitted`, clearing the API error of an earlier
/// attempt (the history keeps it); only those still in the state the daemon left them in
/// (`from`), which it is told back.
const SET_SUBMITTED: &str = "
    WITH t (id, from_state) AS (VALUES (?, ?))
    UPDATE import_requests
    SET state = 'submitted', reason = NULL, last_errno = NULL, last_errmsg = NULL,
        last_api_request_id = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM t
    WHERE import_requests.id = t.id AND import_requests.state = t.from_state
    RETURNING import_requests.id";

/// Jobs an answer included: what it said, and when to look again; only jobs still open,
/// which it is told back (an ended or deleted job records nothing more).
const RECORD_SEEN: &str = "
    WITH o (id, status, progress, done, success, result, next)
        AS (VALUES (?, ?, ?, ?, ?, ?, ?))
    UPDATE jobs
    SET status = coalesce(o.status, jobs.status),
        progress = o.progress,
        done = o.done,
        success = o.success,
        result = o.result,
        missed_polls = 0,
        poll_errors = 0,
        last_checked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        next_check_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', o.next),
        finished_at = CASE WHEN o.done THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now') END
    FROM o
    WHERE jobs.id = o.id AND jobs.finished_at IS NULL
    RETURNING jobs.id";

/// Jobs an answer left out (`missed`), or whose call failed: counted, looked at again.
const RECORD_UNSEEN: &str = "
    WITH o (id, missed, next) AS (VALUES (?, ?, ?))
    UPDATE jobs
    SET missed_polls = CASE WHEN o.missed THEN jobs.missed_polls + 1
                            ELSE jobs.missed_polls END,
        poll_errors = CASE WHEN o.missed THEN 0 ELSE jobs.poll_errors + 1 END,
        next_check_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', o.next)
    FROM o
    WHERE jobs.id = o.id";

/// Requests whose job ended: `succeeded` or `failed` with the reason, clearing the API
/// error of an earlier attempt (the history keeps it); only those still `submitted`.
const END_REQUESTS: &str = "
    WITH o (id, state, reason) AS (VALUES (?, ?, ?))
    UPDATE import_requests
    SET state = o.state, reason = o.reason, last_errno = NULL, last_errmsg = NULL,
        last_api_request_id = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    FROM o
    WHERE import_requests.id = o.id AND import_requests.state = 'submitted'
    RETURNING import_requests.id";

/// History rows, appended in order.
const INSERT_EVENTS: &str = "
    INSERT INTO events (request_id, kind, state, job_uuid, progress, detail, errno, errmsg,
                        api_request_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Most rows in one batch statement (9 values a row at most, far below SQLite's 32,766). A power
/// of two: see [`execute_rows`].
const ROWS_PER_STATEMENT: usize = 128;

/// Batches up to this many rows go in one statement of their exact size: the submitter's
/// batches are this small, and each statement is a round trip to the connection's thread.
const EXACT_ROWS: usize = 16;

/// The statements the daemon runs over and over, by name. Each must be answered through an
/// index however large the tables grow, so each names its index (`INDEXED BY`, from the
/// migrations); the tests and the benchmark check their `EXPLAIN QUERY PLAN` (see
/// [`Store::query_plan`]).
pub fn hot_queries() -> &'static [(&'static str, &'static str)] {
    &[
        ("recover_interrupted", RECOVER_INTERRUPTED),
        ("claim_due", CLAIM_DUE),
        ("next_queued_in", NEXT_QUEUED),
        ("due_regions", DUE_REGIONS),
        ("due_jobs", DUE_JOBS),
        ("next_job_due_in", NEXT_JOB_DUE),
        ("in_doubt_due", reconcile::IN_DOUBT_DUE),
        ("next_in_doubt_in", reconcile::NEXT_IN_DOUBT),
        ("owned_images", reconcile::OWNED_IMAGE),
        ("last_doubt", reconcile::LAST_DOUBT),
        ("mark_submitting", MARK_SUBMITTING),
        ("track_jobs", TRACK_JOBS),
        ("set_submitted", SET_SUBMITTED),
        ("record_seen", RECORD_SEEN),
        ("record_unseen", RECORD_UNSEEN),
        ("end_requests", END_REQUESTS),
    ]
}

/// A request's place in its life cycle (see the README's diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Waiting to be sent, possibly until `next_attempt_at`.
    Queued,
    /// Claimed; an ImportCIMG call may be in flight.
    Submitting,
    /// The API returned a job; it is being polled.
    Submitted,
    /// A call was sent but its outcome is unknown; nothing is sent again until it is
    /// reconciled.
    InDoubt,
    /// The job ended in success.
    Succeeded,
    /// The job ended in failure, or the request failed for good.
    Failed,
    /// Not a valid request; never sent.
    Rejected,
    /// Withdrawn by an operator before it was sent.
    Cancelled,
}

impl RequestState {
    /// Every state, in life-cycle order.
    pub const ALL: [RequestState; 8] = [
        RequestState::Queued,
        RequestState::Submitting,
        RequestState::Submitted,
        RequestState::InDoubt,
        RequestState::Succeeded,
        RequestState::Failed,
        RequestState::Rejected,
        RequestState::Cancelled,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Submitting => "submitting",
            RequestState::Submitted => "submitted",
            RequestState::InDoubt => "in_doubt",
            RequestState::Succeeded => "succeeded",
            RequestState::Failed => "failed",
            RequestState::Rejected => "rejected",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// Whether the daemon is done with a request in this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Succeeded
                | RequestState::Failed
                | RequestState::Rejected
                | RequestState::Cancelled
        )
    }
}

impl FromStr for RequestState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RequestState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown state `{text}`"))
    }
}

/// A queued row as the operator wrote it, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFields {
    /// Target region.
    pub region_id: String,
    /// Name of the new image.
    pub name: String,
    /// Uuid of the source image.
    pub origin_image_uuid: String,
    /// Region of the source image.
    pub origin_region_id: String,
    /// Optional description.
    pub description: Option<String>,
}

/// A request claimed for submission: now `submitting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRequest {
    /// `import_requests.id`.
    pub id: i64,
    /// Attempts including this one.
    pub attempts: u32,
    /// What to send.
    pub spec: ImportSpec,
}

/// Why a request is leaving the happy path, in words and in the API's own terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// What happened and, where it helps, what the operator can do.
    pub reason: String,
    /// The API's errno, when it gave one.
    pub errno: Option<i64>,
    /// The API's message, when it gave one.
    pub errmsg: Option<String>,
    /// The API's id of the call, when an answer carried one.
    pub api_request_id: Option<String>,
}

impl Failure {
    /// A failure that is only words: nothing came from the API.
    pub fn reason(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            ..Failure::default()
        }
    }
}

/// A job an ImportCIMG call returned for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// `import_requests.id`.
    pub request_id: i64,
    /// The job as the answer described it.
    pub job: Job,
    /// `requestId` of the answer.
    pub api_request_id: String,
}

/// A job about to be tracked, and where it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackedJob<'a> {
    /// The job as the API described it.
    pub job: &'a Job,
    /// The image it creates.
    pub resource_uuid: &'a str,
    /// `requestId` of the answer that named the job, if one did.
    pub api_request_id: Option<&'a str>,
}

/// How a job came to be tracked: the request's state before, and the history entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobOutcome<'a> {
    /// The state the request must still be in.
    pub from: &'a str,
    /// The event's kind.
    pub kind: &'a str,
    /// The event's words.
    pub detail: &'a str,
}

/// A job still being tracked.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenJob {
    /// `jobs.id`.
    pub id: i64,
    /// The request it belongs to.
    pub request_id: i64,
    /// The region it runs in.
    pub region_id: String,
    /// The API's id of the job.
    pub job_uuid: String,
    /// What was last recorded of it.
    pub last: Job,
    /// Time since the job was recorded.
    pub age: Duration,
    /// Consecutive answers that left it out.
    pub missed_polls: u32,
    /// Consecutive JobResult calls about it that failed.
    pub poll_errors: u32,
    /// Whether it was already marked overdue.
    pub overdue: bool,
    /// Position in the due order, for paging: `next_check_at`.
    pub next_check_at: String,
    /// Time until it is due when it was read: zero if it was due already.
    pub due_in: Duration,
}

/// What one JobResult round learned about one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The answer included the job.
    Seen {
        /// The job as the API reported it.
        job: Job,
        /// `requestId` of the answer.
        api_request_id: String,
    },
    /// The answer left the job out.
    Missing,
    /// The call failed; nothing was learned.
    CallFailed,
}

/// One job's part of a recorded round.
#[derive(Debug, Clone, PartialEq)]
pub struct PolledJob {
    /// The job as it was before the round.
    pub open: OpenJob,
    /// What the round learned.
    pub observation: Observation,
    /// Wait before the next check.
    pub next_check: Duration,
    /// The job has just passed `poll.overdue_after` still running.
    pub newly_overdue: bool,
}

/// One row of the `request_status` view.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    /// Request id.
    pub id: i64,
    /// Current state.
    pub state: String,
    /// Target region.
    pub region_id: String,
    /// Image name.
    pub name: String,
    /// Source region.
    pub origin_region_id: String,
    /// Latest job, once submitted.
    pub job_uuid: Option<String>,
    /// New image's uuid, once submitted.
    pub resource_uuid: Option<String>,
    /// Latest recorded progress.
    pub progress: Option<f64>,
    /// Attempts so far.
    pub attempts: i64,
    /// Why it failed or waits, if it does.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// One row of the `request_history` view.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// When.
    pub at: String,
    /// What happened.
    pub kind: String,
    /// The request's state afterwards.
    pub state: String,
    /// Job concerned, if any.
    pub job_uuid: Option<String>,
    /// Progress observed, if any.
    pub progress: Option<f64>,
    /// Words.
    pub detail: Option<String>,
    /// API errno, if any.
    pub errno: Option<i64>,
    /// API message, if any.
    pub errmsg: Option<String>,
    /// API requestId, if any.
    pub api_request_id: Option<String>,
}

/// Handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Held for the whole of each write transaction of this process. The daemon's writers
    /// (submitter, poller, reconciler) take turns here instead of meeting in SQLite, whose
    /// busy handler would put the refused one to sleep for 1, 2, 5, 10 ms and more; the
    /// busy timeout is left for writers outside the process, such as an operator's sqlite3.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// Renders a delay as a SQLite date modifier, e.g. `+10.000 seconds`.
fn after(delay: Duration) -> String {
    format!("+{:.3} seconds", delay.as_secs_f64())
}

/// Whether an error is SQLite saying another connection holds the lock.
fn is_locked(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            code == "5"
                || code == "6"
                || code.ends_with("05")
                || code.ends_with("06")
                || db.message().contains("locked")
        }
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

impl Store {
    /// Opens (creating if needed) the database in WAL mode with a busy timeout and
    /// foreign keys on.
    ///
    /// # Errors
    ///
    /// The file or its directory cannot be created or opened.
    pub async fn open(settings: &DatabaseSettings) -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(&settings.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            // A local file has no connection to lose; checking it would cost a round trip
            // to the connection's thread on every transaction.
            .test_before_acquire(false)
            .acquire_timeout(settings.busy_timeout.max(Duration::from_secs(30)))
            .connect_with(options)
            .await
            .map_err(|err| {
                anyhow::anyhow!("cannot open database `{}`: {err}", settings.path.display())
            })?;
        Ok(Store {
            pool,
            writer: Arc::default(),
        })
    }

    /// Creates or upgrades the schema with the migrations embedded in the binary.
    ///
    /// # Errors
    ///
    /// A migration fails, or the database was written by a newer version.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|err| anyhow::anyhow!("cannot migrate the database: {err}"))
    }

    /// Whether the database holds cimg-importd's queue table.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn has_queue(&self) -> anyhow::Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'import_requests'",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Closes every connection. An operator's read ends here: it must not wait for the
    /// daemon's readers, nor write the WAL back into the database file for it.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Folds the WAL into the database file, then closes every connection, so that a copy
    /// of the database file alone is complete (after `migrate`, and when the daemon stops).
    pub async fn checkpoint_and_close(&self) {
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::debug!(error = %err, "checkpoint at close skipped");
        }
        self.close().await;
    }

    /// Runs a write until it is not refused for a lock: an operator's long `sqlite3`
    /// transaction delays what the daemon records, it never loses it.
    async fn write<T, F>(
        &self,
        what: &str,
        mut op: impl FnMut(SqlitePool) -> F,
    ) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut wait = Duration::from_millis(50);
        loop {
            let attempt = {
                let _turn = self.writer.lock().await;
                op(self.pool.clone()).await
            };
            match attempt {
                Ok(value) => return Ok(value),
                Err(err) if is_locked(&err) => {
                    tracing::warn!(
                        what,
                        retry_in_ms = wait.as_millis() as u64,
                        "database is locked by another writer; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LOCKED_RETRY_MAX);
                }
                Err(err) => return Err(anyhow::Error::new(err).context(format!("cannot {what}"))),
            }
        }
    }

    /// Moves every row left `submitting` by a crash to `in_doubt`: its call may have
    /// reached the API, so it must be reconciled before anything is sent again.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn recover_interrupted(&self) -> anyhow::Result<Vec<i64>> {
        self.write("recover interrupted submissions", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let ids: Vec<i64> = sqlx::query_scalar(RECOVER_INTERRUPTED)
                .fetch_all(&mut *tx)
                .await?;
            for id in &ids {
                append_event(&mut tx, *id, "interrupted", "in_doubt", None, None)
                    .detail("found submitting at start-up: outcome of the last call unknown")
                    .execute()
                    .await?;
            }
            tx.commit().await?;
            Ok(ids)
        })
        .await
    }

    /// Claims up to `limit` due queued rows, oldest first, moving them to `submitting`
    /// and counting the attempt. Each row goes through `check` first: a row it refuses, or
    /// one whose text cannot even be decoded, becomes `rejected` with the reason instead.
    ///
    /// # Errors
    ///
    /// The database cannot be read or written.
    pub async fn claim_due(
        &self,
        limit: usize,
        check: impl Fn(RequestFields) -> Result<ImportSpec, String>,
    ) -> anyhow::Result<Vec<ClaimedRequest>> {
        self.record_and_claim(&[], Duration::ZERO, limit, check)
            .await
    }

    /// Records the jobs of `submitted` as [`Store::record_submitted`] does, then claims
    /// as [`Store::claim_due`] does, in one transaction: the submitter's every step is one
    /// commit, however many calls came back and however many rows it sends next.
    ///
    /// # Errors
    ///
    /// The database cannot be read or written (after waiting out locks); then nothing is
    /// recorded and nothing claimed.
    pub async fn record_and_claim(
        &self,
        submitted: &[Submission],
        first_check: Duration,
        limit: usize,
        check: impl Fn(RequestFields) -> Result<ImportSpec, String>,
    ) -> anyhow::Result<Vec<ClaimedRequest>> {
        let check = &check;
        let jobs = &submitted_jobs(submitted);
        self.write(
            "record submissions and claim queued requests",
            |pool| async move {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                track_jobs(&mut tx, jobs, first_check, "submitting", "submitted").await?;
                let claimed = claim_in(&mut tx, limit, check).await?;
                tx.commit().await?;
                Ok(claimed)
            },
        )
        .await
    }

    /// Time until the earliest queued row is due: zero if one is due now, `None` if the
    /// queue is empty.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn next_queued_in(&self) -> anyhow::Result<Option<Duration>> {
        let seconds: Option<f64> = sqlx::query_scalar(NEXT_QUEUED)
            .fetch_one(&self.pool)
            .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// Records the jobs ImportCIMG calls returned, all in one transaction: each request
    /// becomes `submitted` and its job is first checked after `first_check`. The submitter
    /// records together the calls that came back while it was busy, so that a burst of
    /// submissions costs one commit per wake-up, not one per request.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks); then none is recorded.
    pub async fn record_submitted(
        &self,
        submitted: &[Submission],
        first_check: Duration,
    ) -> anyhow::Result<()> {
        let jobs = &submitted_jobs(submitted);
        self.write("record submitted jobs", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            track_jobs(&mut tx, jobs, first_check, "submitting", "submitted").await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Starts tracking `tracked.job` for the request, which moves from `outcome.from` to
    /// `submitted`; `outcome.kind` and `outcome.detail` say in the history how the job was
    /// learned.
    pub(crate) async fn record_job(
        &self,
        request_id: i64,
        tracked: &TrackedJob<'_>,
        first_check: Duration,
        outcome: &JobOutcome<'_>,
    ) -> anyhow::Result<()> {
        let JobOutcome { from, kind, detail } = *outcome;
        let jobs = [(request_id, *tracked, detail.to_owned())];
        let jobs = &jobs;
        self.write("record a job", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            track_jobs(&mut tx, jobs, first_check, from, kind).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Puts a request back in the queue until `delay` has passed, keeping the failure as
    /// its last error. With `refund`, the attempt just made is not counted: the failure
    /// was the account's, not the request's.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_retry(
        &self,
        request_id: i64,
        failure: &Failure,
        delay: Duration,
        refund: bool,
    ) -> anyhow::Result<()> {
        self.write("schedule a retry", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let changed = sqlx::query(
                "UPDATE import_requests
                 SET state = 'queued',
                     attempts = max(attempts - ?, 0),
                     next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?),
                     reason = ?, last_errno = ?, last_errmsg = ?, last_api_request_id = ?,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ? AND state = 'submitting'",
            )
            .bind(i64::from(refund))
            .bind(after(delay))
            .bind(&failure.reason)
            .bind(failure.errno)
            .bind(&failure.errmsg)
            .bind(&failure.api_request_id)
            .bind(request_id)
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() == 0 {
                return Ok(());
            }
            let detail = if refund {
                format!("{}; tried again once the account works", failure.reason)
            } else {
                format!(
                    "{}; next attempt in {}",
                    failure.reason,
                    humantime::format_duration(round_secs(delay))
                )
            };
            append_event(&mut tx, request_id, "retry_scheduled", "queued", None, None)
                .detail(&detail)
                .failure(failure)
                .execute()
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Ends a request in `failed` (given up) or moves it to `in_doubt` (outcome unknown),
    /// with its reason.
    ///
    /// # Errors
    ///
    /// `state` is not `failed` or `in_doubt`, or the database cannot be written.
    pub async fn record_stopped(
        &self,
        request_id: i64,
        state: RequestState,
        failure: &Failure,
    ) -> anyhow::Result<()> {
        let (state, kind) = match state {
            RequestState::Failed => ("failed", "failed"),
            RequestState::InDoubt => ("in_doubt", "outcome_unknown"),
            other => anyhow::bail!("a request cannot be stopped in state `{}`", other.as_str()),
        };
        self.write("record a failure", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let changed = sqlx::query(
                "UPDATE import_requests
                 SET state = ?, reason = ?, last_errno = ?, last_errmsg = ?, last_api_request_id = ?,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ? AND state = 'submitting'",
            )
            .bind(state)
            .bind(&failure.reason)
            .bind(failure.errno)
            .bind(&failure.errmsg)
            .bind(&failure.api_request_id)
            .bind(request_id)
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() == 0 {
                return Ok(());
            }
            append_event(&mut tx, request_id, kind, state, None, None)
                .detail(&failure.reason)
                .failure(failure)
                .execute()
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Regions with open jobs due before `horizon` from now.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn due_regions(&self, horizon: Duration) -> anyhow::Result<Vec<String>> {
        let regions = sqlx::query_scalar(DUE_REGIONS)
            .bind(after(horizon))
            .fetch_all(&self.pool)
            .await?;
        Ok(regions)
    }

    /// Up to `limit` open jobs of `region` due before `horizon` from now, in due order,
    /// after the position `after` (exclusive) when paging.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn due_jobs(
        &self,
        region: &str,
        horizon: Duration,
        after_position: Option<(&str, i64)>,
        limit: usize,
    ) -> anyhow::Result<Vec<OpenJob>> {
        let (after_at, after_id) = after_position.unwrap_or(("", 0));
        let rows = sqlx::query(DUE_JOBS)
            .bind(region)
            .bind(after(horizon))
            .bind(after_at)
            .bind(after_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| open_job(row, region))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Time until the earliest open job is due: zero if one is due now, `None` if no job
    /// is open.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn next_job_due_in(&self) -> anyhow::Result<Option<Duration>> {
        let seconds: Option<f64> = sqlx::query_scalar(NEXT_JOB_DUE)
            .fetch_one(&self.pool)
            .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// Records one JobResult round for a batch of jobs in one transaction. A changed job
    /// is updated and its change appended to the history; a finished one ends tracking
    /// and moves its request to `succeeded` or `failed`; an unchanged or missing one only
    /// gets its check times. `next_check` gives each job's next wait.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_round(&self, observed: &[PolledJob]) -> anyhow::Result<RoundSummary> {
        let writes = RoundWrites::plan(observed);
        let writes = &writes;
        self.write("record job results", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let summary = writes.apply(&mut tx).await?;
            tx.commit().await?;
            Ok(summary)
        })
        .await
    }

    /// How many requests are in each state the daemon still works on.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn open_counts(&self) -> anyhow::Result<OpenCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM import_requests
             WHERE state IN ('queued', 'submitting', 'submitted', 'in_doubt')
             GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts = OpenCounts::default();
        for (state, count) in rows {
            let slot = match state.as_str() {
                "queued" => &mut counts.queued,
                "submitting" => &mut counts.submitting,
                "submitted" => &mut counts.submitted,
                _ => &mut counts.in_doubt,
            };
            *slot = count;
        }
        Ok(counts)
    }

    /// The figures the metrics endpoint reads from the database.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn metrics_snapshot(&self) -> anyhow::Result<MetricsSnapshot> {
        let by_state = sqlx::query_as("SELECT state, count(*) FROM import_requests GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let oldest_queued_seconds = sqlx::query_scalar(
            "SELECT (julianday('now') - julianday(min(created_at))) * 86400.0
             FROM import_requests WHERE state = 'queued'",
        )
        .fetch_one(&self.pool)
        .await?;
        let (jobs_tracked, jobs_overdue): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(overdue_at) FROM jobs WHERE finished_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MetricsSnapshot {
            by_state,
            oldest_queued_seconds,
            jobs_tracked,
            jobs_overdue,
        })
    }

    /// Removes up to `limit` finished requests last changed more than `age` ago, with
    /// their jobs and history (by cascade), in one short transaction.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn remove_finished(&self, age: Duration, limit: usize) -> anyhow::Result<u64> {
        let cutoff = format!("-{:.3} seconds", age.as_secs_f64());
        self.write("remove old finished requests", |pool| {
            let cutoff = cutoff.clone();
            async move {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let removed = sqlx::query(
                    "DELETE FROM import_requests WHERE id IN (
                         SELECT id FROM import_requests
                         WHERE state IN ('succeeded', 'failed', 'rejected', 'cancelled')
                           AND updated_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)
                         ORDER BY updated_at
                         LIMIT ?)",
                )
                .bind(cutoff)
                .bind(limit as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(removed)
            }
        })
        .await
    }

    /// Requests not yet in a terminal state.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn count_unfinished(&self) -> anyhow::Result<i64> {
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM import_requests
             WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'cancelled')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// The `request_status` view, newest first.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn status(&self, limit: usize) -> anyhow::Result<Vec<StatusRow>> {
        let rows = sqlx::query(STATUS)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StatusRow {
                    id: row.try_get("id")?,
                    state: row.try_get("state")?,
                    region_id: lossy(row, "region_id"),
                    name: lossy(row, "name"),
                    origin_region_id: lossy(row, "origin_region_id"),
                    job_uuid: row.try_get("job_uuid")?,
                    resource_uuid: row.try_get("resource_uuid")?,
                    progress: row.try_get("progress")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error").unwrap_or(None),
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The whole timeline of one request, oldest first.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn history(&self, request_id: i64) -> anyhow::Result<Vec<HistoryRow>> {
        let rows = sqlx::query(HISTORY)
            .bind(request_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryRow {
                    at: row.try_get("at")?,
                    kind: row.try_get("kind")?,
                    state: row.try_get("state")?,
                    job_uuid: row.try_get("job_uuid")?,
                    progress: row.try_get("progress")?,
                    detail: row.try_get("detail").unwrap_or(None),
                    errno: row.try_get("errno")?,
                    errmsg: row.try_get("errmsg")?,
                    api_request_id: row.try_get("api_request_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// How SQLite would run `sql`: the `EXPLAIN QUERY PLAN` lines, indented by depth as the
    /// `sqlite3` shell shows them (`SEARCH jobs USING INDEX jobs_open_due (region_id=?)`).
    /// Parameters are left unbound; the plan does not depend on their values.
    ///
    /// # Errors
    ///
    /// The statement does not compile against the schema.
    pub async fn query_plan(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&self.pool)
            .await?;
        let mut depth_of: std::collections::HashMap<i64, usize> = Default::default();
        let mut lines = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let parent: i64 = row.try_get(1)?;
            let detail: String = row.try_get(3)?;
            let depth = depth_of.get(&parent).map_or(0, |d| d + 1);
            depth_of.insert(id, depth);
            lines.push(format!("{}{detail}", "  ".repeat(depth)));
        }
        Ok(lines)
    }

    /// The underlying pool, for tests and tools that need plain SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// What the database says for the metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Requests per state, for the states that have any.
    pub by_state: Vec<(String, i64)>,
    /// Age of the oldest queued request, if one is queued.
    pub oldest_queued_seconds: Option<f64>,
    /// Jobs being polled.
    pub jobs_tracked: i64,
    /// Of those, the overdue ones.
    pub jobs_overdue: i64,
}

/// Requests per state the daemon still works on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenCounts {
    /// Waiting to be sent.
    pub queued: i64,
    /// Being sent.
    pub submitting: i64,
    /// Jobs being tracked.
    pub submitted: i64,
    /// Waiting to be reconciled.
    pub in_doubt: i64,
}

/// What one recorded round changed, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Jobs whose answer differed from what was recorded.
    pub changed: usize,
    /// Jobs the answer left out.
    pub missing: usize,
    /// Jobs that ended in this round.
    pub finished: Vec<FinishedJob>,
}

/// A job that ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedJob {
    /// The request it belonged to.
    pub request_id: i64,
    /// The job.
    pub job_uuid: String,
    /// Whether it ended in success.
    pub success: bool,
    /// The failure reason, empty on success.
    pub result: String,
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

fn round_secs(delay: Duration) -> Duration {
    Duration::from_secs(delay.as_secs_f64().round() as u64)
}

/// A text column for display, even if it holds bytes that are not UTF-8.
fn lossy(row: &SqliteRow, column: &str) -> String {
    match row.try_get::<String, _>(column) {
        Ok(text) => text,
        Err(_) => row
            .try_get::<Vec<u8>, _>(column)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default(),
    }
}

/// Reads the operator's fields of a queued row; text that is not UTF-8 is a reason to
/// reject the row, naming the column.
fn decode_fields(row: &SqliteRow) -> Result<RequestFields, String> {
    let text = |column: &str| -> Result<String, String> {
        row.try_get::<String, _>(column)
            .map_err(|_| format!("`{column}` is not valid UTF-8 text"))
    };
    let description = match row.try_get::<Option<String>, _>("description") {
        Ok(description) => description,
        Err(_) => return Err("`description` is not valid UTF-8 text".to_owned()),
    };
    Ok(RequestFields {
        region_id: text("region_id")?,
        name: text("name")?,
        origin_image_uuid: text("origin_image_uuid")?,
        origin_region_id: text("origin_region_id")?,
        description,
    })
}

/// An open job from a row of [`DUE_JOBS`], in `region`. Open means not done: the answer
/// that says a job is done also ends its tracking.
fn open_job(row: &SqliteRow, region: &str) -> Result<OpenJob, sqlx::Error> {
    let age: f64 = row.try_get("age_seconds")?;
    let due_in: f64 = row.try_get("due_in_seconds")?;
    let last = Job {
        job_uuid: row.try_get("job_uuid")?,
        resource_uuid: row
            .try_get::<Option<String>, _>("resource_uuid")?
            .unwrap_or_default(),
        status: row
            .try_get::<Option<String>, _>("status")?
            .unwrap_or_default(),
        progress: row.try_get("progress")?,
        done: false,
        success: false,
        result: row
            .try_get::<Option<String>, _>("result")?
            .unwrap_or_default(),
        uuid: String::new(),
    };
    Ok(OpenJob {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        region_id: region.to_owned(),
        job_uuid: last.job_uuid.clone(),
        last,
        age: Duration::from_secs_f64(age.max(0.0)),
        missed_polls: row.try_get::<i64, _>("missed_polls")? as u32,
        poll_errors: row.try_get::<i64, _>("poll_errors")? as u32,
        overdue: row.try_get("overdue")?,
        next_check_at: row.try_get("next_check_at")?,
        due_in: Duration::from_secs_f64(due_in.max(0.0)),
    })
}

/// The jobs ImportCIMG answers returned, as [`track_jobs`] takes them.
fn submitted_jobs(submitted: &[Submission]) -> Vec<(i64, TrackedJob<'_>, String)> {
    submitted
        .iter()
        .map(|one| {
            let tracked = TrackedJob {
                job: &one.job,
                resource_uuid: &one.job.resource_uuid,
                api_request_id: Some(&one.api_request_id),
            };
            let detail = format!("new image {}", one.job.resource_uuid);
            (one.request_id, tracked, detail)
        })
        .collect()
}

/// Claims up to `limit` due queued rows (see [`Store::claim_due`]).
async fn claim_in(
    tx: &mut Tx,
    limit: usize,
    check: impl Fn(RequestFields) -> Result<ImportSpec, String>,
) -> Result<Vec<ClaimedRequest>, sqlx::Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(CLAIM_DUE)
        .bind(limit as i64)
        .fetch_all(&mut **tx)
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let attempts: i64 = row.try_get("attempts")?;
        match decode_fields(&row).and_then(&check) {
            Ok(spec) => claimed.push(ClaimedRequest {
                id,
                attempts: (attempts + 1) as u32,
                spec,
            }),
            Err(reason) => mark_rejected(tx, id, &reason).await?,
        }
    }
    mark_submitting(tx, &claimed).await?;
    Ok(claimed)
}

/// Moves each job's request from `from` to `submitted`, then inserts the job (once) and
/// appends a `kind` event with the row's detail to its history: a constant number of
/// statements for the batch. A request no longer in `from` (an operator changed or
/// deleted it meanwhile) gets nothing: what the daemon learned no longer applies to it.
async fn track_jobs(
    tx: &mut Tx,
    jobs: &[(i64, TrackedJob<'_>, String)],
    first_check: Duration,
    from: &str,
    kind: &str,
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let moved = execute_rows(tx, SET_SUBMITTED, jobs, |args, (request_id, _, _)| {
        args.add(*request_id)?;
        args.add(from)
    })
    .await?;
    let jobs: Vec<&(i64, TrackedJob, String)> = jobs
        .iter()
        .filter(|(request_id, _, _)| {
            let still_there = moved.contains(request_id);
            if !still_there {
                not_in_expected_state(*request_id, from);
            }
            still_there
        })
        .collect();
    let delay = after(first_check);
    let delay = delay.as_str();
    execute_rows(tx, TRACK_JOBS, &jobs, |args, (request_id, tracked, _)| {
        args.add(*request_id)?;
        args.add(tracked.job.id())?;
        args.add(non_empty(tracked.resource_uuid))?;
        args.add(tracked.api_request_id)?;
        args.add(non_empty(&tracked.job.status))?;
        args.add(tracked.job.progress)?;
        args.add(delay)
    })
    .await?;
    let events: Vec<NewEvent> = jobs
        .iter()
        .map(|(request_id, tracked, detail)| NewEvent {
            job_uuid: Some(tracked.job.id()),
            progress: Some(tracked.job.progress),
            detail: Some(detail.clone()),
            api_request_id: tracked.api_request_id.filter(|id| !id.is_empty()),
            ..NewEvent::new(*request_id, kind, "submitted")
        })
        .collect();
    insert_events(tx, &events).await?;
    Ok(())
}

/// Moves claimed requests to `submitting`, counting their attempt, with a history row
/// each.
async fn mark_submitting(tx: &mut Tx, claimed: &[ClaimedRequest]) -> Result<(), sqlx::Error> {
    if claimed.is_empty() {
        return Ok(());
    }
    execute_rows(tx, MARK_SUBMITTING, claimed, |args, request| {
        args.add(request.id)
    })
    .await?;
    let events: Vec<NewEvent> = claimed
        .iter()
        .map(|request| NewEvent {
            detail: Some(format!("attempt {}", request.attempts)),
            ..NewEvent::new(request.id, "submitting", "submitting")
        })
        .collect();
    insert_events(tx, &events).await
}

async fn mark_rejected(tx: &mut Tx, id: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE import_requests
         SET state = 'rejected', reason = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE id = ?",
    )
    .bind(reason)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    tracing::warn!(request_id = id, reason, "request rejected: not sent");
    append_event(tx, id, "rejected", "rejected", None, None)
        .detail(reason)
        .execute()
        .await
}

/// Moves a request from `from` to `state` with `reason`, clearing the API error of an
/// earlier attempt (the history keeps it). Returns false, changing nothing, when the
/// request is no longer in `from`: an operator changed or deleted it meanwhile, and what
/// the daemon was about to record no longer applies to it.
async fn set_state(
    tx: &mut Tx,
    id: i64,
    from: &str,
    state: &str,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE import_requests
         SET state = ?, reason = ?, last_errno = NULL, last_errmsg = NULL, last_api_request_id = NULL,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE id = ? AND state = ?",
    )
    .bind(state)
    .bind(reason)
    .bind(id)
    .bind(from)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed == 0 {
        not_in_expected_state(id, from);
    }
    Ok(changed > 0)
}

fn not_in_expected_state(request_id: i64, expected: &str) {
    tracing::warn!(
        request_id,
        expected,
        "request is no longer in the expected state (changed or deleted by an operator?); \
         outcome not recorded for it"
    );
}

/// Everything one recorded round writes, worked out before the transaction so that the
/// transaction is a handful of batch statements, whatever the number of jobs.
#[derive(Debug, Default)]
struct RoundWrites<'a> {
    /// Jobs that just passed `poll.overdue_after` (one statement each: they are rare).
    overdue: Vec<&'a OpenJob>,
    /// Jobs the answer left out (`true`) or whose call failed, with their next check.
    unseen: Vec<(i64, bool, String)>,
    /// Jobs the answer included, as it described them, with their next check.
    seen: Vec<(i64, &'a Job, String)>,
    /// Jobs whose answer differs from what was recorded, and what that changes.
    changes: Vec<JobChange<'a>>,
    /// Jobs the answer left out.
    missing: usize,
}

/// What an answer that differs from the record changes for one job.
#[derive(Debug)]
struct JobChange<'a> {
    /// `jobs.id`.
    job_id: i64,
    /// The history row to append.
    event: NewEvent<'a>,
    /// How the job ended, if it did: the request's new state and, for a failure, the
    /// reason.
    end: Option<(&'static str, Option<String>, FinishedJob)>,
}

impl<'a> RoundWrites<'a> {
    fn plan(observed: &'a [PolledJob]) -> RoundWrites<'a> {
        let mut writes = RoundWrites::default();
        for polled in observed {
            if polled.newly_overdue {
                writes.overdue.push(&polled.open);
            }
            let next = after(polled.next_check);
            match &polled.observation {
                Observation::Seen {
                    job,
                    api_request_id,
                } => writes.seen_job(&polled.open, job, api_request_id, next),
                unseen => {
                    let missed = matches!(unseen, Observation::Missing);
                    writes.missing += usize::from(missed);
                    writes.unseen.push((polled.open.id, missed, next));
                }
            }
        }
        writes
    }

    fn seen_job(&mut self, open: &'a OpenJob, job: &'a Job, api_request_id: &'a str, next: String) {
        self.seen.push((open.id, job, next));
        // The history shows progress in whole percent: a move within one percent (12.34 to
        // 12.36) is kept in the job's row but is no news worth a history row.
        let changed = job.progress.round() != open.last.progress.round()
            || job.done != open.last.done
            || job.success != open.last.success
            || job.result != open.last.result
            || (!job.status.is_empty() && job.status != open.last.status);
        if !changed {
            return;
        }
        let event = NewEvent {
            job_uuid: Some(&open.job_uuid),
            progress: Some(job.progress),
            api_request_id: non_empty(api_request_id),
            ..NewEvent::new(open.request_id, "job_progressed", "submitted")
        };
        if !job.done {
            let status = if job.status.is_empty() {
                "running"
            } else {
                &job.status
            };
            let detail = Some(format!("{status} {:.0}%", job.progress));
            self.changes.push(JobChange {
                job_id: open.id,
                event: NewEvent { detail, ..event },
                end: None,
            });
            return;
        }
        let (state, detail) = if job.success {
            (
                "succeeded",
                format!("image {} is ready", open.last.resource_uuid),
            )
        } else {
            let result = if job.result.is_empty() {
                "the job ended without success and gave no reason"
            } else {
                &job.result
            };
            ("failed", format!("job failed: {result}"))
        };
        let reason = (!job.success).then(|| detail.clone());
        let finished = FinishedJob {
            request_id: open.request_id,
            job_uuid: open.job_uuid.clone(),
            success: job.success,
            result: job.result.clone(),
        };
        self.changes.push(JobChange {
            job_id: open.id,
            event: NewEvent {
                kind: state,
                state,
                detail: Some(detail),
                ..event
            },
            end: Some((state, reason, finished)),
        });
    }

    /// Writes the round. A job that is gone (its request deleted) or already ended
    /// records nothing more, and an ended job's request moves only if it is still
    /// `submitted`; what was recorded comes back as the summary.
    async fn apply(&self, tx: &mut Tx) -> Result<RoundSummary, sqlx::Error> {
        for open in &self.overdue {
            mark_overdue(tx, open).await?;
        }
        execute_rows(
            tx,
            RECORD_UNSEEN,
            &self.unseen,
            |args, (id, missed, next)| {
                args.add(*id)?;
                args.add(*missed)?;
                args.add(next.as_str())
            },
        )
        .await?;
        let still_open = execute_rows(tx, RECORD_SEEN, &self.seen, |args, (id, job, next)| {
            args.add(*id)?;
            args.add(non_empty(&job.status))?;
            args.add(job.progress)?;
            args.add(job.done)?;
            args.add(job.success)?;
            args.add(non_empty(&job.result))?;
            args.add(next.as_str())
        })
        .await?;
        let changes: Vec<&JobChange> = self
            .changes
            .iter()
            .filter(|change| still_open.contains(&change.job_id))
            .collect();
        let ends: Vec<(i64, &str, Option<&str>)> = changes
            .iter()
            .filter_map(|change| {
                let (state, reason, _) = change.end.as_ref()?;
                Some((change.event.request_id, *state, reason.as_deref()))
            })
            .collect();
        let ended = execute_rows(tx, END_REQUESTS, &ends, |args, (id, state, reason)| {
            args.add(*id)?;
            args.add(*state)?;
            args.add(*reason)
        })
        .await?;

        let mut summary = RoundSummary {
            missing: self.missing,
            ..RoundSummary::default()
        };
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            if let Some((_, _, finished)) = &change.end {
                if !ended.contains(&finished.request_id) {
                    not_in_expected_state(finished.request_id, "submitted");
                    continue;
                }
                summary.finished.push(finished.clone());
            }
            summary.changed += 1;
            events.push(change.event.clone());
        }
        insert_events(tx, &events).await?;
        Ok(summary)
    }
}

/// One history row, as every statement that appends to the history takes it.
#[derive(Debug, Clone)]
struct NewEvent<'a> {
    request_id: i64,
    kind: &'a str,
    state: &'a str,
    job_uuid: Option<&'a str>,
    progress: Option<f64>,
    detail: Option<String>,
    errno: Option<i64>,
    errmsg: Option<&'a str>,
    api_request_id: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    fn new(request_id: i64, kind: &'a str, state: &'a str) -> NewEvent<'a> {
        NewEvent {
            request_id,
            kind,
            state,
            job_uuid: None,
            progress: None,
            detail: None,
            errno: None,
            errmsg: None,
            api_request_id: None,
        }
    }
}

/// Appends the rows to the history, in their order.
async fn insert_events(tx: &mut Tx, events: &[NewEvent<'_>]) -> Result<(), sqlx::Error> {
    execute_rows(tx, INSERT_EVENTS, events, |args, event| {
        args.add(event.request_id)?;
        args.add(event.kind)?;
        args.add(event.state)?;
        args.add(event.job_uuid)?;
        args.add(event.progress)?;
        args.add(event.detail.as_deref())?;
        args.add(event.errno)?;
        args.add(event.errmsg)?;
        args.add(event.api_request_id)
    })
    .await?;
    Ok(())
}

/// Runs `sql`, a statement written for one row of `VALUES (...)`, for all `rows`, each
/// row's values added by `bind` in the order of the row's `?`s. Returns the ids the
/// statement's `RETURNING` clause gave back, if it has one.
///
/// The rows go in chunks of [`ROWS_PER_STATEMENT`], then of the powers of two that make up
/// the rest down to [`EXACT_ROWS`], then the rest in one (100 rows: 64 + 32 + 4), so that
/// each statement has at most 19 texts and each text is prepared once per connection, then
/// found in the statement cache: parsing a long `VALUES` list anew every time would cost
/// more than running it.
async fn execute_rows<'r, R>(
    tx: &mut Tx,
    sql: &str,
    rows: &'r [R],
    bind: impl Fn(&mut SqliteArguments<'r>, &'r R) -> Result<(), BoxDynError>,
) -> Result<HashSet<i64>, sqlx::Error> {
    let mut returned = HashSet::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = chunk_size(rest.len());
        let (chunk, later) = rest.split_at(size);
        rest = later;
        let mut args = SqliteArguments::default();
        for row in chunk {
            bind(&mut args, row).map_err(sqlx::Error::Encode)?;
        }
        let text = with_rows(sql, size);
        let ids = sqlx::query_scalar_with::<_, i64, _>(&text, args)
            .fetch_all(&mut **tx)
            .await?;
        returned.extend(ids);
    }
    Ok(returned)
}

/// The next chunk for `left` rows: [`ROWS_PER_STATEMENT`], the largest power of two not
/// above `left`, or all of them when they are at most [`EXACT_ROWS`].
fn chunk_size(left: usize) -> usize {
    if left >= ROWS_PER_STATEMENT {
        ROWS_PER_STATEMENT
    } else if left <= EXACT_ROWS {
        left
    } else {
        1 << left.ilog2()
    }
}

/// `sql` with its first `VALUES (...)` row repeated `rows` times.
fn with_rows(sql: &str, rows: usize) -> String {
    let start = sql
        .find("VALUES (")
        .expect("a batch statement has a VALUES row")
        + 7;
    let end = start + sql[start..].find(')').expect("the VALUES row ends") + 1;
    let row = &sql[start..end];
    let mut text = String::with_capacity(sql.len() + (row.len() + 2) * rows);
    text.push_str(&sql[..start]);
    for n in 0..rows {
        if n > 0 {
            text.push_str(", ");
        }
        text.push_str(row);
    }
    text.push_str(&sql[end..]);
    text
}

async fn mark_overdue(tx: &mut Tx, open: &OpenJob) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jobs SET overdue_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?")
        .bind(open.id)
        .execute(&mut **tx)
        .await?;
    let detail = format!(
        "job still running after {}: marked overdue, checked at the slowest interval from now \
         on; it is recorded as succeeded only if the API says so",
        humantime::format_duration(Duration::from_secs(open.age.as_secs()))
    );
    append_event(
        tx,
        open.request_id,
        "overdue",
        "submitted",
        Some(&open.job_uuid),
        Some(open.last.progress),
    )
    .detail(&detail)
    .execute()
    .await
}

/// Builder for one history row, so each call site names only what it knows.
struct EventInsert<'t, 'a> {
    tx: &'t mut Tx,
    event: NewEvent<'a>,
}

fn append_event<'t, 'a>(
    tx: &'t mut Tx,
    request_id: i64,
    kind: &'a str,
    state: &'a str,
    job_uuid: Option<&'a str>,
    progress: Option<f64>,
) -> EventInsert<'t, 'a> {
    EventInsert {
        tx,
        event: NewEvent {
            job_uuid,
            progress,
            ..NewEvent::new(request_id, kind, state)
        },
    }
}

impl<'a> EventInsert<'_, 'a> {
    fn detail(mut self, detail: &str) -> Self {
        self.event.detail = Some(detail.to_owned());
        self
    }

    fn api(
        mut self,
        errno: Option<i64>,
        errmsg: Option<&'a str>,
        api_request_id: Option<&'a str>,
    ) -> Self {
        self.event.errno = errno;
        self.event.errmsg = errmsg;
        self.event.api_request_id = api_request_id.filter(|id| !id.is_empty());
        self
    }

    fn failure(self, failure: &'a Failure) -> Self {
        self.api(
            failure.errno,
            failure.errmsg.as_deref(),
            failure.api_request_id.as_deref(),
        )
    }

    async fn execute(self) -> Result<(), sqlx::Error> {
        insert_events(self.tx, &[self.event]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_statement_is_written_for_one_row_and_repeated_for_many() {
        let cases = [
            (
                "one row",
                1,
                "INSERT INTO t (a, b) VALUES (?, ?) RETURNING a",
            ),
            (
                "three rows",
                3,
                "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?) RETURNING a",
            ),
        ];
        for (name, rows, want) in cases {
            let got = with_rows("INSERT INTO t (a, b) VALUES (?, ?) RETURNING a", rows);
            assert_eq!(got, want, "{name}");
        }
        let batch = [
            MARK_SUBMITTING,
            TRACK_JOBS,
            SET_SUBMITTED,
            RECORD_SEEN,
            RECORD_UNSEEN,
            END_REQUESTS,
            INSERT_EVENTS,
        ];
        let sizes = |mut left: usize| {
            let mut sizes = Vec::new();
            while left > 0 {
                sizes.push(chunk_size(left));
                left -= chunk_size(left);
            }
            sizes
        };
        assert_eq!(sizes(100), [64, 32, 4]);
        assert_eq!(sizes(300), [128, 128, 32, 12]);
        assert_eq!(sizes(7), [7]);
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(49), [32, 16, 1]);
        for sql in batch {
            let one = with_rows(sql, 1);
            assert_eq!(one, sql, "the constant is the one-row statement");
            let params = |text: &str| text.matches('?').count();
            assert_eq!(params(&with_rows(sql, 5)), 5 * params(sql), "{sql}");
        }
    }
}
