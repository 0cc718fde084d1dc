-- 0010_import_runs: roster imports (建档立卡花名册导入) that were applied, one row each. This is
-- also the audit of the import: which file (SHA-256), what it changed, who applied it and when.
-- A dry run stores nothing; a re-import that changes nothing is not applied, so it leaves
-- no row either.

CREATE TABLE import_runs (
    run_id              TEXT PRIMARY KEY NOT NULL,
    county_id           TEXT NOT NULL,
    file_name           TEXT NOT NULL,
    file_sha256         TEXT NOT NULL,
    file_bytes          INTEGER NOT NULL,
    data_rows           INTEGER NOT NULL,
    households_created  INTEGER NOT NULL,
    members_created     INTEGER NOT NULL,
    fields_changed      INTEGER NOT NULL,
    unchanged_rows      INTEGER NOT NULL,
    applied_by          TEXT NOT NULL,
    -- unix milliseconds (UTC)
    applied_at          INTEGER NOT NULL
);
CREATE INDEX import_runs_by_county ON import_runs (county_id, applied_at);
