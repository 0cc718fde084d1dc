-- 0001_baseline (issue 15 §2): the PostgreSQL schema, equal in content to the SQLite schema
-- after its migration 0026. Times are unix milliseconds (BIGINT) and bodies are the same
-- canonical JSON text as in SQLite, so the row mapping and the content hashes are the same on
-- both backends; flags are BOOLEAN where SQLite uses 0/1.
--
-- Differences that concurrency requires (SQLite's single writer hid them):
-- * change_log.scope_seq is taken from the scope's scope_counters row, which the writing
--   transaction holds locked until it commits, so a scope's numbers become visible in
--   allocation order and no pull cursor skips an entry committed later with a smaller number;
-- * households.server_seq is taken after the household row is locked (SELECT … FOR UPDATE);
-- * (device_id, seq) and batch_id are deduplicated by primary keys, so two replicas racing on
--   the same retried batch cannot both apply it.
--
-- Every text column sorts byte by byte (COLLATE "C"), as SQLite compares text, whatever the
-- database's default collation: keyset cursors (exports, queues) and the orders the
-- conformance suite checks are then the same on both backends.

CREATE TABLE areas (
    area_id     TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    level       TEXT COLLATE "C" NOT NULL,
    parent_id   TEXT COLLATE "C",
    centre_lat  DOUBLE PRECISION,
    centre_lon  DOUBLE PRECISION,
    centre_crs  INTEGER
);
CREATE INDEX areas_by_parent ON areas (parent_id, area_id);

CREATE TABLE users (
    user_id               TEXT COLLATE "C" PRIMARY KEY,
    username              TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name          TEXT COLLATE "C" NOT NULL,
    password_hash         TEXT COLLATE "C" NOT NULL,
    role                  TEXT COLLATE "C" NOT NULL,
    area_id               TEXT COLLATE "C" NOT NULL,
    -- Sealed (store::sealed) like every personal value; '' when unknown.
    phone                 TEXT COLLATE "C" NOT NULL DEFAULT '',
    rank                  INTEGER,
    disabled_at           BIGINT,
    must_change_password  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            BIGINT NOT NULL DEFAULT 0,
    unit                  TEXT COLLATE "C" NOT NULL DEFAULT '',
    id_number             TEXT COLLATE "C" NOT NULL DEFAULT '',
    -- Keyed blind index of the ID number, so a duplicate is found without opening values.
    id_number_index       TEXT COLLATE "C",
    team_member           BOOLEAN NOT NULL DEFAULT FALSE,
    active_from           TEXT COLLATE "C" NOT NULL DEFAULT '',
    active_to             TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX users_by_area_role ON users (area_id, role);
CREATE UNIQUE INDEX users_by_id_number_index ON users (id_number_index)
    WHERE id_number_index IS NOT NULL;

CREATE TABLE sessions (
    session_id          TEXT COLLATE "C" PRIMARY KEY,
    token_sha256        TEXT COLLATE "C" NOT NULL UNIQUE,
    user_id             TEXT COLLATE "C" NOT NULL REFERENCES users (user_id),
    device_id           TEXT COLLATE "C" NOT NULL,
    device_name         TEXT COLLATE "C" NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    kind                TEXT COLLATE "C" NOT NULL DEFAULT 'device',
    app_version         TEXT COLLATE "C" NOT NULL DEFAULT '',
    last_seen_at        BIGINT NOT NULL DEFAULT 0,
    last_ip             TEXT COLLATE "C" NOT NULL DEFAULT '',
    refresh_sha256      TEXT COLLATE "C" UNIQUE,
    refresh_expires_at  BIGINT,
    ended_at            BIGINT,
    end_reason          TEXT COLLATE "C"
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE session_rotated_refresh (
    refresh_sha256  TEXT COLLATE "C" PRIMARY KEY,
    session_id      TEXT COLLATE "C" NOT NULL,
    rotated_at      BIGINT NOT NULL
);

CREATE TABLE devices (
    device_id           TEXT COLLATE "C" PRIMARY KEY,
    user_id             TEXT COLLATE "C" NOT NULL,
    last_processed_seq  BIGINT NOT NULL DEFAULT 0,
    last_seen_at        BIGINT NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE households (
    household_id  TEXT COLLATE "C" PRIMARY KEY,
    township_id   TEXT COLLATE "C" NOT NULL,
    village_id    TEXT COLLATE "C" NOT NULL,
    head_name     TEXT COLLATE "C" NOT NULL,
    -- serde JSON of fieldsync_model::household::Household with its personal values sealed;
    -- its server_seq is overridden by the column below when read.
    card          TEXT COLLATE "C" NOT NULL,
    server_seq    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX households_ledger ON households (township_id, village_id, head_name, household_id);
CREATE INDEX households_by_village ON households (village_id);

CREATE TABLE member_id_index (
    household_id  TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    member_id     TEXT COLLATE "C" NOT NULL,
    blind_index   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (household_id, member_id)
);
CREATE INDEX member_id_index_by_blind_index ON member_id_index (blind_index);

CREATE TABLE pairings (
    cadre_user_id  TEXT COLLATE "C" NOT NULL REFERENCES users (user_id),
    household_id   TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    is_primary     BOOLEAN NOT NULL DEFAULT FALSE,
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (cadre_user_id, household_id)
);
CREATE INDEX pairings_by_household ON pairings (household_id);
CREATE INDEX pairings_primary_by_household ON pairings (household_id, cadre_user_id)
    WHERE active AND is_primary;

CREATE TABLE visits (
    visit_id            TEXT COLLATE "C" NOT NULL,
    revision            INTEGER NOT NULL,
    household_id        TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    author_user_id      TEXT COLLATE "C" NOT NULL,
    device_id           TEXT COLLATE "C" NOT NULL,
    -- serde JSON of fieldsync_model::visit::Visit: the very text its content hash is of.
    body                TEXT COLLATE "C" NOT NULL,
    content_hash        TEXT COLLATE "C" NOT NULL,
    state               TEXT COLLATE "C" NOT NULL,
    mode                INTEGER NOT NULL,
    business_month      TEXT COLLATE "C" NOT NULL,
    submitted_at        BIGINT NOT NULL,
    distance_m          DOUBLE PRECISION,
    -- JSON array of fieldsync_model::evidence::EvidenceFlag; NULL until evaluated.
    evidence_flags      TEXT COLLATE "C",
    checkin_at_ms       BIGINT,
    checkin_sub_ms_ns   INTEGER,
    checkout_at_ms      BIGINT,
    checkout_sub_ms_ns  INTEGER,
    gps_lat             DOUBLE PRECISION,
    gps_lon             DOUBLE PRECISION,
    gps_crs             INTEGER,
    PRIMARY KEY (visit_id, revision)
);
CREATE INDEX visits_by_state ON visits (state, submitted_at);
CREATE INDEX visits_by_household_month ON visits (household_id, business_month);
CREATE INDEX visits_ledger ON visits (business_month, household_id, state, submitted_at,
                                      visit_id, revision, author_user_id, mode, checkin_at_ms);
CREATE INDEX visits_by_author_checkin ON visits (author_user_id, checkin_at_ms, visit_id,
    revision, checkin_sub_ms_ns, checkout_at_ms, checkout_sub_ms_ns, gps_lat, gps_lon,
    gps_crs, mode);

CREATE TABLE decisions (
    visit_id          TEXT COLLATE "C" NOT NULL,
    revision          INTEGER NOT NULL,
    decision          TEXT COLLATE "C" NOT NULL,
    -- JSON array of fieldsync_model::review::ReturnReason.
    reasons           TEXT COLLATE "C" NOT NULL,
    note              TEXT COLLATE "C" NOT NULL,
    deadline          TEXT COLLATE "C" NOT NULL,
    reviewer_user_id  TEXT COLLATE "C" NOT NULL,
    decided_at        BIGINT NOT NULL,
    -- One decision per revision: a second one is a stale decision.
    PRIMARY KEY (visit_id, revision),
    FOREIGN KEY (visit_id, revision) REFERENCES visits (visit_id, revision)
);

CREATE TABLE photos (
    photo_id  TEXT COLLATE "C" PRIMARY KEY,
    -- Arrival order: a visit's photos are shown in the order they were recorded.
    arrival   BIGINT GENERATED ALWAYS AS IDENTITY,
    visit_id  TEXT COLLATE "C" NOT NULL,
    sha256    TEXT COLLATE "C" NOT NULL,
    -- serde JSON of fieldsync_model::visit::PhotoRecord.
    body      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX photos_by_visit ON photos (visit_id);
CREATE INDEX photos_by_sha256 ON photos (sha256);

CREATE TABLE income_registrations (
    registration_id  TEXT COLLATE "C" PRIMARY KEY,
    -- Arrival order: the order that decides which registration of a quarter is in force
    -- (SQLite reads its rowid for this).
    arrival          BIGINT GENERATED ALWAYS AS IDENTITY,
    household_id     TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    year             INTEGER NOT NULL,
    quarter          INTEGER NOT NULL,
    -- serde JSON of fieldsync_model::income::IncomeRegistration.
    body             TEXT COLLATE "C" NOT NULL
);
CREATE INDEX income_by_household ON income_registrations (household_id, year, quarter);

CREATE TABLE income_thresholds (
    year                  INTEGER NOT NULL,
    -- 'national', or a 12-digit statistical area code (province or county).
    region                TEXT COLLATE "C" NOT NULL,
    -- 贫困线 (poverty line), yuan per person per year.
    poverty_line_yuan     BIGINT,
    -- 防止返贫监测线 (monitoring line), yuan per person per year.
    monitoring_line_yuan  BIGINT,
    source_note           TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (year, region)
);

CREATE TABLE applied_mutations (
    device_id    TEXT COLLATE "C" NOT NULL,
    seq          BIGINT NOT NULL,
    mutation_id  TEXT COLLATE "C" NOT NULL,
    batch_id     TEXT COLLATE "C" NOT NULL,
    outcome      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE push_batches (
    batch_id     TEXT COLLATE "C" PRIMARY KEY,
    device_id    TEXT COLLATE "C" NOT NULL,
    fingerprint  TEXT COLLATE "C" NOT NULL,
    result       TEXT COLLATE "C" NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX push_batches_by_device ON push_batches (device_id, received_at);

CREATE TABLE uploads (
    upload_id         TEXT COLLATE "C" PRIMARY KEY,
    -- Arrival order: the newest upload of a file is the one a resume continues.
    arrival           BIGINT GENERATED ALWAYS AS IDENTITY,
    sha256            TEXT COLLATE "C" NOT NULL,
    size_bytes        BIGINT NOT NULL,
    mime_type         TEXT COLLATE "C" NOT NULL,
    committed_offset  BIGINT NOT NULL DEFAULT 0,
    complete          BOOLEAN NOT NULL DEFAULT FALSE,
    user_id           TEXT COLLATE "C" NOT NULL,
    created_at        BIGINT NOT NULL,
    last_activity_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX uploads_by_user_sha256 ON uploads (user_id, sha256, arrival);
CREATE INDEX uploads_incomplete_by_activity ON uploads (last_activity_at) WHERE NOT complete;

CREATE TABLE blobs (
    sha256      TEXT COLLATE "C" PRIMARY KEY,
    size_bytes  BIGINT NOT NULL,
    stored_at   BIGINT NOT NULL
);

CREATE TABLE photo_meta (
    sha256                TEXT COLLATE "C" PRIMARY KEY,
    -- Sniffed from the bytes, not the declared type.
    mime_type             TEXT COLLATE "C" NOT NULL,
    width                 INTEGER NOT NULL,
    height                INTEGER NOT NULL,
    -- EXIF DateTimeOriginal: RFC 3339 when the camera wrote its offset, else local wall time.
    exif_time             TEXT COLLATE "C",
    exif_time_has_offset  BOOLEAN NOT NULL DEFAULT FALSE,
    exif_lat              DOUBLE PRECISION,
    exif_lon              DOUBLE PRECISION,
    -- GPS satellite UTC time of the EXIF fix (unix ms).
    gps_time              BIGINT,
    make                  TEXT COLLATE "C",
    model                 TEXT COLLATE "C",
    orientation           INTEGER,
    -- 64-bit perceptual hash as a signed BIGINT; near duplicates are found through the bands.
    phash                 BIGINT NOT NULL,
    exif_damaged          BOOLEAN NOT NULL DEFAULT FALSE,
    phash_band0 INTEGER GENERATED ALWAYS AS ((phash & 511)::INTEGER) STORED,
    phash_band1 INTEGER GENERATED ALWAYS AS (((phash >> 9) & 511)::INTEGER) STORED,
    phash_band2 INTEGER GENERATED ALWAYS AS (((phash >> 18) & 511)::INTEGER) STORED,
    phash_band3 INTEGER GENERATED ALWAYS AS (((phash >> 27) & 511)::INTEGER) STORED,
    phash_band4 INTEGER GENERATED ALWAYS AS (((phash >> 36) & 511)::INTEGER) STORED,
    phash_band5 INTEGER GENERATED ALWAYS AS (((phash >> 45) & 511)::INTEGER) STORED,
    phash_band6 INTEGER GENERATED ALWAYS AS (((phash >> 54) & 1023)::INTEGER) STORED
);
CREATE INDEX photo_meta_phash_band0 ON photo_meta (phash_band0);
CREATE INDEX photo_meta_phash_band1 ON photo_meta (phash_band1);
CREATE INDEX photo_meta_phash_band2 ON photo_meta (phash_band2);
CREATE INDEX photo_meta_phash_band3 ON photo_meta (phash_band3);
CREATE INDEX photo_meta_phash_band4 ON photo_meta (phash_band4);
CREATE INDEX photo_meta_phash_band5 ON photo_meta (phash_band5);
CREATE INDEX photo_meta_phash_band6 ON photo_meta (phash_band6);

CREATE TABLE change_log (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    household_id  TEXT COLLATE "C" NOT NULL,
    kind          TEXT COLLATE "C" NOT NULL CHECK (kind IN ('household', 'visit_status', 'removed')),
    entity_id     TEXT COLLATE "C" NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 0,
    -- For 'removed': the user the tombstone is for. NULL for every other kind.
    addressed_to  TEXT COLLATE "C",
    logged_at     BIGINT NOT NULL DEFAULT 0,
    scope_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
    scope_seq     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX change_log_by_household ON change_log (household_id, seq);
CREATE INDEX change_log_removed_by_addressee ON change_log (addressed_to, seq)
    WHERE addressed_to IS NOT NULL;
CREATE UNIQUE INDEX change_log_by_scope ON change_log (scope_id, scope_seq);
CREATE INDEX change_log_by_household_scope ON change_log (household_id, scope_id, scope_seq);

CREATE TABLE scope_counters (
    scope_id  TEXT COLLATE "C" PRIMARY KEY,
    -- The newest scope sequence ever issued; never decreases.
    last_seq  BIGINT NOT NULL
);

CREATE TABLE scope_floors (
    scope_id   TEXT COLLATE "C" PRIMARY KEY,
    floor_seq  BIGINT NOT NULL
);

CREATE TABLE register_writes (
    household_id    TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    -- 'household' or 'member:<member_id>' (fieldsync_model::register::FieldTarget::as_key).
    target_key      TEXT COLLATE "C" NOT NULL,
    field           TEXT COLLATE "C" NOT NULL,
    -- The value as JSON text (codes as numbers, null to clear); sealed when sensitive.
    value_json      TEXT COLLATE "C" NOT NULL,
    hlc             BIGINT NOT NULL,
    device_id       TEXT COLLATE "C" NOT NULL,
    author_user_id  TEXT COLLATE "C" NOT NULL,
    base_seq        BIGINT NOT NULL,
    -- The household change sequence (change_log.seq) the write was applied at.
    server_seq      BIGINT NOT NULL,
    PRIMARY KEY (household_id, target_key, field, hlc, device_id)
);

CREATE TABLE conflicts (
    conflict_key           TEXT COLLATE "C" PRIMARY KEY,
    household_id           TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    township_id            TEXT COLLATE "C" NOT NULL,
    target_key             TEXT COLLATE "C" NOT NULL,
    field                  TEXT COLLATE "C" NOT NULL,
    first_json             TEXT COLLATE "C" NOT NULL,
    second_json            TEXT COLLATE "C" NOT NULL,
    created_at             BIGINT NOT NULL,
    resolved_at            BIGINT,
    resolved_by            TEXT COLLATE "C",
    resolution_json        TEXT COLLATE "C",
    first_author_user_id   TEXT COLLATE "C",
    second_author_user_id  TEXT COLLATE "C"
);
CREATE INDEX conflicts_open_by_township ON conflicts (township_id, resolved_at, created_at);
CREATE INDEX conflicts_by_register ON conflicts (household_id, target_key, field);
CREATE INDEX conflicts_open_by_first_author ON conflicts (first_author_user_id)
    WHERE resolved_at IS NULL;
CREATE INDEX conflicts_open_by_second_author ON conflicts (second_author_user_id)
    WHERE resolved_at IS NULL;

CREATE TABLE device_heartbeats (
    device_id         TEXT COLLATE "C" PRIMARY KEY,
    user_id           TEXT COLLATE "C" NOT NULL,
    unsent_mutations  BIGINT NOT NULL,
    pending_uploads   BIGINT NOT NULL,
    oldest_unsent_at  BIGINT,
    device_time       BIGINT,
    last_error        TEXT COLLATE "C" NOT NULL,
    app_version       TEXT COLLATE "C" NOT NULL,
    server_time       BIGINT NOT NULL
);
CREATE INDEX device_heartbeats_by_user ON device_heartbeats (user_id);

CREATE TABLE month_closures (
    township_id      TEXT COLLATE "C" NOT NULL,
    -- 'YYYY-MM', Beijing time.
    month            TEXT COLLATE "C" NOT NULL,
    closed_by        TEXT COLLATE "C" NOT NULL,
    closed_at        BIGINT NOT NULL,
    household_count  BIGINT NOT NULL,
    PRIMARY KEY (township_id, month)
);

CREATE TABLE ledger_snapshots (
    township_id            TEXT COLLATE "C" NOT NULL,
    month                  TEXT COLLATE "C" NOT NULL,
    household_id           TEXT COLLATE "C" NOT NULL,
    head_name              TEXT COLLATE "C" NOT NULL,
    village_id             TEXT COLLATE "C" NOT NULL,
    village_name           TEXT COLLATE "C" NOT NULL,
    primary_cadre_user_id  TEXT COLLATE "C",
    primary_cadre_name     TEXT COLLATE "C",
    -- fieldsync_model::ledger::LockedOutcome: 'approved' or 'overdue'.
    outcome                TEXT COLLATE "C" NOT NULL CHECK (outcome IN ('approved', 'overdue')),
    visited_in_person      BOOLEAN NOT NULL,
    approved_in_person     BOOLEAN NOT NULL,
    PRIMARY KEY (township_id, month, household_id),
    FOREIGN KEY (township_id, month) REFERENCES month_closures (township_id, month)
);

CREATE TABLE import_runs (
    run_id              TEXT COLLATE "C" PRIMARY KEY,
    county_id           TEXT COLLATE "C" NOT NULL,
    file_name           TEXT COLLATE "C" NOT NULL,
    file_sha256         TEXT COLLATE "C" NOT NULL,
    file_bytes          BIGINT NOT NULL,
    data_rows           BIGINT NOT NULL,
    households_created  BIGINT NOT NULL,
    members_created     BIGINT NOT NULL,
    fields_changed      BIGINT NOT NULL,
    unchanged_rows      BIGINT NOT NULL,
    applied_by          TEXT COLLATE "C" NOT NULL,
    applied_at          BIGINT NOT NULL
);
CREATE INDEX import_runs_by_county ON import_runs (county_id, applied_at);

CREATE TABLE audit_log (
    audit_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at    BIGINT NOT NULL,
    actor_user_id  TEXT COLLATE "C" NOT NULL,
    actor_role     TEXT COLLATE "C" NOT NULL,
    area_id        TEXT COLLATE "C" NOT NULL,
    -- fieldsync_model::access::ACTION_* (e.g. 'export_full', 'pairing_over_quota').
    action         TEXT COLLATE "C" NOT NULL,
    subject        TEXT COLLATE "C" NOT NULL,
    filter         TEXT COLLATE "C" NOT NULL,
    row_count      BIGINT NOT NULL,
    file_sha256    TEXT COLLATE "C" NOT NULL,
    detail         TEXT COLLATE "C" NOT NULL,
    previous_hash  TEXT COLLATE "C" NOT NULL,
    record_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
    key_id         TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_by_action ON audit_log (action, audit_id);
-- The audit log is append-only for everyone, the server's own role included.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TABLE village_attributes (
    area_id                 TEXT COLLATE "C" PRIMARY KEY REFERENCES areas (area_id),
    is_poor_village         BOOLEAN,
    is_deep_poor            BOOLEAN,
    exit_year               INTEGER,
    population              BIGINT,
    households              BIGINT,
    poor_households         BIGINT,
    collective_income_yuan  BIGINT,
    has_cooperative         BOOLEAN,
    has_mutual_fund         BOOLEAN,
    road_paved              BOOLEAN,
    broadband               BOOLEAN,
    standard_clinic         BOOLEAN,
    culture_room            BOOLEAN,
    -- the area import run that last wrote the row
    updated_by_run          TEXT COLLATE "C" NOT NULL
);

CREATE TABLE area_import_runs (
    run_id          TEXT COLLATE "C" PRIMARY KEY,
    county_id       TEXT COLLATE "C" NOT NULL,
    file_name       TEXT COLLATE "C" NOT NULL,
    file_sha256     TEXT COLLATE "C" NOT NULL,
    file_bytes      BIGINT NOT NULL,
    data_rows       BIGINT NOT NULL,
    areas_created   BIGINT NOT NULL,
    areas_changed   BIGINT NOT NULL,
    fields_changed  BIGINT NOT NULL,
    areas_renamed   BIGINT NOT NULL,
    areas_missing   BIGINT NOT NULL,
    unchanged_rows  BIGINT NOT NULL,
    applied_by      TEXT COLLATE "C" NOT NULL,
    applied_at      BIGINT NOT NULL
);
CREATE INDEX area_import_runs_by_county ON area_import_runs (county_id, applied_at);

-- Background jobs that must run once across replicas (change-log compaction, upload expiry,
-- flag re-evaluation, imports) take a lease here; an expired lease is taken over.
CREATE TABLE job_leases (
    job_name     TEXT COLLATE "C" PRIMARY KEY,
    holder       TEXT COLLATE "C" NOT NULL,
    leased_until BIGINT NOT NULL
);

-- Household search (农户检索): one document per household, rewritten with every card write.
-- The columns hold the same space-separated suffixes as SQLite's FTS5 table (a name is
-- indexed as all its suffixes), so a prefix query (`'明':*`) finds a name by any part of it.
-- Each column carries its own weight, so a query names the columns it searches: A head's
-- name, B members' names, C 拼音 initials, D 户编号 and ID-number tails.
CREATE TABLE household_search (
    household_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES households (household_id),
    head          TEXT COLLATE "C" NOT NULL,
    members       TEXT COLLATE "C" NOT NULL,
    initials      TEXT COLLATE "C" NOT NULL,
    number        TEXT COLLATE "C" NOT NULL,
    id_tails      TEXT COLLATE "C" NOT NULL,
    document      TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, head), 'A')
        || setweight(to_tsvector('simple'::regconfig, members), 'B')
        || setweight(to_tsvector('simple'::regconfig, initials), 'C')
        || setweight(to_tsvector('simple'::regconfig, number || ' ' || id_tails), 'D')
    ) STORED
);
CREATE INDEX household_search_by_document ON household_search USING GIN (document);
