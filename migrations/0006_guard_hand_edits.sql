-- Guards for what operators do by hand with sqlite3, which runs with foreign keys off.

-- Deleting a request takes its jobs and history with it, so an id SQLite hands out again
-- never inherits another request's story.
CREATE TRIGGER import_requests_deleted AFTER DELETE ON import_requests
BEGIN
    DELETE FROM jobs WHERE request_id = OLD.id;
    DELETE FROM events WHERE request_id = OLD.id;
END;

-- The history is append-only: its rows go only with their request.
CREATE TRIGGER events_kept BEFORE DELETE ON events
WHEN EXISTS (SELECT 1 FROM import_requests WHERE id = OLD.request_id)
BEGIN
    SELECT RAISE(ABORT, 'events are append-only history: delete the request to remove its history');
END;

-- next_attempt_at is compared as text, so it must be in the one format the daemon writes.
-- A value SQLite can read as a time (such as datetime('now', '+1 hour')) is rewritten in
-- that format; anything else is refused at once instead of being misread later.
CREATE TRIGGER import_requests_next_attempt_insert AFTER INSERT ON import_requests
WHEN NEW.next_attempt_at NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'
BEGIN
    SELECT RAISE(ABORT, 'next_attempt_at must be a UTC time such as 2026-12-04T15:30:00Z')
    WHERE strftime('%Y-%m-%dT%H:%M:%fZ', NEW.next_attempt_at) IS NULL;
    UPDATE import_requests
    SET next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', NEW.next_attempt_at)
    WHERE id = NEW.id;
END;

CREATE TRIGGER import_requests_next_attempt_update AFTER UPDATE OF next_attempt_at ON import_requests
WHEN NEW.next_attempt_at NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'
BEGIN
    SELECT RAISE(ABORT, 'next_attempt_at must be a UTC time such as 2026-12-04T15:30:00Z')
    WHERE strftime('%Y-%m-%dT%H:%M:%fZ', NEW.next_attempt_at) IS NULL;
    UPDATE import_requests
    SET next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', NEW.next_attempt_at)
    WHERE id = NEW.id;
END;
