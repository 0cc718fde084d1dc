-- 0022_accounts: accounts managed by the county administrator (issue 12 §3).
--
-- disabled_at: when the account was disabled (停用), unix ms; NULL while active. A disabled
-- account cannot log in and has no live session.
-- must_change_password: 1 while the password is a one-time password (from `init`, a cadre
-- roster import or a reset); the console and the phone ask for a new one first.
-- created_at: unix ms; 0 for accounts from before this migration.
-- The cadre roster fields (帮扶干部花名册): unit (帮扶单位), id_number (身份证号, sealed like
-- users.phone, context 'users.id_number/' || user_id), id_number_index (its keyed blind
-- index, so the same person cannot get two accounts), team_member (驻村工作队),
-- active_from / active_to (YYYY-MM-DD, '' when not given).
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN unit TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN id_number TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN id_number_index TEXT;
ALTER TABLE users ADD COLUMN team_member INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN active_from TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN active_to TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX users_by_id_number_index ON users (id_number_index)
    WHERE id_number_index IS NOT NULL;
CREATE INDEX users_by_area ON users (area_id, role);
