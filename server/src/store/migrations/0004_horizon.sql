-- 0004_horizon: a horizon for change-log tombstones. Tombstones ('removed' entries) older
-- than the horizon are deleted by compaction; the highest sequence ever deleted that way is
-- the floor, and a phone whose cursor is below the floor may have missed a removal, so its
-- next pull answers RESET (re-download the scope, keep the outbox).

-- When the entry was written (unix ms); 0 for entries written before this migration, which
-- compaction treats as old.
ALTER TABLE change_log ADD COLUMN logged_at INTEGER NOT NULL DEFAULT 0;

CREATE TABLE change_log_floor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    floor_seq  INTEGER NOT NULL
);
INSERT INTO change_log_floor (id, floor_seq) VALUES (1, 0);
