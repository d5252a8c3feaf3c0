-- The queue, the jobs the API returned, and the append-only history.
--
-- Every timestamp is UTC ISO-8601 text with milliseconds
-- (`2026-12-04T15:30:51.123Z`): readable in the sqlite3 CLI and sortable as text.

CREATE TABLE import_requests (
    id                  INTEGER PRIMARY KEY,
    -- The four fields the API itself names, plus the optional description.
    region_id           TEXT NOT NULL,
    name                TEXT NOT NULL,
    origin_image_uuid   TEXT NOT NULL,
    origin_region_id    TEXT NOT NULL,
    description         TEXT,
    -- Everything below fills itself on a plain INSERT.
    state               TEXT NOT NULL DEFAULT 'queued' CHECK (state IN (
                            'queued', 'submitting', 'submitted', 'in_doubt',
                            'succeeded', 'failed', 'rejected', 'cancelled')),
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    first_attempt_at    TEXT,
    -- Why the request is where it is, in words (set for failed, rejected, in_doubt and
    -- for a retry that is waiting), and the API's own words for the last error.
    reason              TEXT,
    last_errno          INTEGER,
    last_errmsg         TEXT,
    last_api_request_id TEXT,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- The submitter's question: which queued rows are due, oldest first.
CREATE INDEX import_requests_due ON import_requests (next_attempt_at, id)
    WHERE state = 'queued';

-- Operators' questions: everything in one state, and one region's requests.
CREATE INDEX import_requests_state ON import_requests (state, id);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    request_id      INTEGER NOT NULL REFERENCES import_requests (id) ON DELETE CASCADE,
    -- The region the job runs in: the request's target region.
    region_id       TEXT NOT NULL,
    job_uuid        TEXT NOT NULL,
    resource_uuid   TEXT,
    -- requestId of the ImportCIMG answer that returned this job.
    api_request_id  TEXT,
    status          TEXT,
    progress        REAL NOT NULL DEFAULT 0,
    done            INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    success         INTEGER NOT NULL DEFAULT 0 CHECK (success IN (0, 1)),
    result          TEXT,
    -- Consecutive JobResult answers that left this job out.
    missed_polls    INTEGER NOT NULL DEFAULT 0 CHECK (missed_polls >= 0),
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_checked_at TEXT,
    next_check_at   TEXT NOT NULL,
    -- Set when tracking ended: the job is done, or it was given up as lost.
    finished_at     TEXT,
    UNIQUE (region_id, job_uuid)
) STRICT;

-- The poller's question: which open jobs are due, per region.
CREATE INDEX jobs_due ON jobs (next_check_at) WHERE finished_at IS NULL;
CREATE INDEX jobs_request ON jobs (request_id);

-- Append-only: one row per thing observed or done.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    request_id      INTEGER NOT NULL REFERENCES import_requests (id) ON DELETE CASCADE,
    at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- What happened, in the past tense: queued, submitted, job_progressed, succeeded, ...
    kind            TEXT NOT NULL,
    -- The request's state after the event.
    state           TEXT NOT NULL,
    job_uuid        TEXT,
    progress        REAL,
    detail          TEXT,
    errno           INTEGER,
    errmsg          TEXT,
    api_request_id  TEXT
) STRICT;

CREATE INDEX events_request ON events (request_id, id);

CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only history');
END;

-- The history starts with the INSERT itself, whoever made it.
CREATE TRIGGER import_requests_queued AFTER INSERT ON import_requests
BEGIN
    INSERT INTO events (request_id, at, kind, state, detail)
    VALUES (NEW.id, NEW.created_at, 'queued', NEW.state,
            NEW.region_id || ' <- ' || NEW.origin_region_id || '/' || NEW.origin_image_uuid);
END;

-- One row per request: where everything is now.
CREATE VIEW request_status AS
SELECT
    r.id,
    r.state,
    r.region_id,
    r.name,
    r.origin_region_id,
    r.origin_image_uuid,
    j.job_uuid,
    j.resource_uuid,
    j.progress,
    r.attempts,
    CASE
        WHEN r.last_errno IS NOT NULL
            THEN coalesce(r.reason || ': ', '') || 'errno ' || r.last_errno
                 || coalesce(' ' || r.last_errmsg, '')
        ELSE r.reason
    END AS last_error,
    r.created_at,
    r.updated_at
FROM import_requests AS r
LEFT JOIN jobs AS j
    ON j.id = (SELECT max(id) FROM jobs WHERE request_id = r.id);

-- One row per event, in order: the full story of each request.
CREATE VIEW request_history AS
SELECT
    e.request_id,
    e.id AS event_id,
    e.at,
    e.kind,
    e.state,
    e.job_uuid,
    e.progress,
    e.detail,
    e.errno,
    e.errmsg,
    e.api_request_id
FROM events AS e
ORDER BY e.request_id, e.id;
