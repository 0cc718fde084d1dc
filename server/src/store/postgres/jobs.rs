//! Job leases on PostgreSQL (issue 15 §4): the `job_leases` row of a background job names
//! the replica running it until the lease expires, so replicas sharing the database run a
//! daily job once between them. The upsert takes the row's lock, so two replicas asking at
//! once get one holder.

use super::PreparedOnce;
use time::OffsetDateTime;

use super::{PostgresStore, to_millis};
use crate::store::StoreResult;
use crate::store::jobs::{JobsStore, TAKE_LEASE_SQL};

#[async_trait::async_trait]
impl JobsStore for PostgresStore {
    async fn take_job_lease(
        &self,
        job_name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let (now, until) = (to_millis(now)?, to_millis(until)?);
        write_transaction!(self, |transaction| {
            Ok(transaction
                .query_opt_cached(TAKE_LEASE_SQL, &[&job_name, &holder, &now, &until])
                .await?
                .is_some())
        })
    }
}
