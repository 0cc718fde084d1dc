//! The jobs area of the store (issue 15 §4): leases that let a background job (daily
//! change-log compaction, upload expiry, audit verification) run on one replica at a time
//! when several share a database, and the console's import jobs, stored so that any replica
//! shows a job's progress and applies its plan, and a restart loses nothing. SQLite in
//! `sqlite.rs`, the checks every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::sealed::PiiCipher;
use crate::store::{StoreError, StoreResult, from_millis, to_millis};

/// The SQL both backends run to take a lease: insert it, or take over one that expired or
/// that `holder` already has; a row comes back only when the lease is now `holder`'s.
/// Parameters: job name, holder, now (ms), until (ms).
pub(crate) const TAKE_LEASE_SQL: &str = "INSERT INTO job_leases (job_name, holder, leased_until)
     VALUES ($1, $2, $4)
     ON CONFLICT (job_name) DO UPDATE SET holder = excluded.holder,
                                          leased_until = excluded.leased_until
      WHERE job_leases.leased_until <= $3 OR job_leases.holder = excluded.holder
     RETURNING holder";

/// Insert an import job, or rewrite it when the runner is still the record's; a row comes
/// back only when the record was written. Parameters: job id, kind, county, runner, phase,
/// created (ms), heartbeat (ms), sealed view, sealed plan or NULL.
pub(crate) const SAVE_IMPORT_JOB_SQL: &str = "INSERT INTO import_jobs
         (job_id, kind, county_id, runner, phase, created_at, heartbeat_at, view_json, plan_json)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (job_id) DO UPDATE SET phase = excluded.phase,
                                        heartbeat_at = excluded.heartbeat_at,
                                        view_json = excluded.view_json,
                                        plan_json = excluded.plan_json
      WHERE import_jobs.runner = excluded.runner
     RETURNING job_id";

/// One job by id, kind and county. Parameters: job id, kind, county.
pub(crate) const SELECT_IMPORT_JOB_SQL: &str = "SELECT job_id, kind, county_id, runner, phase,
            created_at, heartbeat_at, view_json, plan_json
       FROM import_jobs WHERE job_id = $1 AND kind = $2 AND county_id = $3";

/// The ready job an apply may claim (the parameters of [`SELECT_IMPORT_JOB_SQL`]).
pub(crate) const SELECT_CLAIMABLE_IMPORT_JOB_SQL: &str = "SELECT job_id, kind, county_id, runner,
            phase, created_at, heartbeat_at, view_json, plan_json
       FROM import_jobs WHERE job_id = $1 AND kind = $2 AND county_id = $3
        AND phase = 'ready' AND plan_json IS NOT NULL";

/// Hand a claimed job to its new runner. Parameters: job id, runner, heartbeat (ms).
pub(crate) const CLAIM_IMPORT_JOB_SQL: &str = "UPDATE import_jobs
        SET phase = 'applying', runner = $2, heartbeat_at = $3, plan_json = NULL
      WHERE job_id = $1";

/// Parameter: created before (ms).
pub(crate) const PURGE_IMPORT_JOBS_SQL: &str = "DELETE FROM import_jobs WHERE created_at < $1";

/// The phase a claim leaves a job in (its stored name).
pub const PHASE_APPLYING: &str = "applying";

/// Sealing context of a job's view (the associated data binds it to its row).
pub(crate) fn view_context(job_id: &str) -> String {
    format!("import_jobs/{job_id}/view")
}

/// Sealing context of a job's plan.
pub(crate) fn plan_context(job_id: &str) -> String {
    format!("import_jobs/{job_id}/plan")
}

/// The sealed columns of `import_jobs` with their contexts as SQL over the row (the same
/// texts as [`view_context`] and [`plan_context`]), for key rotation.
pub(crate) const SEALED_IMPORT_JOB_COLUMNS: [(&str, &str); 2] = [
    ("view_json", "'import_jobs/' || job_id || '/view'"),
    ("plan_json", "'import_jobs/' || job_id || '/plan'"),
];

/// A job's row as both backends read it, before its sealed values are opened.
pub(crate) struct StoredImportJob {
    pub job_id: String,
    pub kind: String,
    pub county_id: String,
    pub runner: String,
    pub phase: String,
    pub created_at: i64,
    pub heartbeat_at: i64,
    pub view_json: String,
    pub plan_json: Option<String>,
}

impl StoredImportJob {
    /// Seal a record for writing (the view, and the plan when there is one).
    pub(crate) fn sealed(record: &ImportJobRecord, pii: &PiiCipher) -> StoreResult<Self> {
        Ok(StoredImportJob {
            job_id: record.job_id.clone(),
            kind: record.kind.clone(),
            county_id: record.county_id.clone(),
            runner: record.runner.clone(),
            phase: record.phase.clone(),
            created_at: to_millis(record.created_at)?,
            heartbeat_at: to_millis(record.heartbeat_at)?,
            view_json: pii.seal(&record.view_json, &view_context(&record.job_id)),
            plan_json: record
                .plan_json
                .as_deref()
                .map(|plan| pii.seal(plan, &plan_context(&record.job_id))),
        })
    }

    /// The row as a claim leaves it: applying, for `runner`, as of `now` (ms).
    pub(crate) fn claimed(self, runner: String, now: i64) -> Self {
        StoredImportJob {
            runner,
            heartbeat_at: now,
            phase: PHASE_APPLYING.to_owned(),
            ..self
        }
    }

    /// Open the sealed values read from a row.
    pub(crate) fn opened(self, pii: &PiiCipher) -> StoreResult<ImportJobRecord> {
        let sealed = |error: crate::store::sealed::SealError| StoreError::Sealed(error.to_string());
        Ok(ImportJobRecord {
            view_json: pii
                .open(&self.view_json, &view_context(&self.job_id))
                .map_err(sealed)?,
            plan_json: self
                .plan_json
                .map(|plan| pii.open(&plan, &plan_context(&self.job_id)))
                .transpose()
                .map_err(sealed)?,
            created_at: from_millis(self.created_at)?,
            heartbeat_at: from_millis(self.heartbeat_at)?,
            job_id: self.job_id,
            kind: self.kind,
            county_id: self.county_id,
            runner: self.runner,
            phase: self.phase,
        })
    }
}

/// The refusal of a write for an import job that another runner has taken over.
pub(in crate::store) fn import_job_taken_over(job_id: &str) -> crate::store::StoreError {
    crate::store::StoreError::Conflict(format!("import job {job_id} is run by another replica now"))
}

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

    /// Insert an import job, or rewrite it when `record.runner` still runs it. The plan is
    /// stored only when `plan_json` is given, and cleared otherwise.
    async fn save_import_job(&self, record: &ImportJobRecord) -> StoreResult<ImportJobWrite>;

    /// The job of that kind in that county, with its plan; another county's job is `None`.
    async fn import_job(
        &self,
        kind: &str,
        county_id: &str,
        job_id: &str,
    ) -> StoreResult<Option<ImportJobRecord>>;

    /// Move a ready job to `applying` for `runner` and hand over its plan, taking it out of
    /// the store: of two replicas asked at once, one gets the plan and the other `None`.
    async fn claim_import_apply(
        &self,
        kind: &str,
        county_id: &str,
        job_id: &str,
        runner: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ImportJobRecord>>;

    /// Delete the jobs created before `before` (their runs stay in the import audit).
    async fn purge_import_jobs(&self, before: OffsetDateTime) -> StoreResult<u64>;
}

/// One console import job (花名册导入, 行政区划导入) as every replica sees it (issue 15 §4):
/// the replica that runs the job writes it at every phase change and every second while it
/// works, so another replica (or this one after a restart) can show it and apply its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportJobRecord {
    pub job_id: String,
    /// Which import: `roster` or `areas`.
    pub kind: String,
    pub county_id: String,
    /// The job object writing the record (a fresh id per process and run): a write from
    /// any other runner is ignored, so a replica that lost the job cannot overwrite it.
    pub runner: String,
    /// The phase in its snake_case name (`reading` … `applied`, `failed`).
    pub phase: String,
    pub created_at: OffsetDateTime,
    /// Last write by the runner; a running job whose heartbeat stops was interrupted.
    pub heartbeat_at: OffsetDateTime,
    /// Everything the job page shows, as JSON. Sealed at rest: previews quote names, ID
    /// and phone numbers.
    pub view_json: String,
    /// The plan to apply, as JSON, kept only while the dry run is ready. Sealed at rest.
    pub plan_json: Option<String>,
}

/// What the import-job writes return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportJobWrite {
    Written,
    /// The record belongs to another runner now (applied elsewhere): nothing was written.
    NotOurs,
}
