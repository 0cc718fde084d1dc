-- Abandoned uploads expire (Store::expire_uploads, run daily): find incomplete uploads by
-- age without scanning every upload ever made. Complete uploads never expire, so they stay
-- out of the index.
CREATE INDEX IF NOT EXISTS uploads_incomplete_by_created
    ON uploads (created_at) WHERE complete = 0;
