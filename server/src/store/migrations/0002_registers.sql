-- 0002_registers: household/member field registers, conflict records and device heartbeats
-- (DESIGN §4 "Conflicts, per household"; §6 conflict queue and devices with unsent data).

-- Every write ever applied to a register (household, target, field). The value shown is
-- the write with the greatest (hlc, device_id); keeping the losers is what lets the server
-- record conflicts and never lose a cadre's edit silently.
CREATE TABLE register_writes (
    household_id    TEXT NOT NULL REFERENCES households (household_id),
    -- 'household' or 'member:<member_id>' (fieldsync_model::register::FieldTarget::as_key).
    target_key      TEXT NOT NULL,
    field           TEXT NOT NULL,
    -- The value as JSON text (codes as numbers, null to clear).
    value_json      TEXT NOT NULL,
    hlc             INTEGER NOT NULL,
    device_id       TEXT NOT NULL,
    author_user_id  TEXT NOT NULL,
    base_seq        INTEGER NOT NULL,
    -- The household change sequence (change_log.seq) the write was applied at.
    server_seq      INTEGER NOT NULL,
    PRIMARY KEY (household_id, target_key, field, hlc, device_id)
);

-- Concurrent writes with different values, for the township supervisor to resolve.
CREATE TABLE conflicts (
    -- fieldsync_model::register::ConflictPair::key: the same pair is stored once whatever
    -- order its writes arrived in.
    conflict_key     TEXT PRIMARY KEY NOT NULL,
    household_id     TEXT NOT NULL REFERENCES households (household_id),
    township_id      TEXT NOT NULL,
    target_key       TEXT NOT NULL,
    field            TEXT NOT NULL,
    -- serde JSON of fieldsync_model::register::RegisterWrite (smaller stamp first).
    first_json       TEXT NOT NULL,
    second_json      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    resolved_at      INTEGER,
    resolved_by      TEXT,
    resolution_json  TEXT
);
CREATE INDEX conflicts_open_by_township ON conflicts (township_id, resolved_at, created_at);
CREATE INDEX conflicts_by_register ON conflicts (household_id, target_key, field);

-- The latest heartbeat of each device: what it still holds unsent, and its clock.
CREATE TABLE device_heartbeats (
    device_id         TEXT PRIMARY KEY NOT NULL,
    user_id           TEXT NOT NULL,
    unsent_mutations  INTEGER NOT NULL,
    pending_uploads   INTEGER NOT NULL,
    oldest_unsent_at  INTEGER,
    device_time       INTEGER,
    last_error        TEXT NOT NULL,
    app_version       TEXT NOT NULL,
    server_time       INTEGER NOT NULL
);
CREATE INDEX device_heartbeats_by_user ON device_heartbeats (user_id);
