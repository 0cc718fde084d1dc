-- 0009_income_thresholds: reference lines (标准线) as data per (year, region), domain.md §1.9.
-- Lines differ by region and year, so they are never constants in code. One row holds both
-- lines of one year in one region; either may be NULL (not set by that region), and the
-- lookup falls back per line to a less specific region (county -> province -> national).

CREATE TABLE income_thresholds (
    year                  INTEGER NOT NULL,
    -- 'national', or a 12-digit statistical area code (province or county).
    region                TEXT NOT NULL,
    -- 贫困线, yuan per person per year.
    poverty_line_yuan     INTEGER,
    -- 防止返贫监测线, yuan per person per year.
    monitoring_line_yuan  INTEGER,
    -- Where the figure comes from (文件/出处).
    source_note           TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (year, region)
);
