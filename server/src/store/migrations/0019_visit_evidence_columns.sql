-- Issue 11 §2: the inputs the evidence rules read about a cadre's other visits, copied out
-- of the JSON body so the travel and per-day checks read one index range instead of
-- decoding every body of three months. Times are exact: Unix milliseconds (as
-- checkin_at_ms of 0015) plus the nanoseconds below the millisecond, so the rules see the
-- same instants as in the body. The fix is stored as sent (lat, lon and the Crs code): SQL
-- cannot convert GCJ-02/BD-09, so the reader converts to WGS-84 in Rust.
-- The server fills these columns for existing rows in Rust, in this migration's
-- transaction (sqlite.rs, EVIDENCE_COLUMNS_VERSION); a row whose body does not decode is
-- left NULL and read from its body, as before.
ALTER TABLE visits ADD COLUMN checkin_sub_ms_ns INTEGER;
ALTER TABLE visits ADD COLUMN checkout_at_ms INTEGER;
ALTER TABLE visits ADD COLUMN checkout_sub_ms_ns INTEGER;
ALTER TABLE visits ADD COLUMN gps_lat REAL;
ALTER TABLE visits ADD COLUMN gps_lon REAL;
ALTER TABLE visits ADD COLUMN gps_crs INTEGER;

-- A cadre's visits around a time: one range scan, covering, so no body page is read.
CREATE INDEX visits_by_author_checkin ON visits (author_user_id, checkin_at_ms, visit_id,
    revision, checkin_sub_ms_ns, checkout_at_ms, checkout_sub_ms_ns, gps_lat, gps_lon,
    gps_crs, mode);
