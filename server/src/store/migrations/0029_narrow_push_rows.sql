-- Issue 11 §2: fewer B-tree writes per pushed visit.
--
-- applied_mutations and scope_counters are looked up by their primary key only, so they need
-- no rowid: WITHOUT ROWID keeps each row once, in its key's B-tree, instead of in a rowid
-- table plus an index on the key (one write per pushed mutation instead of two).
CREATE TABLE applied_mutations_keyed (
    device_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    mutation_id  TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
INSERT INTO applied_mutations_keyed (device_id, seq, mutation_id, batch_id, outcome)
    SELECT device_id, seq, mutation_id, batch_id, outcome FROM applied_mutations;
DROP TABLE applied_mutations;
ALTER TABLE applied_mutations_keyed RENAME TO applied_mutations;

CREATE TABLE scope_counters_keyed (
    scope_id  TEXT PRIMARY KEY NOT NULL,
    -- The newest scope sequence ever issued; never decreases, even when compaction deletes
    -- the newest entries, so a cursor held by a phone stays valid.
    last_seq  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO scope_counters_keyed (scope_id, last_seq) SELECT scope_id, last_seq FROM scope_counters;
DROP TABLE scope_counters;
ALTER TABLE scope_counters_keyed RENAME TO scope_counters;

-- change_log_by_household (household_id, seq) served compaction's search for a newer entry
-- of the same thing. change_log_by_household_scope (household_id, scope_id, scope_seq), which
-- cadre pulls need anyway, starts with the same column and serves that search as well, so the
-- older index only cost every change-log entry one more B-tree write.
DROP INDEX IF EXISTS change_log_by_household;
