-- 0021_village_attributes: the village attributes (村级属性, domain reference §1.2) that the
-- area import (行政区划导入) brings, one current row per village, and the applied area
-- imports, one row each (the import's audit: which file, what it changed, who, when).
-- NULL is "not known". A village missing from a later file is never deleted (households,
-- cadres and visits refer to it); the preview reports it instead, so nothing here marks it.

CREATE TABLE village_attributes (
    area_id                 TEXT PRIMARY KEY NOT NULL REFERENCES areas (area_id),
    is_poor_village         INTEGER,
    is_deep_poor            INTEGER,
    exit_year               INTEGER,
    population              INTEGER,
    households              INTEGER,
    poor_households         INTEGER,
    collective_income_yuan  INTEGER,
    has_cooperative         INTEGER,
    has_mutual_fund         INTEGER,
    road_paved              INTEGER,
    broadband               INTEGER,
    standard_clinic         INTEGER,
    culture_room            INTEGER,
    -- the area import run that last wrote the row
    updated_by_run          TEXT NOT NULL
);

CREATE TABLE area_import_runs (
    run_id          TEXT PRIMARY KEY NOT NULL,
    county_id       TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    file_sha256     TEXT NOT NULL,
    file_bytes      INTEGER NOT NULL,
    data_rows       INTEGER NOT NULL,
    areas_created   INTEGER NOT NULL,
    areas_changed   INTEGER NOT NULL,
    fields_changed  INTEGER NOT NULL,
    areas_renamed   INTEGER NOT NULL,
    areas_missing   INTEGER NOT NULL,
    unchanged_rows  INTEGER NOT NULL,
    applied_by      TEXT NOT NULL,
    -- unix milliseconds (UTC)
    applied_at      INTEGER NOT NULL
);
CREATE INDEX area_import_runs_by_county ON area_import_runs (county_id, applied_at);
