-- Issue 11 §2: visits_by_author_month (0006) served the evidence rules' old per-month read of
-- a cadre's visits. Since 0019 those reads walk visits_by_author_checkin, and no other query
-- filters on (author_user_id, business_month), so the index only cost every visit insert
-- one more B-tree write.
DROP INDEX IF EXISTS visits_by_author_month;
