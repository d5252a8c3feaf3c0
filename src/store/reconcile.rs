//! Statements of the reconciler: finding `in_doubt` requests, checking which images are
//! already recorded, and settling each request one way or the other.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;

use super::{after, append_event, lossy, set_state, Store};

/// The reconciler's question: `in_doubt` requests due for a look-up, oldest first.
pub(super) const IN_DOUBT_DUE: &str = "
    SELECT id, region_id, name, reason,
           CAST((julianday(coalesce(first_attempt_at, created_at)) - 2440587.5)
                * 86400000.0 AS INTEGER) AS first_attempt_ms,
           (julianday('now') - julianday(coalesce(last_attempt_at, first_attempt_at, created_at)))
               * 86400.0 AS since_last_attempt
    FROM import_requests INDEXED BY import_requests_doubt
    WHERE state = 'in_doubt' AND next_attempt_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    ORDER BY next_attempt_at, id
    LIMIT ?";

/// When the next `in_doubt` request is due for a look-up.
pub(super) const NEXT_IN_DOUBT: &str = "
    SELECT (julianday(min(next_attempt_at)) - julianday('now')) * 86400.0
    FROM import_requests INDEXED BY import_requests_doubt
    WHERE state = 'in_doubt'";

/// Whether some request already owns an image, as its job's or as an adopted one.
pub(super) const OWNED_IMAGE: &str = "
    SELECT 1 FROM jobs WHERE resource_uuid = ?1
    UNION ALL
    SELECT 1 FROM import_requests INDEXED BY import_requests_resource WHERE resource_uuid = ?1
    LIMIT 1";

/// The latest reason a request was recorded in doubt for.
pub(super) const LAST_DOUBT: &str = "
    SELECT detail FROM events
    WHERE request_id = ? AND kind IN ('still_in_doubt', 'outcome_unknown', 'interrupted')
    ORDER BY id DESC LIMIT 1";

/// An `in_doubt` request due for a look-up.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubtfulRequest {
    /// `import_requests.id`.
    pub id: i64,
    /// Target region, where a copy would have been created.
    pub region_id: String,
    /// Name the copy would carry.
    pub name: String,
    /// The first attempt, in milliseconds since the Unix epoch (the API's `createTime`
    /// unit); the request's creation when it was never attempted.
    pub first_attempt_ms: i64,
    /// Time since the latest attempt was started.
    pub since_last_attempt: Duration,
    /// Why it is in doubt now.
    pub reason: Option<String>,
}

impl Store {
    /// Up to `limit` `in_doubt` requests whose next look-up is due.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn in_doubt_due(&self, limit: usize) -> anyhow::Result<Vec<DoubtfulRequest>> {
        let rows = sqlx::query(IN_DOUBT_DUE)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let since: f64 = row.try_get("since_last_attempt")?;
                Ok(DoubtfulRequest {
                    id: row.try_get("id")?,
                    region_id: lossy(row, "region_id"),
                    name: lossy(row, "name"),
                    first_attempt_ms: row.try_get("first_attempt_ms")?,
                    since_last_attempt: Duration::from_secs_f64(since.max(0.0)),
                    reason: row.try_get("reason").unwrap_or(None),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Time until the next `in_doubt` request is due for a look-up, if any is in doubt.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn next_in_doubt_in(&self) -> anyhow::Result<Option<Duration>> {
        let seconds: Option<f64> = sqlx::query_scalar(NEXT_IN_DOUBT)
            .fetch_one(&self.pool)
            .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// Which of these image uuids some request already owns (as its job's image or an
    /// adopted one): such an image is not the answer to another request's doubt.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn owned_images(&self, uuids: &[String]) -> anyhow::Result<HashSet<String>> {
        let mut owned = HashSet::new();
        for uuid in uuids {
            let found: Option<i64> = sqlx::query_scalar(OWNED_IMAGE)
                .bind(uuid)
                .fetch_optional(&self.pool)
                .await?;
            if found.is_some() {
                owned.insert(uuid.clone());
            }
        }
        Ok(owned)
    }

    /// Ends an `in_doubt` request whose image was found already finished: `succeeded`
    /// when the image is ready, `failed` otherwise, with the image recorded.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_adopted_image(
        &self,
        request_id: i64,
        resource_uuid: &str,
        success: bool,
        detail: &str,
    ) -> anyhow::Result<()> {
        let state = if success { "succeeded" } else { "failed" };
        self.write("record an adopted image", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            if !set_state(
                &mut tx,
                request_id,
                "in_doubt",
                state,
                (!success).then_some(detail),
            )
            .await?
            {
                return Ok(());
            }
            sqlx::query("UPDATE import_requests SET resource_uuid = ? WHERE id = ?")
                .bind(resource_uuid)
                .bind(request_id)
                .execute(&mut *tx)
                .await?;
            append_event(&mut tx, request_id, "adopted", state, None, None)
                .detail(detail)
                .execute()
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Queues an `in_doubt` request again: the look-up proved nothing was created. Its
    /// attempts are kept.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_requeued(&self, request_id: i64, detail: &str) -> anyhow::Result<()> {
        self.write("queue a reconciled request again", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            if !set_state(&mut tx, request_id, "in_doubt", "queued", None).await? {
                return Ok(());
            }
            sqlx::query(
                "UPDATE import_requests
                 SET next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?",
            )
            .bind(request_id)
            .execute(&mut *tx)
            .await?;
            append_event(&mut tx, request_id, "requeued", "queued", None, None)
                .detail(detail)
                .execute()
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Keeps a request `in_doubt` and looks again after `delay`. The reason goes to the
    /// history only when it changed, so a long doubt does not flood it.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_still_in_doubt(
        &self,
        request_id: i64,
        reason: &str,
        delay: Duration,
    ) -> anyhow::Result<()> {
        self.write("keep a request in doubt", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let previous: Option<String> = sqlx::query_scalar(LAST_DOUBT)
                .bind(request_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
            let still = sqlx::query(
                "UPDATE import_requests
                 SET next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?),
                     reason = ?,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ? AND state = 'in_doubt'",
            )
            .bind(after(delay))
            .bind(reason)
            .bind(request_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if still == 1 && previous.as_deref() != Some(reason) {
                append_event(
                    &mut tx,
                    request_id,
                    "still_in_doubt",
                    "in_doubt",
                    None,
                    None,
                )
                .detail(reason)
                .execute()
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
