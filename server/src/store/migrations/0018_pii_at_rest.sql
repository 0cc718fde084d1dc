-- 0018_pii_at_rest: personal data sealed at rest (等保 2.0 level 3, PIPL; docs/security.md
-- "pii-rest"). ID numbers (身份证号) and phone numbers (联系电话) are stored as
-- `enc:v1:<key_id>:<base64>` (AES-256-GCM, key in the key folder, see store/sealed.rs).
-- After this file runs, the store seals every value still stored in plain text in the same
-- transaction (sealing::reseal_all), so an upgraded database holds no plain numbers.
--
-- A sealed number cannot be compared in SQL, so ID-number look-ups (the roster import's
-- duplicate check) go through this keyed blind index: HMAC-SHA256 of the upper-cased
-- number under the separate `pii-index` key, truncated to 128 bits. One row per current
-- member with an ID number; rebuilt from the card whenever the card is saved.
CREATE TABLE member_id_index (
    household_id  TEXT NOT NULL REFERENCES households (household_id),
    member_id     TEXT NOT NULL,
    blind_index   TEXT NOT NULL,
    PRIMARY KEY (household_id, member_id)
);
CREATE INDEX member_id_index_by_blind_index ON member_id_index (blind_index);
