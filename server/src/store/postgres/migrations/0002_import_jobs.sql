-- Console import jobs (花名册导入, 行政区划导入), stored so that any replica shows a job's
-- progress and applies its plan, and a restart loses nothing (issue 15 §4). `view_json`
-- and `plan_json` are sealed (enc:v1:…): previews and plans hold personal data.
CREATE TABLE import_jobs (
    job_id       TEXT COLLATE "C" PRIMARY KEY,
    kind         TEXT COLLATE "C" NOT NULL,
    county_id    TEXT COLLATE "C" NOT NULL,
    runner       TEXT COLLATE "C" NOT NULL,
    phase        TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    view_json    TEXT NOT NULL,
    plan_json    TEXT
);
CREATE INDEX import_jobs_by_age ON import_jobs (created_at);
