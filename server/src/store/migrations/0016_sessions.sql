-- Sessions and devices (issue #10 item 2). A row of `sessions` is now one login of one
-- device (or one console browser): its current access token (`token_sha256`, replaced at each
-- refresh), an optional refresh token, what the device said about itself, when and from where
-- it was last seen, and — once ended — when and why. Ended rows are kept so a phone presenting
-- a revoked token learns "signed out on the server" instead of "unknown token".
ALTER TABLE sessions ADD COLUMN session_id TEXT;
UPDATE sessions SET session_id = token_sha256;
CREATE UNIQUE INDEX sessions_by_id ON sessions (session_id);
-- 'device' (phone, CLI) or 'console' (a browser; ends after idle time).
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'device';
UPDATE sessions SET kind = 'console' WHERE device_id = 'console';
ALTER TABLE sessions ADD COLUMN app_version TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen_at = created_at;
ALTER TABLE sessions ADD COLUMN last_ip TEXT NOT NULL DEFAULT '';
-- SHA-256 of the current refresh token; NULL for sessions of clients that do not refresh.
ALTER TABLE sessions ADD COLUMN refresh_sha256 TEXT;
ALTER TABLE sessions ADD COLUMN refresh_expires_at INTEGER;
CREATE UNIQUE INDEX sessions_by_refresh ON sessions (refresh_sha256);
-- Set when the session ended before its expiry: 'logged_out', 'revoked' (console),
-- 'password_changed', 'refresh_reused'.
ALTER TABLE sessions ADD COLUMN ended_at INTEGER;
ALTER TABLE sessions ADD COLUMN end_reason TEXT;

-- Refresh tokens already rotated away, kept so presenting one again is recognised as reuse
-- (a stolen copy) and ends the session it belonged to.
CREATE TABLE session_rotated_refresh (
    refresh_sha256  TEXT PRIMARY KEY NOT NULL,
    session_id      TEXT NOT NULL,
    rotated_at      INTEGER NOT NULL
);
