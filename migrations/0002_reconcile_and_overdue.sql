-- What reconciling in_doubt requests and watching long jobs need.

-- The new image's uuid, when it was learned without a job to track (an in_doubt request
-- adopted from ListCIMG after its job had already ended).
ALTER TABLE import_requests ADD COLUMN resource_uuid TEXT;

-- When the latest ImportCIMG call was started: an unanswered call may still be creating
-- an image for a while after it, so "no image" only counts once this is old enough.
ALTER TABLE import_requests ADD COLUMN last_attempt_at TEXT;

-- Consecutive JobResult calls about this job that failed; the next check backs off.
ALTER TABLE jobs ADD COLUMN poll_errors INTEGER NOT NULL DEFAULT 0 CHECK (poll_errors >= 0);

-- When the job was found still running past `poll.overdue_after`.
ALTER TABLE jobs ADD COLUMN overdue_at TEXT;

-- The reconciler's question: which images are already someone's.
CREATE INDEX jobs_resource ON jobs (resource_uuid);

DROP VIEW request_status;

CREATE VIEW request_status AS
SELECT
    r.id,
    r.state,
    r.region_id,
    r.name,
    r.origin_region_id,
    r.origin_image_uuid,
    j.job_uuid,
    coalesce(j.resource_uuid, r.resource_uuid) AS resource_uuid,
    j.progress,
    r.attempts,
    -- The reason already quotes the API's errno and message when there was one.
    coalesce(r.reason, 'errno ' || r.last_errno || coalesce(': ' || r.last_errmsg, ''))
        AS last_error,
    j.overdue_at IS NOT NULL AS overdue,
    r.created_at,
    r.updated_at
FROM import_requests AS r
LEFT JOIN jobs AS j
    ON j.id = (SELECT max(id) FROM jobs WHERE request_id = r.id);
