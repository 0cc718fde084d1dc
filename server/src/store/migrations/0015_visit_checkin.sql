-- The visit's check-in time copied out of the JSON body (like mode and business_month), so
-- the monthly ledger reads it from an index instead of parsing every visit body of the
-- month. Unix milliseconds; the backfill reads the body's RFC 3339 text.
ALTER TABLE visits ADD COLUMN checkin_at_ms INTEGER;
UPDATE visits
   SET checkin_at_ms = CAST(unixepoch(json_extract(body, '$.checkin_at'), 'subsec') * 1000
                            AS INTEGER);

-- Covering indexes for the monthly ledger (工作台, 月台账, 入户率 export): the ledger reads
-- every household of a township and every visit of a month, and without these each row read
-- pulled its JSON card or body pages (about 80 ms of the dashboard's 160 ms for a township of
-- 5,000 households; BENCHMARKS.md). The visits index supersedes 0008's
-- visits_by_month_household (same leading columns).
CREATE INDEX households_ledger ON households (township_id, village_id, head_name, household_id);
CREATE INDEX visits_ledger ON visits (business_month, household_id, state, submitted_at,
                                      visit_id, revision, author_user_id, mode, checkin_at_ms);
DROP INDEX IF EXISTS visits_by_month_household;
