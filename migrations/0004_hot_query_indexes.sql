-- Indexes that keep the daemon's frequent questions cheap however many rows pile up.
--
-- Each hot statement in the store names its index with INDEXED BY, so that its plan does
-- not depend on what the planner guesses without statistics (it preferred
-- `import_requests_state` and a sort over every queued row, which made claiming 10,000
-- queued rows quadratic).

-- The poller's question, per region: its open jobs due soonest first. Equality on the
-- region, a range on the time, the order for free; finished jobs are not in it.
CREATE INDEX jobs_open_due ON jobs (region_id, next_check_at, id) WHERE finished_at IS NULL;

-- The reconciler's question: which in_doubt requests are due for a look-up.
CREATE INDEX import_requests_doubt ON import_requests (next_attempt_at, id)
    WHERE state = 'in_doubt';

-- The reconciler's other question: is this image already some request's (adopted ones).
CREATE INDEX import_requests_resource ON import_requests (resource_uuid)
    WHERE resource_uuid IS NOT NULL;
