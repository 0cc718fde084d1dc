-- 0025_conflict_authors (issue 14 §4): who wrote each side of a conflict record, as columns,
-- so a phone's pull can list its user's edits that wait for a supervisor (PullResponse
-- Checkpoint.pending_conflicts) with two index probes instead of opening every record.
-- Existing rows are filled from their JSON, opened first where it is sealed (phone and ID
-- number conflicts); new rows get the columns on insert.
ALTER TABLE conflicts ADD COLUMN first_author_user_id TEXT;
ALTER TABLE conflicts ADD COLUMN second_author_user_id TEXT;
UPDATE conflicts
   SET first_author_user_id =
           json_extract(pii_open(first_json, 'conflict/' || conflict_key), '$.author_user_id'),
       second_author_user_id =
           json_extract(pii_open(second_json, 'conflict/' || conflict_key), '$.author_user_id');
-- Only open conflicts are ever asked for by author; a resolved one leaves these indexes.
CREATE INDEX conflicts_open_by_first_author ON conflicts (first_author_user_id)
    WHERE resolved_at IS NULL;
CREATE INDEX conflicts_open_by_second_author ON conflicts (second_author_user_id)
    WHERE resolved_at IS NULL;
