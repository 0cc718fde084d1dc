-- A change-log entry gets its scope number just before its transaction commits, no longer
-- when it is written (issue 15 §5): the scope's scope_counters row is then locked for the
-- last statement of the transaction only, so pushes to one township overlap instead of
-- queueing from their first visit to their commit. Until then the entry's scope_seq is NULL
-- (other transactions never see it: it is uncommitted).
ALTER TABLE change_log ALTER COLUMN scope_seq DROP DEFAULT;
ALTER TABLE change_log ALTER COLUMN scope_seq DROP NOT NULL;
CREATE INDEX change_log_unnumbered ON change_log (seq) WHERE scope_seq IS NULL;
