-- 0017_audit_key: the audit chain becomes keyed (issue #10 item 7).
--
-- New records carry record_hash = HMAC-SHA256(key, previous_hash || JSON of content) under
-- the server's audit key, which lives in the key folder outside the data folder
-- (keys::load_or_create(key_dir, "audit-hmac")); key_id names that key (16 hex digits).
-- Records written before this migration keep key_id = '' and stay verifiable as the legacy
-- SHA-256 chain up to the first keyed record; how many there were is written down in the
-- key folder (audit-hmac.legacy) when the server first runs with the key, so a chain
-- rewritten as plain SHA-256 does not pass. ADD COLUMN does not fire the append-only
-- triggers of 0011.

ALTER TABLE audit_log ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
