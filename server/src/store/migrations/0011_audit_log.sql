-- 0011_audit_log: the append-only, hash-chained audit log (审计日志) of sensitive actions
-- (DESIGN §7: "seeing the full value is an audited action"; "every sensitive read writes an
-- append-only, hash-chained audit record").
--
-- Each record stores the hash of the record before it (64 zeros for the first) and its own
-- hash, SHA-256(previous_hash || JSON of its content) as fieldsync_model::access::chain_hash
-- computes it; so editing or deleting any record breaks every later hash. The triggers make
-- the table append-only for every writer that goes through SQLite.

CREATE TABLE audit_log (
    audit_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at    INTEGER NOT NULL,
    actor_user_id  TEXT NOT NULL,
    actor_role     TEXT NOT NULL,
    area_id        TEXT NOT NULL,
    -- fieldsync_model::access::ACTION_* (e.g. 'export_full', 'pairing_over_quota').
    action         TEXT NOT NULL,
    -- What the action was about: an export file name or a household id.
    subject        TEXT NOT NULL,
    -- The filter or parameters, as canonical text.
    filter         TEXT NOT NULL,
    row_count      INTEGER NOT NULL,
    -- Hex SHA-256 of the exported file; '' for actions without a file.
    file_sha256    TEXT NOT NULL,
    detail         TEXT NOT NULL,
    previous_hash  TEXT NOT NULL,
    record_hash    TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_log_by_action ON audit_log (action, audit_id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
