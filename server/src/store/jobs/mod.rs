//! The jobs area of the store: leases that let a background job (daily change-log
//! compaction, upload expiry, audit verification) run on one replica at a time when several
//! share a database (issue 15 §4). SQLite in `sqlite.rs`, the checks every backend passes in
//! `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::StoreResult;

/// The SQL both backends run to take a lease: insert it, or take over one that expired or
/// that `holder` already has; a row comes back only when the lease is now `holder`'s.
/// Parameters: job name, holder, now (ms), until (ms).
pub(crate) const TAKE_LEASE_SQL: &str = "INSERT INTO job_leases (job_name, holder, leased_until)
     VALUES ($1, $2, $4)
     ON CONFLICT (job_name) DO UPDATE SET holder = excluded.holder,
                                          leased_until = excluded.leased_until
      WHERE job_leases.leased_until <= $3 OR job_leases.holder = excluded.holder
     RETURNING holder";

#[async_trait]
pub trait JobsStore: Send + Sync {
    /// Take the lease of `job_name` for `holder` until `until`, when nobody else holds it
    /// past `now` (a holder may renew its own at any time). True when `holder` has it now.
    async fn take_job_lease(
        &self,
        job_name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool>;
}
