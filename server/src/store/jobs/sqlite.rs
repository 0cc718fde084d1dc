//! SQLite side of [`JobsStore`]: the lease table of migration 0027 and the import jobs of
//! migration 0028 (one replica, but the same contract as PostgreSQL).

use rusqlite::{Connection, OptionalExtension, Row, named_params};
use time::OffsetDateTime;

use crate::store::StoreResult;
use crate::store::jobs::{
    CLAIM_IMPORT_JOB_SQL, ImportJobRecord, ImportJobWrite, JobsStore, PURGE_IMPORT_JOBS_SQL,
    SAVE_IMPORT_JOB_SQL, SELECT_CLAIMABLE_IMPORT_JOB_SQL, SELECT_IMPORT_JOB_SQL, StoredImportJob,
    TAKE_LEASE_SQL,
};
use crate::store::sqlite::{SqliteStore, to_millis};

// SQLite reads `$N` as names, numbered in order of first use, so the shared SQL is bound by
// name throughout.

/// Write a sealed import job inside the caller's transaction (see
/// [`JobsStore::save_import_job`]); the cadre import writes its accounts in the same one.
pub(in crate::store) fn save_import_job_in(
    connection: &Connection,
    stored: &StoredImportJob,
) -> StoreResult<ImportJobWrite> {
    let written = connection
        .query_row(
            SAVE_IMPORT_JOB_SQL,
            named_params! {
                "$1": stored.job_id, "$2": stored.kind, "$3": stored.county_id,
                "$4": stored.runner, "$5": stored.phase, "$6": stored.created_at,
                "$7": stored.heartbeat_at, "$8": stored.view_json, "$9": stored.plan_json,
            },
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    Ok(if written {
        ImportJobWrite::Written
    } else {
        ImportJobWrite::NotOurs
    })
}

fn stored_job(row: &Row<'_>) -> rusqlite::Result<StoredImportJob> {
    Ok(StoredImportJob {
        job_id: row.get("job_id")?,
        kind: row.get("kind")?,
        county_id: row.get("county_id")?,
        runner: row.get("runner")?,
        phase: row.get("phase")?,
        created_at: row.get("created_at")?,
        heartbeat_at: row.get("heartbeat_at")?,
        view_json: row.get("view_json")?,
        plan_json: row.get("plan_json")?,
    })
}

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

    async fn save_import_job(&self, record: &ImportJobRecord) -> StoreResult<ImportJobWrite> {
        let stored = StoredImportJob::sealed(record, &self.inner.pii)?;
        self.write(move |transaction| save_import_job_in(transaction, &stored))
            .await
    }

    async fn import_job(
        &self,
        kind: &str,
        county_id: &str,
        job_id: &str,
    ) -> StoreResult<Option<ImportJobRecord>> {
        let (kind, county_id, job_id) = (kind.to_owned(), county_id.to_owned(), job_id.to_owned());
        let stored = self
            .read(move |connection| {
                Ok(connection
                    .query_row(
                        SELECT_IMPORT_JOB_SQL,
                        named_params! {"$1": job_id, "$2": kind, "$3": county_id},
                        stored_job,
                    )
                    .optional()?)
            })
            .await?;
        stored
            .map(|stored| stored.opened(&self.inner.pii))
            .transpose()
    }

    async fn claim_import_apply(
        &self,
        kind: &str,
        county_id: &str,
        job_id: &str,
        runner: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ImportJobRecord>> {
        let (kind, county_id, job_id) = (kind.to_owned(), county_id.to_owned(), job_id.to_owned());
        let runner = runner.to_owned();
        let now = to_millis(now)?;
        let claimed = self
            .write(move |transaction| {
                let Some(stored) = transaction
                    .query_row(
                        SELECT_CLAIMABLE_IMPORT_JOB_SQL,
                        named_params! {"$1": job_id, "$2": kind, "$3": county_id},
                        stored_job,
                    )
                    .optional()?
                else {
                    return Ok(None);
                };
                transaction.execute(
                    CLAIM_IMPORT_JOB_SQL,
                    named_params! {"$1": stored.job_id, "$2": runner, "$3": now},
                )?;
                Ok(Some(stored.claimed(runner, now)))
            })
            .await?;
        claimed
            .map(|stored| stored.opened(&self.inner.pii))
            .transpose()
    }

    async fn purge_import_jobs(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let before = to_millis(before)?;
        self.write(move |transaction| {
            Ok(transaction.execute(PURGE_IMPORT_JOBS_SQL, named_params! {"$1": before})? as u64)
        })
        .await
    }
}
