//! The jobs area on PostgreSQL (issue 15 §4).
//! - Job leases: the `job_leases` row of a background job names the replica running it
//!   until the lease expires, so replicas sharing the database run a daily job once between
//!   them. The upsert takes the row's lock, so two replicas asking at once get one holder.
//! - Import jobs: a claim locks the job's row (`FOR UPDATE`), so of two replicas asked to
//!   apply the same dry run at once, the second finds it no longer ready.

use super::PreparedOnce;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;

use super::{PostgresStore, to_millis};
use crate::store::StoreResult;
use crate::store::jobs::{
    CLAIM_IMPORT_JOB_SQL, ImportJobRecord, ImportJobWrite, JobsStore, PURGE_IMPORT_JOBS_SQL,
    SAVE_IMPORT_JOB_SQL, SELECT_CLAIMABLE_IMPORT_JOB_SQL, SELECT_IMPORT_JOB_SQL, StoredImportJob,
    TAKE_LEASE_SQL,
};

/// Write a sealed import job on `client` (a connection, or the caller's transaction: the
/// cadre import writes its accounts in the same one). See [`JobsStore::save_import_job`].
pub(super) async fn save_import_job_in(
    client: &impl GenericClient,
    stored: &StoredImportJob,
) -> Result<ImportJobWrite, tokio_postgres::Error> {
    let written = client
        .query_opt_cached(
            SAVE_IMPORT_JOB_SQL,
            &[
                &stored.job_id,
                &stored.kind,
                &stored.county_id,
                &stored.runner,
                &stored.phase,
                &stored.created_at,
                &stored.heartbeat_at,
                &stored.view_json,
                &stored.plan_json,
            ],
        )
        .await?
        .is_some();
    Ok(if written {
        ImportJobWrite::Written
    } else {
        ImportJobWrite::NotOurs
    })
}

fn stored_job(row: &tokio_postgres::Row) -> Result<StoredImportJob, tokio_postgres::Error> {
    Ok(StoredImportJob {
        job_id: row.try_get("job_id")?,
        kind: row.try_get("kind")?,
        county_id: row.try_get("county_id")?,
        runner: row.try_get("runner")?,
        phase: row.try_get("phase")?,
        created_at: row.try_get("created_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        view_json: row.try_get("view_json")?,
        plan_json: row.try_get("plan_json")?,
    })
}

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

    async fn save_import_job(&self, record: &ImportJobRecord) -> StoreResult<ImportJobWrite> {
        let stored = StoredImportJob::sealed(record, self.pii())?;
        let connection = self.connection().await?;
        Ok(save_import_job_in(&connection, &stored).await?)
    }

    async fn import_job(
        &self,
        kind: &str,
        county_id: &str,
        job_id: &str,
    ) -> StoreResult<Option<ImportJobRecord>> {
        let connection = self.connection().await?;
        let row = connection
            .query_opt_cached(SELECT_IMPORT_JOB_SQL, &[&job_id, &kind, &county_id])
            .await?;
        row.map(|row| stored_job(&row)?.opened(self.pii()))
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
        let now = to_millis(now)?;
        let claimed = write_transaction!(self, |transaction| {
            let row = transaction
                .query_opt_cached(
                    &format!("{SELECT_CLAIMABLE_IMPORT_JOB_SQL} FOR UPDATE"),
                    &[&job_id, &kind, &county_id],
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let stored = stored_job(&row)?;
            transaction
                .execute_cached(CLAIM_IMPORT_JOB_SQL, &[&job_id, &runner, &now])
                .await?;
            Ok(Some(stored.claimed(runner.to_owned(), now)))
        })?;
        claimed.map(|stored| stored.opened(self.pii())).transpose()
    }

    async fn purge_import_jobs(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let before = to_millis(before)?;
        let connection = self.connection().await?;
        Ok(connection
            .execute_cached(PURGE_IMPORT_JOBS_SQL, &[&before])
            .await?)
    }
}
