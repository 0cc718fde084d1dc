-- 0001_initial: the first schema of the fieldsync server store.
--
-- Conventions:
--   * Instants are INTEGER unix milliseconds (UTC); months are 'YYYY-MM' in Beijing time.
--   * Code-list values are stored as their national/protocol code (INTEGER); roles and
--     review states as their stable lower-case names (TEXT).
--   * Model records that are read back whole (household card, visit, photo, income
--     registration) are kept as serde JSON in a `body`/`card` column, with the columns that
--     queries filter or sort on copied out next to them.
--   * Foreign keys guard only the relations the store itself maintains; area references are
--     left unchecked because a register import may arrive before its area tree is complete.

CREATE TABLE areas (
    area_id     TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL,
    parent_id   TEXT,
    centre_lat  REAL,
    centre_lon  REAL,
    centre_crs  INTEGER
);
CREATE INDEX areas_by_parent ON areas (parent_id, area_id);

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    area_id        TEXT NOT NULL,
    phone          TEXT NOT NULL DEFAULT '',
    rank           INTEGER
);

CREATE TABLE sessions (
    token_sha256  TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (user_id),
    device_id     TEXT NOT NULL,
    device_name   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE devices (
    device_id           TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT NOT NULL,
    last_processed_seq  INTEGER NOT NULL DEFAULT 0,
    last_seen_at        INTEGER NOT NULL
);

CREATE TABLE households (
    household_id  TEXT PRIMARY KEY NOT NULL,
    township_id   TEXT NOT NULL,
    village_id    TEXT NOT NULL,
    head_name     TEXT NOT NULL,
    -- serde JSON of fieldsync_model::household::Household; its server_seq is overridden by
    -- the column below when read.
    card          TEXT NOT NULL,
    server_seq    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX households_by_township ON households (township_id, village_id, head_name);
CREATE INDEX households_by_village ON households (village_id);

CREATE TABLE pairings (
    cadre_user_id  TEXT NOT NULL REFERENCES users (user_id),
    household_id   TEXT NOT NULL REFERENCES households (household_id),
    is_primary     INTEGER NOT NULL DEFAULT 0,
    active         INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (cadre_user_id, household_id)
);
CREATE INDEX pairings_by_household ON pairings (household_id);

CREATE TABLE visits (
    visit_id        TEXT NOT NULL,
    revision        INTEGER NOT NULL,
    household_id    TEXT NOT NULL REFERENCES households (household_id),
    author_user_id  TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    -- serde JSON of fieldsync_model::visit::Visit.
    body            TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    state           TEXT NOT NULL,
    -- VisitMode code and business month, copied out so the monthly in-person query needs
    -- no JSON parsing.
    mode            INTEGER NOT NULL,
    business_month  TEXT NOT NULL,
    submitted_at    INTEGER NOT NULL,
    distance_m      REAL,
    PRIMARY KEY (visit_id, revision)
);
CREATE INDEX visits_by_state ON visits (state, submitted_at);
CREATE INDEX visits_by_household_month ON visits (household_id, business_month);

CREATE TABLE decisions (
    visit_id          TEXT NOT NULL,
    revision          INTEGER NOT NULL,
    decision          TEXT NOT NULL,
    -- JSON array of fieldsync_model::review::ReturnReason.
    reasons           TEXT NOT NULL,
    note              TEXT NOT NULL,
    deadline          TEXT NOT NULL,
    reviewer_user_id  TEXT NOT NULL,
    decided_at        INTEGER NOT NULL,
    -- One decision per revision: a second one is a stale decision.
    PRIMARY KEY (visit_id, revision),
    FOREIGN KEY (visit_id, revision) REFERENCES visits (visit_id, revision)
);

CREATE TABLE photos (
    photo_id  TEXT PRIMARY KEY NOT NULL,
    visit_id  TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    -- serde JSON of fieldsync_model::visit::PhotoRecord.
    body      TEXT NOT NULL
);
CREATE INDEX photos_by_visit ON photos (visit_id);
CREATE INDEX photos_by_sha256 ON photos (sha256);

CREATE TABLE income_registrations (
    registration_id  TEXT PRIMARY KEY NOT NULL,
    household_id     TEXT NOT NULL REFERENCES households (household_id),
    year             INTEGER NOT NULL,
    quarter          INTEGER NOT NULL,
    -- serde JSON of fieldsync_model::income::IncomeRegistration.
    body             TEXT NOT NULL
);
CREATE INDEX income_by_household ON income_registrations (household_id, year, quarter);

-- Durable dedupe of (device, seq): a seq is consumed whether it was applied or rejected.
CREATE TABLE applied_mutations (
    device_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    mutation_id  TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

-- Response cache keyed by batch id.
CREATE TABLE push_batches (
    batch_id     TEXT PRIMARY KEY NOT NULL,
    device_id    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    result       TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);

CREATE TABLE uploads (
    upload_id         TEXT PRIMARY KEY NOT NULL,
    sha256            TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL,
    mime_type         TEXT NOT NULL,
    committed_offset  INTEGER NOT NULL DEFAULT 0,
    complete          INTEGER NOT NULL DEFAULT 0,
    user_id           TEXT NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX uploads_by_user_sha256 ON uploads (user_id, sha256);

CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY NOT NULL,
    size_bytes  INTEGER NOT NULL,
    stored_at   INTEGER NOT NULL
);

-- Every change a pull must deliver, in commit order. AUTOINCREMENT so a sequence number is
-- never reused, even after the newest rows are deleted: cursors held by phones stay valid.
CREATE TABLE change_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    household_id  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('household', 'visit_status')),
    entity_id     TEXT NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX change_log_by_household ON change_log (household_id, seq);
