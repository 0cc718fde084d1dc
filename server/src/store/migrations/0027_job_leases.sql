-- Background jobs that must run once across replicas (issue 15 §4: change-log compaction,
-- upload expiry, audit verification) take a lease here; an expired lease is taken over.
-- SQLite serves one replica, but keeps the same table so both backends pass one suite.
CREATE TABLE job_leases (
    job_name     TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    leased_until INTEGER NOT NULL
);
