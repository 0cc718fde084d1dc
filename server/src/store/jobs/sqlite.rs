//! SQLite side of [`JobsStore`]: the lease table of migration 0027 (one replica, but the
//! same contract as PostgreSQL).

use rusqlite::{OptionalExtension, named_params};
use time::OffsetDateTime;

use crate::store::StoreResult;
use crate::store::jobs::{JobsStore, TAKE_LEASE_SQL};
use crate::store::sqlite::{SqliteStore, to_millis};

#[async_trait::async_trait]
impl JobsStore for SqliteStore {
    async fn take_job_lease(
        &self,
        job_name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool> {
        let (job_name, holder) = (job_name.to_owned(), holder.to_owned());
        let (now, until) = (to_millis(now)?, to_millis(until)?);
        self.write(move |transaction| {
            // SQLite reads `$N` as names, numbered in order of first use, so they are bound
            // by name.
            Ok(transaction
                .query_row(
                    TAKE_LEASE_SQL,
                    named_params! {"$1": job_name, "$2": holder, "$3": now, "$4": until},
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
        .await
    }
}
