//! Area import use case (行政区划导入): the county's townships and villages, with their
//! 统计用区划代码, centre points and village attributes, from an uploaded XLSX or CSV, as a
//! background job: dry run (read, validate, compare) → preview → apply in one transaction.
//!
//! It follows the roster import ([`crate::roster_import`]) step for step and shares its file
//! handling (`sniff`, `read_raw_sheet`: format from the bytes, GBK refused, XLSX streamed
//! through calamine) and its stored job ([`crate::import_jobs`]); the rules are pure in
//! [`fieldsync_model::areas`]. An area file is small (a county has a few hundred villages),
//! so the job keeps the whole preview: every issue, every change and every missing area.
//! What was applied lives in the store (`area_import_runs`) and in the audit log.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fieldsync_model::access::{ACTION_AREA_IMPORT, AuditContent};
use fieldsync_model::areas::{
    self, AreaChange, AreaColumn, AreaImportPlan, AreaIssue, AreaLevel, CountyAreas, MAX_AREA_ROWS,
    MissingArea,
};
use fieldsync_model::codes::{Crs, Role};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::AppState;
use crate::error::ServiceError;
use crate::import_jobs::{self, ImportKind, JobPhase, PreviewSummary};
use crate::roster_import::{FileFormat, HeaderCheck, ImportFileError, RawSheet, read_raw_sheet};
use crate::store::Principal;
use crate::store::areas::{AreaImportApply, AreaImportRun};

/// How many applied imports the areas page lists.
const RECENT_RUNS: u32 = 20;

/// What the dry run found. Unlike the roster preview, it lists everything: area files are
/// small.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AreaPreview {
    pub data_rows: u64,
    pub bad_rows: usize,
    /// Every refused cell; any blocks the apply.
    pub issues: Vec<AreaIssue>,
    /// Reported, not blocking (coordinates outside China).
    pub warnings: Vec<AreaIssue>,
    pub new_townships: usize,
    pub new_villages: usize,
    /// Stored areas with at least one changed field.
    pub changed_areas: usize,
    pub changed_fields: usize,
    /// Areas whose name changes (名称变更), applied with the rest.
    pub renamed_areas: usize,
    pub unchanged_rows: u64,
    pub changes: Vec<AreaChange>,
    /// 文件中缺少的村: stored townships and villages the file does not list. Kept.
    pub missing: Vec<MissingArea>,
    /// The coordinate system the file declared, if it has centre points.
    pub crs: Option<String>,
    /// True when the file matches the store (无变化).
    pub no_changes: bool,
    /// Areas the apply writes (new and changed): the total of its progress bar.
    pub items_to_apply: u64,
}

/// The audit row of an applied import, as JSON shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AreaImportRunView {
    pub run_id: String,
    pub areas_created: u64,
    pub areas_changed: u64,
    pub fields_changed: u64,
    pub areas_renamed: u64,
    pub areas_missing: u64,
    pub unchanged_rows: u64,
    pub applied_at_unix_ms: i64,
}

impl From<&AreaImportRun> for AreaImportRunView {
    fn from(run: &AreaImportRun) -> Self {
        AreaImportRunView {
            run_id: run.run_id.clone(),
            areas_created: run.areas_created,
            areas_changed: run.areas_changed,
            fields_changed: run.fields_changed,
            areas_renamed: run.areas_renamed,
            areas_missing: run.areas_missing,
            unchanged_rows: run.unchanged_rows,
            applied_at_unix_ms: (run.applied_at.unix_timestamp_nanos() / 1_000_000) as i64,
        }
    }
}

/// The area template's header check, for [`read_raw_sheet`].
fn check_area_headers(headers: &[String]) -> Result<(), fieldsync_model::roster::HeaderError> {
    areas::map_area_headers(headers).map(|_| ())
}

fn crs_name(crs: Crs) -> &'static str {
    match crs {
        Crs::Wgs84 => "WGS-84",
        Crs::Gcj02 => "GCJ-02",
        Crs::Bd09 => "BD-09",
    }
}

fn preview_of(validated: &areas::AreasValidated, plan: &AreaImportPlan) -> AreaPreview {
    let count_new = |level: AreaLevel| {
        plan.new_areas
            .iter()
            .filter(|area| area.level == level)
            .count()
    };
    AreaPreview {
        data_rows: validated.data_rows,
        bad_rows: validated.bad_row_count(),
        issues: validated.issues.clone(),
        warnings: validated.warnings.clone(),
        new_townships: count_new(AreaLevel::Township),
        new_villages: count_new(AreaLevel::Village),
        changed_areas: plan.updated_areas.len(),
        changed_fields: plan.changes.len(),
        renamed_areas: plan.renamed_count(),
        unchanged_rows: plan.unchanged_rows,
        changes: plan.changes.clone(),
        missing: plan.missing.clone(),
        crs: validated.crs.map(|crs| crs_name(crs).to_owned()),
        no_changes: validated.issues.is_empty() && plan.is_empty(),
        items_to_apply: (plan.new_areas.len() + plan.updated_areas.len()) as u64,
    }
}

/// The area import as an [`ImportKind`]: the job machinery is in [`crate::import_jobs`].
#[derive(Debug)]
pub struct AreaImport;

/// An area import job on its runner.
pub type AreaImportJob = import_jobs::ImportJob<AreaImport>;
/// An area import job as the page and the JSON twin show it.
pub type AreaJobView = import_jobs::JobView<AreaImport>;

#[async_trait::async_trait]
impl ImportKind for AreaImport {
    const KIND: &'static str = "areas";
    const COUNTY_ONLY: &'static str = "仅县级管理员可导入行政区划 (county administrators only)";
    const NO_CHANGES: &'static str = "文件与系统中的行政区划一致（无变化），无需导入";

    type Preview = AreaPreview;
    type Plan = AreaImportPlan;
    type Run = AreaImportRunView;

    fn summary(preview: &AreaPreview) -> PreviewSummary {
        PreviewSummary {
            bad_rows: preview.bad_rows,
            no_changes: preview.no_changes,
            items_to_apply: preview.items_to_apply,
        }
    }

    async fn dry_run(
        state: AppState,
        job: Arc<AreaImportJob>,
        bytes: Vec<u8>,
        format: FileFormat,
        on_header: oneshot::Sender<Result<(), ImportFileError>>,
    ) {
        let reading_job = Arc::clone(&job);
        let read = tokio::task::spawn_blocking(move || {
            let check: HeaderCheck<'_> = &check_area_headers;
            read_raw_sheet(
                &bytes,
                format,
                &reading_job.rows_read,
                Some(on_header),
                check,
                MAX_AREA_ROWS,
            )
        })
        .await;
        let RawSheet { headers, rows } = match read {
            Ok(Ok(sheet)) => sheet,
            Ok(Err(error)) => return job.fail(error.to_string()),
            Err(error) => {
                tracing::error!(%error, "area import reader panicked");
                return job.fail("读取文件时出现内部错误".into());
            }
        };
        job.set_phase(JobPhase::Validating);
        let stored = match state.areas.county_areas(&job.county_id).await {
            Ok(stored) => stored,
            Err(error) => {
                let error: ServiceError = error.into();
                return job.fail(error.to_string());
            }
        };
        let county = CountyAreas {
            county_id: job.county_id.clone(),
            stored,
        };
        let validating_job = Arc::clone(&job);
        let analysed = tokio::task::spawn_blocking(move || {
            let columns = areas::map_area_headers(&headers)?;
            let validated = areas::validate_area_rows(&rows, &columns, &county, &mut |done| {
                validating_job.rows_validated.store(done, Ordering::Relaxed);
            });
            validating_job.set_phase(JobPhase::Comparing);
            let plan = areas::diff_areas(&validated, &county);
            Ok::<_, fieldsync_model::roster::HeaderError>((preview_of(&validated, &plan), plan))
        })
        .await;
        match analysed {
            Ok(Ok((preview, plan))) => job.ready(preview, plan),
            Ok(Err(error)) => job.fail(ImportFileError::from(error).to_string()),
            Err(error) => {
                tracing::error!(%error, "area import validation panicked");
                job.fail("校验时出现内部错误".into());
            }
        }
    }

    async fn apply(
        app: &AppState,
        job: &AreaImportJob,
        plan: AreaImportPlan,
        preview: &AreaPreview,
        principal: &Principal,
    ) -> Result<AreaImportRunView, ServiceError> {
        let run = AreaImportRun {
            run_id: job.job_id.clone(),
            county_id: job.county_id.clone(),
            file_name: job.file_name.clone(),
            file_sha256: job.file_sha256.clone(),
            file_bytes: job.file_bytes,
            data_rows: preview.data_rows,
            areas_created: plan.new_areas.len() as u64,
            areas_changed: plan.updated_areas.len() as u64,
            fields_changed: plan.changes.len() as u64,
            areas_renamed: plan.renamed_count() as u64,
            areas_missing: plan.missing.len() as u64,
            unchanged_rows: plan.unchanged_rows,
            applied_by_user_id: principal.user_id.clone(),
            applied_by_name: principal.display_name.clone(),
            applied_at: app.clock.now(),
        };
        let apply = AreaImportApply {
            run,
            plan,
            applied_items: Arc::clone(&job.items_applied),
        };
        let run = app.areas.apply_area_import(apply).await?;
        // The run row is written in the import's transaction; the hash-chained audit log gets
        // a record too, so one log answers "who changed the hierarchy". A failure here is
        // logged, never undoes the applied import.
        if let Err(error) = app.store.append_audit(import_audit(&run)).await {
            tracing::error!(%error, run_id = %run.run_id, "area import not in the audit log");
        }
        Ok(AreaImportRunView::from(&run))
    }

    async fn applied_run(
        app: &AppState,
        county_id: &str,
        job_id: &str,
    ) -> Result<Option<AreaImportRunView>, ServiceError> {
        let runs = app.areas.area_import_runs(county_id, RECENT_RUNS).await?;
        Ok(runs
            .iter()
            .find(|run| run.run_id == job_id)
            .map(AreaImportRunView::from))
    }
}

/// The audit-log record of an applied area import.
fn import_audit(run: &AreaImportRun) -> AuditContent {
    AuditContent {
        recorded_at_ms: i64::try_from(run.applied_at.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX),
        actor_user_id: run.applied_by_user_id.clone(),
        actor_role: Role::County.as_str().to_owned(),
        area_id: run.county_id.clone(),
        action: ACTION_AREA_IMPORT.to_owned(),
        subject: run.file_name.clone(),
        filter: format!("run={}", run.run_id),
        row_count: run.data_rows,
        file_sha256: run.file_sha256.clone(),
        detail: format!(
            "行政区划导入：新增{}个区划，修改{}个区划{}项（其中更名{}个），文件中缺少{}个（保留）",
            run.areas_created,
            run.areas_changed,
            run.fields_changed,
            run.areas_renamed,
            run.areas_missing
        ),
    }
}

/// The county's applied area imports, newest first.
pub async fn recent_runs(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<AreaImportRun>, ServiceError> {
    let county_id = import_jobs::county_admin::<AreaImport>(principal)?;
    Ok(state.areas.area_import_runs(county_id, RECENT_RUNS).await?)
}

/// The county's hierarchy for the areas page: county, townships, villages in code order.
pub async fn county_hierarchy(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<fieldsync_model::areas::AreaEntry>, ServiceError> {
    // The auditor reads it too (read-only, every page audited).
    let county_id = match principal.role {
        Role::Auditor => &principal.area_id,
        _ => import_jobs::county_admin::<AreaImport>(principal)?,
    };
    Ok(state.areas.county_areas(county_id).await?)
}

/// The empty template (行政区划导入模板) as XLSX: the header row and a notes row, with the
/// code columns formatted as text so Excel keeps all twelve digits.
pub fn template_xlsx() -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("行政区划")?;
    let header = Format::new().set_bold().set_background_color("#DDEBF7");
    let note = Format::new()
        .set_italic()
        .set_font_color("#666666")
        .set_text_wrap();
    let text = Format::new().set_num_format("@");
    for (index, column) in AreaColumn::ALL.iter().enumerate() {
        let position = index as u16;
        sheet.write_string_with_format(0, position, column.header_zh(), &header)?;
        sheet.set_column_width(position, 12)?;
        if matches!(column, AreaColumn::Code | AreaColumn::ParentCode) {
            sheet.set_column_format(position, &text)?;
            sheet.set_column_width(position, 16)?;
        }
        let content = if index == 0 {
            format!("说明：{}", column.note_zh())
        } else {
            column.note_zh().to_owned()
        };
        sheet.write_string_with_format(1, position, &content, &note)?;
    }
    sheet.set_row_height(1, 60)?;
    sheet.set_freeze_panes(1, 0)?;
    workbook.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_template_reads_back_with_every_column_and_no_data_rows() {
        let bytes = template_xlsx().expect("template");
        let rows_read = AtomicU64::new(0);
        let check: HeaderCheck<'_> = &check_area_headers;
        let sheet =
            read_raw_sheet(&bytes, FileFormat::Xlsx, &rows_read, None, check, 10).expect("reads");
        let columns = areas::map_area_headers(&sheet.headers).expect("columns");
        for column in AreaColumn::ALL {
            assert!(columns.has(*column), "{column:?}");
        }
        let county = CountyAreas {
            county_id: "522731000000".into(),
            stored: Vec::new(),
        };
        let validated = areas::validate_area_rows(&sheet.rows, &columns, &county, &mut |_| {});
        assert_eq!(validated.data_rows, 0, "only the notes row");
        assert!(validated.issues.is_empty());
    }

    #[test]
    fn a_roster_header_is_refused_as_an_area_file_and_the_reverse() {
        let rows_read = AtomicU64::new(0);
        let check: HeaderCheck<'_> = &check_area_headers;
        let error = read_raw_sheet(
            "户编号,乡镇\n1,城关镇\n".as_bytes(),
            FileFormat::Csv,
            &rows_read,
            None,
            check,
            10,
        )
        .expect_err("not an area file");
        assert!(error.to_string().contains("统计用区划代码"), "{error}");
        let error = crate::roster_import::read_sheet(
            "统计用区划代码,名称\n522731101000,城关镇\n".as_bytes(),
            FileFormat::Csv,
            &rows_read,
            None,
        )
        .expect_err("not a roster");
        assert!(error.to_string().contains("户编号"), "{error}");
    }

    #[test]
    fn too_many_rows_are_refused_with_the_limit() {
        let rows_read = AtomicU64::new(0);
        let check: HeaderCheck<'_> = &check_area_headers;
        let text = "统计用区划代码,名称\n522731101000,甲\n522731102000,乙\n522731103000,丙\n";
        let error = read_raw_sheet(text.as_bytes(), FileFormat::Csv, &rows_read, None, check, 2)
            .expect_err("three rows, limit two");
        assert_eq!(error, ImportFileError::TooManyRows(2));
    }
}
