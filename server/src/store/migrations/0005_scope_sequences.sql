-- 0005_scope_sequences: one change sequence per scope (DESIGN §4 "Each scope has its own
-- sequence, assigned inside the writing transaction"). The scope partition is the township:
-- every household belongs to exactly one, so every change-log entry belongs to exactly one.
--
-- A writer allocates the entry's scope_seq with
--     UPDATE scope_counters SET last_seq = last_seq + 1 WHERE scope_id = ? RETURNING last_seq
-- inside its own transaction. The counter row is a lock per scope, so sequence numbers of a
-- scope become visible in the order they were handed out (also under PostgreSQL's concurrent
-- writers), and a pull reading "after n" never skips an entry that commits later with a
-- smaller number. The global `seq` stays as the row id (and as the household/register
-- sequence, see `save_household` in sqlite.rs); pulls and cursors use scope sequences only.
--
-- Cursors issued before this migration (a plain decimal of the global sequence) are all
-- answered with RESET, so phones re-download their scope once. That is also why the old
-- server-wide floor is dropped rather than translated: every cursor checked against the new
-- per-scope floors is issued after this migration, when the expired tombstones were gone.

CREATE TABLE scope_counters (
    scope_id  TEXT PRIMARY KEY NOT NULL,
    -- The newest scope sequence ever issued; never decreases, even when compaction deletes
    -- the newest entries, so a cursor held by a phone stays valid.
    last_seq  INTEGER NOT NULL
);

-- Per scope, the highest scope sequence of a tombstone deleted by compaction: a non-zero
-- cursor below it may have missed a removal and is answered with RESET.
CREATE TABLE scope_floors (
    scope_id   TEXT PRIMARY KEY NOT NULL,
    floor_seq  INTEGER NOT NULL
);

ALTER TABLE change_log ADD COLUMN scope_id TEXT NOT NULL DEFAULT '';
ALTER TABLE change_log ADD COLUMN scope_seq INTEGER NOT NULL DEFAULT 0;

-- Backfill: the household's township, numbered in the existing global order per township.
-- (An entry whose household does not exist lands in the scope '' that no principal reads.)
UPDATE change_log
    SET scope_id = COALESCE(
        (SELECT township_id FROM households WHERE households.household_id = change_log.household_id),
        '');
CREATE TABLE scope_seq_backfill (
    seq        INTEGER PRIMARY KEY NOT NULL,
    scope_seq  INTEGER NOT NULL
);
INSERT INTO scope_seq_backfill (seq, scope_seq)
    SELECT seq, ROW_NUMBER() OVER (PARTITION BY scope_id ORDER BY seq) FROM change_log;
UPDATE change_log
    SET scope_seq = (SELECT scope_seq FROM scope_seq_backfill
                     WHERE scope_seq_backfill.seq = change_log.seq);
DROP TABLE scope_seq_backfill;

INSERT INTO scope_counters (scope_id, last_seq)
    SELECT scope_id, MAX(scope_seq) FROM change_log GROUP BY scope_id;

CREATE UNIQUE INDEX change_log_by_scope ON change_log (scope_id, scope_seq);
DROP TABLE change_log_floor;
