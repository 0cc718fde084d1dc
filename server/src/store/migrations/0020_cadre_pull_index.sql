-- 0020_cadre_pull_index: a cadre's pull page reads the change log per paired household
-- (issue 11 §3: a pull costs in proportion to the caller's scope). With this index each of
-- the cadre's households is one range from the cursor, `(household_id, scope_id,
-- scope_seq > cursor)`, so a cadre's pull no longer walks every entry of the township from
-- the cursor, and an up-to-date pull reads no entry at all.
CREATE INDEX change_log_by_household_scope ON change_log (household_id, scope_id, scope_seq);
