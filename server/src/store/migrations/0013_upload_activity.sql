-- Abandoned uploads expire by their latest activity (start, resume query, acknowledged
-- chunk), not by when they started: a 3 MB photo on a 2G link that keeps moving for days
-- must never be expired mid-way. Times are server-clock milliseconds like created_at.
ALTER TABLE uploads ADD COLUMN last_activity_at INTEGER NOT NULL DEFAULT 0;
UPDATE uploads SET last_activity_at = created_at;
DROP INDEX IF EXISTS uploads_incomplete_by_created;
CREATE INDEX uploads_incomplete_by_activity
    ON uploads (last_activity_at) WHERE complete = 0;
