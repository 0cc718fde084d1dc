//! Console import jobs, shared by the roster import (花名册导入, [`crate::roster_import`]) and
//! the area import (行政区划导入, [`crate::area_import`]): an upload starts a dry run (read,
//! validate, compare) in the background, the administrator watches its progress and its
//! preview, and an apply writes the plan in one store transaction.
//!
//! Every job lives in the store, not in a server's memory (issue 15 §4), so any replica
//! behind the load balancer shows it and applies it, and a restart loses nothing:
//! - The replica that works on a job (its *runner*) writes the job at every phase change
//!   and every [`HEARTBEAT`] while it runs ([`keep_stored`]). Pages and the JSON twin read
//!   the store only, on whichever replica they reach.
//! - The plan waits in the store (sealed) while the dry run is ready. An apply claims it:
//!   the store moves the job from ready to applying for one caller, across replicas, and the
//!   caller's replica becomes the runner. A second apply is refused, not applied twice.
//! - A running job whose heartbeat stopped (its replica died or restarted) is shown as
//!   interrupted; an interrupted apply is shown as applied when its run is among the
//!   county's recent runs in the import audit (the apply is one transaction, so it either did
//!   or wrote nothing), and otherwise asks the administrator to check that list.
//!
//! Each kind supplies its reading and validation ([`ImportKind::dry_run`]) and its apply
//! ([`ImportKind::apply`]); this module holds the rest.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fieldsync_model::codes::Role;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};

use crate::AppState;
use crate::error::ServiceError;
use crate::roster_import::{FileFormat, ImportFileError, MAX_IMPORT_BYTES, Upload, sniff};
use crate::store::jobs::{ImportJobRecord, ImportJobWrite};
use crate::store::{Principal, StoreError, decode_json, encode_json};

/// How often a runner rewrites a running job (its progress and heartbeat).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A running job not written for this long was interrupted: its runner stopped.
const INTERRUPTED_AFTER: time::Duration = time::Duration::seconds(30);

/// How often a waiting request (`?wait=true`) reads the job again.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Jobs are deleted this long after they were started; applied imports stay in the import
/// audit and the audit log.
const KEPT_FOR: time::Duration = time::Duration::days(7);

/// A finished job whose final state could not be stored is retried this many times, once
/// per [`HEARTBEAT`], before its runner gives up (the job then reads as interrupted).
const FINAL_WRITE_ATTEMPTS: u32 = 60;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    Reading,
    Validating,
    Comparing,
    /// Dry run done: the preview is ready.
    Ready,
    Applying,
    Applied,
    Failed,
}

impl JobPhase {
    pub fn label_zh(self) -> &'static str {
        match self {
            JobPhase::Reading => "读取文件",
            JobPhase::Validating => "逐行校验",
            JobPhase::Comparing => "与系统数据比对",
            JobPhase::Ready => "预览（尚未写入）",
            JobPhase::Applying => "写入中",
            JobPhase::Applied => "已导入",
            JobPhase::Failed => "失败",
        }
    }

    /// The stored name (`import_jobs.phase`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Reading => "reading",
            JobPhase::Validating => "validating",
            JobPhase::Comparing => "comparing",
            JobPhase::Ready => "ready",
            JobPhase::Applying => crate::store::jobs::PHASE_APPLYING,
            JobPhase::Applied => "applied",
            JobPhase::Failed => "failed",
        }
    }

    const ALL: [JobPhase; 7] = [
        JobPhase::Reading,
        JobPhase::Validating,
        JobPhase::Comparing,
        JobPhase::Ready,
        JobPhase::Applying,
        JobPhase::Applied,
        JobPhase::Failed,
    ];

    fn from_stored(name: &str) -> Result<JobPhase, StoreError> {
        JobPhase::ALL
            .into_iter()
            .find(|phase| phase.as_str() == name)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown import job phase {name:?}")))
    }

    /// True while the job works on its own (the page refreshes itself).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            JobPhase::Reading | JobPhase::Validating | JobPhase::Comparing | JobPhase::Applying
        )
    }
}

/// One kind of import: its types, its refusals, its dry run and its apply.
#[async_trait::async_trait]
pub trait ImportKind: Send + Sync + Sized + 'static {
    /// The stored kind (`import_jobs.kind`).
    const KIND: &'static str;
    /// The refusal for anyone but the county administrator.
    const COUNTY_ONLY: &'static str;
    /// The refusal of an apply that would change nothing (无变化).
    const NO_CHANGES: &'static str;

    /// What the dry run found, as the page and the JSON twin show it.
    type Preview: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// What the apply writes.
    type Plan: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// The import audit's row of an applied job, as JSON shows it.
    type Run: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// What the apply gate and the progress bar read from a preview.
    fn summary(preview: &Self::Preview) -> PreviewSummary;

    /// Read the file (answering `on_header` once the header is checked), validate the rows
    /// and compare them with the store, then end with [`ImportJob::ready`] or
    /// [`ImportJob::fail`].
    async fn dry_run(
        app: AppState,
        job: Arc<ImportJob<Self>>,
        bytes: Vec<u8>,
        format: FileFormat,
        on_header: oneshot::Sender<Result<(), ImportFileError>>,
    );

    /// Write the plan in one store transaction, counting `job.items_applied`, and record it
    /// in the audit log.
    async fn apply(
        app: &AppState,
        job: &ImportJob<Self>,
        plan: Self::Plan,
        preview: &Self::Preview,
        principal: &Principal,
    ) -> Result<Self::Run, ServiceError>;

    /// The import audit's row of this job, when an apply of it committed and is among the
    /// county's recent runs (the ones the import page lists).
    async fn applied_run(
        app: &AppState,
        county_id: &str,
        job_id: &str,
    ) -> Result<Option<Self::Run>, ServiceError>;
}

/// What the apply gate and the progress bar read from a kind's preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewSummary {
    /// Rows with at least one refused cell: any blocks the apply.
    pub bad_rows: usize,
    /// The file matches the store (无变化): nothing to apply.
    pub no_changes: bool,
    /// Items the apply writes: the total of its progress bar.
    pub items_to_apply: u64,
}

/// What a job's record holds besides its phase and plan (`import_jobs.view_json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = ""))]
struct JobDetails<Kind: ImportKind> {
    user_id: String,
    file_name: String,
    file_sha256: String,
    file_bytes: u64,
    rows_read: u64,
    rows_validated: u64,
    items_applied: u64,
    error: Option<String>,
    preview: Option<Kind::Preview>,
    run: Option<Kind::Run>,
}

/// A job as the page and the JSON twin show it.
#[derive(Debug, Clone, Serialize)]
#[serde(bound(serialize = ""))]
pub struct JobView<Kind: ImportKind> {
    pub job_id: String,
    pub file_name: String,
    pub file_sha256: String,
    pub file_bytes: u64,
    pub phase: JobPhase,
    pub phase_zh: &'static str,
    pub rows_read: u64,
    pub rows_validated: u64,
    pub items_applied: u64,
    pub items_to_apply: u64,
    pub error: Option<String>,
    pub preview: Option<Kind::Preview>,
    pub run: Option<Kind::Run>,
    /// True when the preview may be applied now.
    pub can_apply: bool,
}

impl<Kind: ImportKind> JobView<Kind> {
    fn new(job_id: String, phase: JobPhase, details: JobDetails<Kind>) -> Self {
        let summary = details.preview.as_ref().map(Kind::summary);
        let can_apply = phase == JobPhase::Ready
            && summary.is_some_and(|summary| summary.bad_rows == 0 && !summary.no_changes);
        JobView {
            job_id,
            file_name: details.file_name,
            file_sha256: details.file_sha256,
            file_bytes: details.file_bytes,
            phase,
            phase_zh: phase.label_zh(),
            rows_read: details.rows_read,
            rows_validated: details.rows_validated,
            items_applied: details.items_applied,
            items_to_apply: summary.map_or(0, |summary| summary.items_to_apply),
            error: details.error,
            preview: details.preview,
            run: details.run,
            can_apply,
        }
    }
}

#[derive(Debug)]
struct JobState<Kind: ImportKind> {
    phase: JobPhase,
    error: Option<String>,
    preview: Option<Kind::Preview>,
    plan: Option<Kind::Plan>,
    run: Option<Kind::Run>,
}

/// A job on its runner, while it works: the dry run, or an apply.
#[derive(Debug)]
pub struct ImportJob<Kind: ImportKind> {
    pub job_id: String,
    pub county_id: String,
    pub user_id: String,
    pub file_name: String,
    pub file_sha256: String,
    pub file_bytes: u64,
    pub created_at: OffsetDateTime,
    pub rows_read: AtomicU64,
    pub rows_validated: AtomicU64,
    pub items_applied: Arc<AtomicU64>,
    /// This job object's id in the store's `runner` column.
    runner: String,
    state: Mutex<JobState<Kind>>,
    /// Bumped on every phase change, so [`keep_stored`] writes it at once.
    changed: watch::Sender<u64>,
}

impl<Kind: ImportKind> ImportJob<Kind> {
    /// A job object with a runner id of its own, in `phase`, from its details.
    fn new(
        job_id: String,
        county_id: String,
        created_at: OffsetDateTime,
        phase: JobPhase,
        details: JobDetails<Kind>,
    ) -> Self {
        let (changed, _) = watch::channel(0);
        ImportJob {
            job_id,
            county_id,
            user_id: details.user_id,
            file_name: details.file_name,
            file_sha256: details.file_sha256,
            file_bytes: details.file_bytes,
            created_at,
            rows_read: AtomicU64::new(details.rows_read),
            rows_validated: AtomicU64::new(details.rows_validated),
            items_applied: Arc::new(AtomicU64::new(details.items_applied)),
            runner: new_runner(),
            state: Mutex::new(JobState {
                phase,
                error: details.error,
                preview: details.preview,
                plan: None,
                run: details.run,
            }),
            changed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState<Kind>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    pub fn set_phase(&self, phase: JobPhase) {
        self.lock().phase = phase;
        self.changed();
    }

    pub fn fail(&self, message: String) {
        {
            let mut state = self.lock();
            state.phase = JobPhase::Failed;
            state.error = Some(message);
            state.plan = None;
        }
        self.changed();
    }

    /// The dry run is done: the preview to show and the plan to keep until an apply.
    pub fn ready(&self, preview: Kind::Preview, plan: Kind::Plan) {
        {
            let mut state = self.lock();
            state.preview = Some(preview);
            state.plan = Some(plan);
            state.phase = JobPhase::Ready;
        }
        self.changed();
    }

    fn applied(&self, run: Kind::Run) {
        {
            let mut state = self.lock();
            state.run = Some(run);
            state.phase = JobPhase::Applied;
        }
        self.changed();
    }

    fn phase(&self) -> JobPhase {
        self.lock().phase
    }

    fn details(&self, state: &JobState<Kind>) -> JobDetails<Kind> {
        JobDetails {
            user_id: self.user_id.clone(),
            file_name: self.file_name.clone(),
            file_sha256: self.file_sha256.clone(),
            file_bytes: self.file_bytes,
            rows_read: self.rows_read.load(Ordering::Relaxed),
            rows_validated: self.rows_validated.load(Ordering::Relaxed),
            items_applied: self.items_applied.load(Ordering::Relaxed),
            error: state.error.clone(),
            preview: state.preview.clone(),
            run: state.run.clone(),
        }
    }

    /// The job as the caller that started it sees it now.
    fn view(&self) -> JobView<Kind> {
        let state = self.lock();
        JobView::new(self.job_id.clone(), state.phase, self.details(&state))
    }

    /// The job's record as of `now`; the plan is kept while the dry run is ready.
    fn record(&self, now: OffsetDateTime) -> Result<ImportJobRecord, StoreError> {
        let state = self.lock();
        let plan_json = match (&state.plan, state.phase) {
            (Some(plan), JobPhase::Ready) => Some(encode_json(plan)?),
            _ => None,
        };
        Ok(ImportJobRecord {
            job_id: self.job_id.clone(),
            kind: Kind::KIND.to_owned(),
            county_id: self.county_id.clone(),
            runner: self.runner.clone(),
            phase: state.phase.as_str().to_owned(),
            created_at: self.created_at,
            heartbeat_at: now,
            view_json: encode_json(&self.details(&state))?,
            plan_json,
        })
    }
}

/// A fresh runner id: unique per job object, so a write from an old runner is refused.
fn new_runner() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The caller's county, when the caller is its administrator (only they import).
pub(crate) fn county_admin<Kind: ImportKind>(principal: &Principal) -> Result<&str, ServiceError> {
    if principal.role == Role::County {
        Ok(&principal.area_id)
    } else {
        Err(ServiceError::PermissionDenied(Kind::COUNTY_ONLY.into()))
    }
}

fn unknown_job(job_id: &str) -> ServiceError {
    ServiceError::NotFound(format!("导入任务 {job_id} 不存在"))
}

/// Start the dry run of an upload. Returns once the header has been read, so bad files
/// (wrong format, GBK, corrupt, empty, missing columns) are refused here with a typed error
/// and leave no job; the rows are read, validated and compared in the background. The job
/// is in the store before this returns, so the next request may reach any replica.
pub async fn start<Kind: ImportKind>(
    app: &AppState,
    principal: &Principal,
    upload: Upload,
) -> Result<JobView<Kind>, ServiceError> {
    let county_id = county_admin::<Kind>(principal)?.to_owned();
    let format = sniff(&upload.bytes, MAX_IMPORT_BYTES)?;
    let details = JobDetails {
        user_id: principal.user_id.clone(),
        file_sha256: hex::encode(Sha256::digest(&upload.bytes)),
        file_bytes: upload.bytes.len() as u64,
        file_name: upload.file_name,
        rows_read: 0,
        rows_validated: 0,
        items_applied: 0,
        error: None,
        preview: None,
        run: None,
    };
    let job = Arc::new(ImportJob::<Kind>::new(
        uuid::Uuid::now_v7().to_string(),
        county_id,
        app.clock.now(),
        JobPhase::Reading,
        details,
    ));
    let (header_sender, header_read) = oneshot::channel();
    tokio::spawn(Kind::dry_run(
        app.clone(),
        Arc::clone(&job),
        upload.bytes,
        format,
        header_sender,
    ));
    match header_read.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error.into()),
        // The task ended without a word: it failed before the header (logged there).
        Err(_) => return Err(ServiceError::Internal),
    }
    app.store
        .save_import_job(&job.record(app.clock.now())?)
        .await?;
    if let Err(error) = app
        .store
        .purge_import_jobs(app.clock.now() - KEPT_FOR)
        .await
    {
        tracing::warn!(%error, "old import jobs not purged");
    }
    let view = job.view();
    tokio::spawn(keep_stored(app.clone(), job));
    Ok(view)
}

/// The runner's side: write the job at every phase change and every [`HEARTBEAT`] while it
/// runs, and once more when it settles. Stops when another runner took the job over.
async fn keep_stored<Kind: ImportKind>(app: AppState, job: Arc<ImportJob<Kind>>) {
    let mut changes = job.changed.subscribe();
    let mut failed_final_writes = 0;
    loop {
        let settled = !job.phase().is_running();
        let written = match job.record(app.clock.now()) {
            Ok(record) => app.store.save_import_job(&record).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(ImportJobWrite::NotOurs) => return,
            Ok(ImportJobWrite::Written) if settled => return,
            Ok(ImportJobWrite::Written) => {}
            Err(error) => {
                tracing::warn!(%error, job_id = %job.job_id, "import job not stored; retrying");
                if settled {
                    failed_final_writes += 1;
                    if failed_final_writes >= FINAL_WRITE_ATTEMPTS {
                        tracing::error!(job_id = %job.job_id, "import job's final state not stored");
                        return;
                    }
                }
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

/// A stored job as it stands: a running job whose runner stopped writing is interrupted.
async fn view_of<Kind: ImportKind>(
    app: &AppState,
    record: ImportJobRecord,
) -> Result<JobView<Kind>, ServiceError> {
    let mut phase = JobPhase::from_stored(&record.phase)?;
    let mut details: JobDetails<Kind> = decode_json(&record.view_json, "import job view")?;
    if phase.is_running() && app.clock.now() - record.heartbeat_at > INTERRUPTED_AFTER {
        let run = if phase == JobPhase::Applying {
            Kind::applied_run(app, &record.county_id, &record.job_id).await?
        } else {
            None
        };
        match run {
            Some(run) => {
                phase = JobPhase::Applied;
                details.items_applied = details
                    .preview
                    .as_ref()
                    .map_or(0, |preview| Kind::summary(preview).items_to_apply);
                details.run = Some(run);
            }
            None => {
                // A dry run writes nothing. An apply is one transaction, but its run is
                // looked for among the county's recent runs only, so an apply interrupted
                // long ago is not declared unwritten: the administrator checks the list.
                let interrupted = if phase == JobPhase::Applying {
                    "导入任务在写入时中断（服务器重启或节点故障）；请在导入记录中核对此文件是否已导入，\
                     未导入则重新上传"
                } else {
                    "导入任务已中断（服务器重启或节点故障），未写入任何数据；请重新上传文件"
                };
                phase = JobPhase::Failed;
                details.error = Some(interrupted.into());
            }
        }
    }
    Ok(JobView::new(record.job_id, phase, details))
}

/// The job of the caller's county, read from the store (another county's job is answered
/// like an unknown one). With `wait`, answers once the job stops running or `wait` passes.
pub async fn view<Kind: ImportKind>(
    app: &AppState,
    principal: &Principal,
    job_id: &str,
    wait: Option<Duration>,
) -> Result<JobView<Kind>, ServiceError> {
    let county_id = county_admin::<Kind>(principal)?;
    let deadline = wait.map(|wait| tokio::time::Instant::now() + wait);
    loop {
        let record = app
            .store
            .import_job(Kind::KIND, county_id, job_id)
            .await?
            .ok_or_else(|| unknown_job(job_id))?;
        let view = view_of::<Kind>(app, record).await?;
        match deadline {
            Some(deadline) if view.phase.is_running() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(WAIT_POLL).await;
            }
            _ => return Ok(view),
        }
    }
}

/// Apply a ready dry run, on whichever replica the request reached. Refused while any row
/// is bad (nothing partial is ever stored), when the file changes nothing, and when the job
/// is not (or no longer) a ready preview; of two applies at once, one wins and the other is
/// refused. The store writes everything in one transaction in the background.
pub async fn start_apply<Kind: ImportKind>(
    app: &AppState,
    principal: &Principal,
    job_id: &str,
) -> Result<JobView<Kind>, ServiceError> {
    let county_id = county_admin::<Kind>(principal)?;
    let record = app
        .store
        .import_job(Kind::KIND, county_id, job_id)
        .await?
        .ok_or_else(|| unknown_job(job_id))?;
    let view = view_of::<Kind>(app, record).await?;
    let not_ready = |phase: JobPhase| {
        ServiceError::FailedPrecondition(format!(
            "该导入任务处于“{}”阶段，不能写入",
            phase.label_zh()
        ))
    };
    if view.phase != JobPhase::Ready {
        return Err(not_ready(view.phase));
    }
    let Some(preview) = &view.preview else {
        return Err(ServiceError::Internal);
    };
    let PreviewSummary {
        bad_rows,
        no_changes,
        ..
    } = Kind::summary(preview);
    if bad_rows > 0 {
        return Err(ServiceError::FailedPrecondition(format!(
            "文件中有{bad_rows}行错误，不能导入；请修正后重新上传"
        )));
    }
    if no_changes {
        return Err(ServiceError::FailedPrecondition(Kind::NO_CHANGES.into()));
    }
    let runner = new_runner();
    let claimed = app
        .store
        .claim_import_apply(Kind::KIND, county_id, job_id, &runner, app.clock.now())
        .await?
        // Another request claimed it between the read above and now.
        .ok_or_else(|| not_ready(JobPhase::Applying))?;
    let details: JobDetails<Kind> = decode_json(&claimed.view_json, "import job view")?;
    let plan: Kind::Plan = decode_json(
        claimed.plan_json.as_deref().unwrap_or_default(),
        "import job plan",
    )?;
    let Some(preview) = details.preview.clone() else {
        return Err(ServiceError::Internal);
    };
    let mut job = ImportJob::<Kind>::new(
        claimed.job_id,
        claimed.county_id,
        claimed.created_at,
        JobPhase::Applying,
        JobDetails {
            items_applied: 0,
            error: None,
            run: None,
            ..details
        },
    );
    // The runner the store handed the job to.
    job.runner = runner;
    let job = Arc::new(job);
    let view = job.view();
    tokio::spawn(keep_stored(app.clone(), Arc::clone(&job)));
    let app = app.clone();
    let principal = principal.clone();
    tokio::spawn(async move {
        match Kind::apply(&app, &job, plan, &preview, &principal).await {
            Ok(run) => job.applied(run),
            Err(error) => job.fail(format!("导入失败，未写入任何数据：{error}")),
        }
    });
    Ok(view)
}
