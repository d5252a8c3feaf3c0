//! The operator's statements: what `enqueue`, `list`, `show`, `watch`, `retry` and `cancel`
//! read and write. They live beside the daemon's statements, in the store, so that every
//! SQL statement of the crate is in one place; the commands speak in the types below.
//!
//! Writes follow the daemon's rules: one `BEGIN IMMEDIATE` transaction per change, waiting
//! out an operator's `sqlite3` lock, and every change of state appended to `events`. A
//! change of state is conditional in its own `UPDATE … WHERE state IN (…)`, so an operator
//! and the daemon can never both move the same request.

use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{append_event, lossy, RequestState, StatusRow, Store};
use crate::api::ImportSpec;

/// The states `watch` follows: the request is not yet finished with the API.
pub const IN_FLIGHT: [RequestState; 4] = [
    RequestState::Queued,
    RequestState::Submitting,
    RequestState::Submitted,
    RequestState::InDoubt,
];

/// Which rows of `request_status` `list` shows, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFilter {
    /// Only this state (its database name), or every state.
    pub state: Option<String>,
    /// Only this target region, or every region.
    pub region_id: Option<String>,
    /// At most this many rows.
    pub limit: u32,
}

/// A request as stored: every column of `import_requests`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    /// Request id.
    pub id: i64,
    /// Current state, as stored (`queued`, `submitted`, …).
    pub state: String,
    /// Target region.
    pub region_id: String,
    /// Name of the new image.
    pub name: String,
    /// Source image.
    pub origin_image_uuid: String,
    /// Source region.
    pub origin_region_id: String,
    /// Description of the new image, if any.
    pub description: Option<String>,
    /// Attempts so far.
    pub attempts: i64,
    /// When the submitter may next pick it up (meaningful while `queued`).
    pub next_attempt_at: String,
    /// When it was first sent, if ever.
    pub first_attempt_at: Option<String>,
    /// Why it is where it is, in words.
    pub reason: Option<String>,
    /// The API's errno of the last failure.
    pub last_errno: Option<i64>,
    /// The API's message of the last failure.
    pub last_errmsg: Option<String>,
    /// The API's requestId of the last failure.
    pub last_api_request_id: Option<String>,
    /// When it was queued.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// One row of `jobs`: a job the API returned for a request, as last recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// The API's id of the job.
    pub job_uuid: String,
    /// The region it runs in.
    pub region_id: String,
    /// The new image's uuid.
    pub resource_uuid: Option<String>,
    /// requestId of the ImportCIMG answer that returned the job.
    pub api_request_id: Option<String>,
    /// The API's status text, such as `Processing`.
    pub status: Option<String>,
    /// 0 to 100.
    pub progress: f64,
    /// The job has ended.
    pub done: bool,
    /// It ended well.
    pub success: bool,
    /// Failure reason, once it ended badly.
    pub result: Option<String>,
    /// When it was recorded.
    pub created_at: String,
    /// When it was last asked about.
    pub last_checked_at: Option<String>,
    /// When it will next be asked about.
    pub next_check_at: String,
    /// When tracking ended.
    pub finished_at: Option<String>,
}

/// A request `watch` shows: one in [`IN_FLIGHT`].
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// Request id.
    pub id: i64,
    /// Current state, as stored.
    pub state: String,
    /// Target region.
    pub region_id: String,
    /// Name of the new image.
    pub name: String,
    /// Progress of its job while `submitted`; `None` before.
    pub progress: Option<f64>,
    /// Time since it was queued.
    pub elapsed: Duration,
    /// While `queued` for a later attempt: the time left until it is due.
    pub due_in: Option<Duration>,
    /// Why it waits, if it does (a retry's cause, why it is in doubt).
    pub reason: Option<String>,
}

/// A change an operator asks for by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    /// Back to `queued`, attempts reset: after a failure, a corrected rejected row, or a
    /// request in doubt that the operator has checked.
    Retry,
    /// To `cancelled`: only before anything was sent.
    Cancel,
}

impl OperatorAction {
    /// The command's name, as typed.
    pub fn name(self) -> &'static str {
        match self {
            OperatorAction::Retry => "retry",
            OperatorAction::Cancel => "cancel",
        }
    }

    /// The states the change is allowed from. The `UPDATE` statements below repeat this
    /// list in SQL; a test checks that the two agree.
    pub fn allowed_from(self) -> &'static [RequestState] {
        match self {
            OperatorAction::Retry => &[
                RequestState::Failed,
                RequestState::Rejected,
                RequestState::InDoubt,
            ],
            OperatorAction::Cancel => &[RequestState::Queued],
        }
    }

    /// The state the request is in afterwards.
    pub fn target(self) -> RequestState {
        match self {
            OperatorAction::Retry => RequestState::Queued,
            OperatorAction::Cancel => RequestState::Cancelled,
        }
    }

    /// The history event it appends.
    pub fn event_kind(self) -> &'static str {
        match self {
            OperatorAction::Retry => "retried",
            OperatorAction::Cancel => "cancelled",
        }
    }
}

/// What became of an [`OperatorAction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Done; the request was in `from` before.
    Applied {
        /// The state it left, as stored.
        from: String,
    },
    /// Not allowed from the request's current state; nothing changed.
    Refused {
        /// The state it is in, as stored.
        state: String,
    },
    /// No request has this id.
    NotFound,
}

/// Back to the queue, due now, attempts reset; the last error is cleared (the history
/// keeps it). `first_attempt_at` is kept, so that a reconciliation after a new unclear
/// attempt also looks for an image the earlier attempts might have created.
const RETRY: &str = "
    UPDATE import_requests
    SET state = 'queued',
        attempts = 0,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        reason = NULL, last_errno = NULL, last_errmsg = NULL, last_api_request_id = NULL,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = ? AND state IN ('failed', 'rejected', 'in_doubt')";

/// Withdrawn before the submitter claimed it; the reason says who withdrew it.
const CANCEL: &str = "
    UPDATE import_requests
    SET state = 'cancelled',
        reason = ?,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE id = ? AND state = 'queued'";

impl Store {
    /// Queues requests that have already been validated, all or none, in one
    /// `BEGIN IMMEDIATE` transaction; returns their ids in order. The insert trigger
    /// records each `queued` event.
    ///
    /// # Errors
    ///
    /// The database cannot be written; then nothing was queued.
    pub async fn enqueue(&self, specs: &[ImportSpec]) -> anyhow::Result<Vec<i64>> {
        self.write("queue requests", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut ids = Vec::with_capacity(specs.len());
            for spec in specs {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO import_requests
                         (region_id, name, origin_image_uuid, origin_region_id, description)
                     VALUES (?, ?, ?, ?, ?)
                     RETURNING id",
                )
                .bind(&spec.region_id)
                .bind(&spec.name)
                .bind(&spec.origin_image_uuid)
                .bind(&spec.origin_region_id)
                .bind(&spec.description)
                .fetch_one(&mut *tx)
                .await?;
                ids.push(id);
            }
            tx.commit().await?;
            Ok(ids)
        })
        .await
    }

    /// Rows of `request_status` that pass `filter`, newest first.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn list_status(&self, filter: &StatusFilter) -> anyhow::Result<Vec<StatusRow>> {
        let rows = sqlx::query(
            "SELECT id, state, region_id, name, origin_region_id, job_uuid, resource_uuid,
                    progress, attempts, last_error, created_at, updated_at
             FROM request_status
             WHERE (?1 IS NULL OR state = ?1)
               AND (?2 IS NULL OR region_id = ?2)
             ORDER BY id DESC
             LIMIT ?3",
        )
        .bind(&filter.state)
        .bind(&filter.region_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(status_row)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// One request with every column, or `None` if no request has this id.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn request(&self, id: i64) -> anyhow::Result<Option<RequestRecord>> {
        let row = sqlx::query(
            "SELECT id, state, region_id, name, origin_image_uuid, origin_region_id, description,
                    attempts, next_attempt_at, first_attempt_at, reason, last_errno, last_errmsg,
                    last_api_request_id, created_at, updated_at
             FROM import_requests
             WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(request_record)
            .transpose()
            .map_err(Into::into)
    }

    /// Every job recorded for a request, oldest first (a request that was retried after a
    /// failed job has several).
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn jobs_of(&self, request_id: i64) -> anyhow::Result<Vec<JobRecord>> {
        let rows = sqlx::query(
            "SELECT job_uuid, region_id, resource_uuid, api_request_id, status, progress, done,
                    success, result, created_at, last_checked_at, next_check_at, finished_at
             FROM jobs
             WHERE request_id = ?
             ORDER BY id",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(job_record)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Requests in [`IN_FLIGHT`] states, oldest first, with their latest job's progress.
    /// Served by the index `import_requests_state`.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn in_flight(&self) -> anyhow::Result<Vec<InFlight>> {
        let rows = sqlx::query(
            "SELECT r.id, r.state, r.region_id, r.name, r.reason,
                    CASE WHEN r.state = 'submitted' THEN j.progress END AS progress,
                    (julianday('now') - julianday(r.created_at)) * 86400.0 AS elapsed_seconds,
                    (julianday(r.next_attempt_at) - julianday('now')) * 86400.0 AS due_seconds
             FROM import_requests AS r
             LEFT JOIN jobs AS j
                 ON j.id = (SELECT max(id) FROM jobs WHERE request_id = r.id)
             WHERE r.state IN ('queued', 'submitting', 'submitted', 'in_doubt')
             ORDER BY r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(in_flight)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Applies an operator's change if the request's current state allows it, and appends
    /// the event (`retried` or `cancelled`) with `detail` saying who did it. The state is
    /// checked by the `UPDATE` itself, so a request the daemon claims at the same moment
    /// is refused, never changed under it.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn apply_change(
        &self,
        id: i64,
        action: OperatorAction,
        detail: &str,
    ) -> anyhow::Result<ChangeOutcome> {
        self.write("record an operator's change", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM import_requests WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(state) = state else {
                return Ok(ChangeOutcome::NotFound);
            };
            let update = match action {
                OperatorAction::Retry => sqlx::query(RETRY).bind(id),
                OperatorAction::Cancel => sqlx::query(CANCEL).bind(detail).bind(id),
            };
            if update.execute(&mut *tx).await?.rows_affected() == 0 {
                return Ok(ChangeOutcome::Refused { state });
            }
            let target = action.target().as_str();
            append_event(&mut tx, id, action.event_kind(), target, None, None)
                .detail(&format!("{detail} (was {state})"))
                .execute()
                .await?;
            tx.commit().await?;
            Ok(ChangeOutcome::Applied { from: state })
        })
        .await
    }
}

fn status_row(row: &SqliteRow) -> Result<StatusRow, sqlx::Error> {
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
}

/// A text column that may be NULL, shown even if it holds bytes that are not UTF-8.
fn lossy_optional(row: &SqliteRow, column: &str) -> Option<String> {
    match row.try_get::<Option<String>, _>(column) {
        Ok(text) => text,
        Err(_) => Some(lossy(row, column)),
    }
}

fn request_record(row: &SqliteRow) -> Result<RequestRecord, sqlx::Error> {
    Ok(RequestRecord {
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        region_id: lossy(row, "region_id"),
        name: lossy(row, "name"),
        origin_image_uuid: lossy(row, "origin_image_uuid"),
        origin_region_id: lossy(row, "origin_region_id"),
        description: lossy_optional(row, "description"),
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        first_attempt_at: row.try_get("first_attempt_at")?,
        reason: row.try_get("reason")?,
        last_errno: row.try_get("last_errno")?,
        last_errmsg: row.try_get("last_errmsg")?,
        last_api_request_id: row.try_get("last_api_request_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn job_record(row: &SqliteRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        job_uuid: row.try_get("job_uuid")?,
        region_id: row.try_get("region_id")?,
        resource_uuid: row.try_get("resource_uuid")?,
        api_request_id: row.try_get("api_request_id")?,
        status: row.try_get("status")?,
        progress: row.try_get("progress")?,
        done: row.try_get("done")?,
        success: row.try_get("success")?,
        result: row.try_get("result")?,
        created_at: row.try_get("created_at")?,
        last_checked_at: row.try_get("last_checked_at")?,
        next_check_at: row.try_get("next_check_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn in_flight(row: &SqliteRow) -> Result<InFlight, sqlx::Error> {
    let seconds = |value: f64| Duration::from_secs_f64(value.max(0.0));
    let state: String = row.try_get("state")?;
    let due: f64 = row.try_get("due_seconds")?;
    Ok(InFlight {
        id: row.try_get("id")?,
        region_id: lossy(row, "region_id"),
        name: lossy(row, "name"),
        progress: row.try_get("progress")?,
        elapsed: seconds(row.try_get("elapsed_seconds")?),
        due_in: (state == "queued" && due > 0.0).then(|| seconds(due)),
        reason: row.try_get("reason")?,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSettings;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings {
            path: dir.path().join("operator.db"),
            ..DatabaseSettings::default()
        };
        let store = Store::open(&settings).await.unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    fn spec(name: &str) -> ImportSpec {
        ImportSpec {
            region_id: "gz".into(),
            name: name.into(),
            origin_image_uuid: "4a48f88391134a01befe88ff98b68af8".into(),
            origin_region_id: "bj".into(),
            description: None,
        }
    }

    async fn force_state(store: &Store, id: i64, state: RequestState) {
        sqlx::query("UPDATE import_requests SET state = ?, attempts = 3 WHERE id = ?")
            .bind(state.as_str())
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn changes_are_applied_exactly_from_the_allowed_states() {
        let (_dir, store) = store().await;
        for action in [OperatorAction::Retry, OperatorAction::Cancel] {
            for state in RequestState::ALL {
                let id = store.enqueue(&[spec("x")]).await.unwrap()[0];
                force_state(&store, id, state).await;
                let outcome = store.apply_change(id, action, "by test").await.unwrap();
                let case = format!("{} from {}", action.name(), state.as_str());
                if action.allowed_from().contains(&state) {
                    let from = state.as_str().to_owned();
                    assert_eq!(outcome, ChangeOutcome::Applied { from }, "{case}");
                    let now = store.request(id).await.unwrap().unwrap();
                    assert_eq!(now.state, action.target().as_str(), "{case}");
                } else {
                    let refused = ChangeOutcome::Refused {
                        state: state.as_str().to_owned(),
                    };
                    assert_eq!(outcome, refused, "{case}");
                }
            }
        }
    }

    #[tokio::test]
    async fn retry_resets_attempts_and_records_who() {
        let (_dir, store) = store().await;
        let id = store.enqueue(&[spec("x")]).await.unwrap()[0];
        force_state(&store, id, RequestState::Failed).await;
        store
            .apply_change(id, OperatorAction::Retry, "by alice")
            .await
            .unwrap();
        let request = store.request(id).await.unwrap().unwrap();
        assert_eq!((request.state.as_str(), request.attempts), ("queued", 0));
        let last = store.history(id).await.unwrap().pop().unwrap();
        assert_eq!(last.kind, "retried");
        assert_eq!(last.detail.as_deref(), Some("by alice (was failed)"));
    }

    #[tokio::test]
    async fn unknown_id_is_not_found() {
        let (_dir, store) = store().await;
        let outcome = store
            .apply_change(99, OperatorAction::Cancel, "by test")
            .await
            .unwrap();
        assert_eq!(outcome, ChangeOutcome::NotFound);
        assert_eq!(store.request(99).await.unwrap(), None);
    }

    #[tokio::test]
    async fn list_filters_by_state_and_region_newest_first() {
        let (_dir, store) = store().await;
        let mut other = spec("in-bj");
        other.region_id = "bj".into();
        other.origin_region_id = "gz".into();
        let ids = store.enqueue(&[spec("a"), spec("b"), other]).await.unwrap();
        force_state(&store, ids[0], RequestState::Failed).await;
        let filter = |state: Option<&str>, region: Option<&str>, limit| StatusFilter {
            state: state.map(str::to_owned),
            region_id: region.map(str::to_owned),
            limit,
        };
        let cases: &[(&str, StatusFilter, Vec<i64>)] = &[
            (
                "everything",
                filter(None, None, 50),
                vec![ids[2], ids[1], ids[0]],
            ),
            ("one state", filter(Some("failed"), None, 50), vec![ids[0]]),
            (
                "one region",
                filter(None, Some("gz"), 50),
                vec![ids[1], ids[0]],
            ),
            ("both", filter(Some("queued"), Some("gz"), 50), vec![ids[1]]),
            ("limited", filter(None, None, 1), vec![ids[2]]),
        ];
        for (name, filter, want) in cases {
            let got: Vec<i64> = store
                .list_status(filter)
                .await
                .unwrap()
                .iter()
                .map(|row| row.id)
                .collect();
            assert_eq!(&got, want, "{name}");
        }
    }
}
