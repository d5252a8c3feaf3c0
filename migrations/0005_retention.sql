-- Retention's question: which finished requests are oldest.
CREATE INDEX import_requests_finished ON import_requests (updated_at)
    WHERE state IN ('succeeded', 'failed', 'rejected', 'cancelled');
