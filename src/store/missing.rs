//! Statements for jobs that JobResult keeps leaving out: finding them, and recording what
//! ListCIMG says of their image.

use sqlx::Row;

use super::{append_event, lossy, set_state, Store};

/// An open job that several JobResult answers in a row left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingJob {
    /// `jobs.id`.
    pub id: i64,
    /// The request it belongs to.
    pub request_id: i64,
    /// The region it runs in.
    pub region_id: String,
    /// The API's id of the job.
    pub job_uuid: String,
    /// The image it creates.
    pub resource_uuid: String,
    /// The image's name, to look it up by.
    pub name: String,
    /// Answers in a row that left it out.
    pub misses: u32,
}

/// How the image of a missing job turned out, by ListCIMG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedEnd {
    /// The image is ready: the job succeeded.
    Succeeded(String),
    /// The image is in an error state: the job failed.
    Failed(String),
    /// No such image: the job is lost.
    Lost(String),
}

impl Store {
    /// Up to `limit` open jobs left out of at least `min_misses` answers in a row.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn missing_jobs(
        &self,
        min_misses: u32,
        limit: usize,
    ) -> anyhow::Result<Vec<MissingJob>> {
        let rows = sqlx::query(
            "SELECT j.id, j.request_id, j.region_id, j.job_uuid, coalesce(j.resource_uuid, '') AS resource_uuid,
                    r.name, j.missed_polls
             FROM jobs AS j JOIN import_requests AS r ON r.id = j.request_id
             WHERE j.finished_at IS NULL AND j.missed_polls >= ?
             ORDER BY j.id
             LIMIT ?",
        )
        .bind(i64::from(min_misses))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MissingJob {
                    id: row.try_get("id")?,
                    request_id: row.try_get("request_id")?,
                    region_id: row.try_get("region_id")?,
                    job_uuid: row.try_get("job_uuid")?,
                    resource_uuid: row.try_get("resource_uuid")?,
                    name: lossy(row, "name"),
                    misses: row.try_get::<i64, _>("missed_polls")? as u32,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// ListCIMG still shows the job running on its image: keep polling, counting misses
    /// from zero.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_job_listed(&self, job_id: i64) -> anyhow::Result<()> {
        self.write("reset a missing job", |pool| async move {
            sqlx::query("UPDATE jobs SET missed_polls = 0 WHERE id = ?")
                .bind(job_id)
                .execute(&pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Ends tracking of a job JobResult no longer reports, as ListCIMG showed it.
    ///
    /// # Errors
    ///
    /// The database cannot be written (after waiting out locks).
    pub async fn record_job_ended_by_listing(
        &self,
        job: &MissingJob,
        end: &ListedEnd,
    ) -> anyhow::Result<()> {
        let (success, state, kind, detail) = match end {
            ListedEnd::Succeeded(detail) => (true, "succeeded", "succeeded", detail),
            ListedEnd::Failed(detail) => (false, "failed", "failed", detail),
            ListedEnd::Lost(detail) => (false, "failed", "job_lost", detail),
        };
        self.write("record a job ended by listing", |pool| async move {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let ended = sqlx::query(
                "UPDATE jobs
                 SET done = 1, success = ?, result = ?,
                     finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ? AND finished_at IS NULL",
            )
            .bind(success)
            .bind((!success).then_some(detail.as_str()))
            .bind(job.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let reason = (!success).then_some(detail.as_str());
            if ended == 0 || !set_state(&mut tx, job.request_id, "submitted", state, reason).await?
            {
                return Ok(());
            }
            append_event(
                &mut tx,
                job.request_id,
                kind,
                state,
                Some(&job.job_uuid),
                None,
            )
            .detail(detail)
            .execute()
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
