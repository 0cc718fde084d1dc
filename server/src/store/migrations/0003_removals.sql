-- 0003_removals: reassignment tombstones in the change log (DESIGN §4 "Reassignment of a
-- household sends a tombstone that purges it from the old device").
--
-- A 'removed' entry is addressed to the cadre who lost the household: their next pull lists
-- the id in removed_household_ids although the household is no longer in their scope. SQLite
-- cannot alter a CHECK constraint, so the table is rebuilt with every seq kept, and the
-- AUTOINCREMENT high-water mark carried over so no sequence number is ever reused.

CREATE TABLE change_log_new (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    household_id  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('household', 'visit_status', 'removed')),
    entity_id     TEXT NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 0,
    -- For 'removed': the user the tombstone is for. NULL for every other kind.
    addressed_to  TEXT
);
INSERT INTO change_log_new (seq, household_id, kind, entity_id, revision)
    SELECT seq, household_id, kind, entity_id, revision FROM change_log;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'change_log_new', seq FROM sqlite_sequence
    WHERE name = 'change_log'
      AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'change_log_new');
UPDATE sqlite_sequence
    SET seq = max(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'change_log'), 0))
    WHERE name = 'change_log_new';
DROP TABLE change_log;
DELETE FROM sqlite_sequence WHERE name = 'change_log';
ALTER TABLE change_log_new RENAME TO change_log;
CREATE INDEX change_log_by_household ON change_log (household_id, seq);
CREATE INDEX change_log_removed_by_addressee ON change_log (addressed_to, seq)
    WHERE addressed_to IS NOT NULL;
