//! Administrative area pages (行政区划) for the county administrator (县级管理员), and their
//! JSON twin. The use case lives in [`crate::area_import`]; this file only reads the
//! multipart upload (with the roster import's reader), renders the pages and maps errors.
//!
//! Routes:
//! - `GET /console/areas`: the county's townships and villages with their attributes
//! - `GET /console/areas/import`: upload form, template link, the applied area imports
//! - `GET /console/areas/import/template.xlsx`: the empty template (rust_xlsxwriter)
//! - `POST /console/areas/import` (multipart, field `file`): start the dry run → 303
//! - `GET /console/areas/import/{job_id}`: progress (refreshes itself every second while
//!   running), then the preview: counts, bad rows, changes, 文件中缺少的村, apply button
//! - `POST /console/areas/import/{job_id}/apply`: apply a clean preview → 303 to the job
//! - JSON: `GET /console/api/areas`, `POST /console/api/areas/import` (multipart) → 202,
//!   `GET /console/api/areas/import/{job_id}[?wait=true]`,
//!   `POST /console/api/areas/import/{job_id}/apply` → 202 (the roster import's shapes)

use std::time::Duration;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::areas::{AreaEntry, AreaIssue, AreaLevel, Attribute};
use maud::{Markup, html};

use super::display::beijing_minutes;
use super::roster::{JobQuery, read_upload};
use super::views::{Nav, layout};
use super::{
    ApiCountyAdmin, ApiCountyReader, ApiError, ConsoleError, ConsoleState, CountyAdmin,
    CountyReader,
};
use crate::area_import::{self, AreaImport, AreaJobView};
use crate::error::ServiceError;
use crate::import_jobs;
use crate::roster_import::JobPhase;
use crate::store::Principal;
use crate::store::areas::AreaImportRun;

/// Path of the hierarchy page.
pub const AREAS_PATH: &str = "/console/areas";
/// Path of the upload page.
pub const AREA_IMPORT_PATH: &str = "/console/areas/import";

/// Longest a `?wait=true` request holds before answering with the job as it is.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// `GET /console/areas`.
pub async fn areas_page(
    State(state): State<ConsoleState>,
    CountyReader(principal): CountyReader,
) -> Result<Response, ConsoleError> {
    let areas = area_import::county_hierarchy(&state.app, &principal).await?;
    Ok(hierarchy_page(&principal, &areas).into_response())
}

/// `GET /console/api/areas`: the same hierarchy as JSON.
pub async fn api_areas(
    State(state): State<ConsoleState>,
    ApiCountyReader(principal): ApiCountyReader,
) -> Result<Json<Vec<AreaEntry>>, ApiError> {
    Ok(Json(
        area_import::county_hierarchy(&state.app, &principal).await?,
    ))
}

/// `GET /console/areas/import`.
pub async fn import_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
) -> Result<Response, ConsoleError> {
    let runs = area_import::recent_runs(&state.app, &principal).await?;
    Ok(upload_page(&principal, &runs, None).into_response())
}

/// `GET /console/areas/import/template.xlsx`.
pub async fn template(CountyAdmin(_principal): CountyAdmin) -> Result<Response, ConsoleError> {
    let bytes = tokio::task::spawn_blocking(area_import::template_xlsx)
        .await
        .map_err(|_| ServiceError::Internal)?
        .map_err(|error| {
            tracing::error!(%error, "area template could not be written");
            ServiceError::Internal
        })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
            ),
            (
                header::CONTENT_DISPOSITION,
                // 行政区划导入模板.xlsx
                HeaderValue::from_static(
                    "attachment; filename=\"area-template.xlsx\"; filename*=UTF-8''%E8%A1%8C%E6%94%BF%E5%8C%BA%E5%88%92%E5%AF%BC%E5%85%A5%E6%A8%A1%E6%9D%BF.xlsx",
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /console/areas/import`: a bad file re-renders the form with the reason.
pub async fn upload(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ConsoleError> {
    let started = match read_upload(multipart).await {
        Ok(upload) => import_jobs::start::<AreaImport>(&state.app, &principal, upload).await,
        Err(error) => Err(error),
    };
    match started {
        Ok(view) => {
            Ok(Redirect::to(&format!("{AREA_IMPORT_PATH}/{}", view.job_id)).into_response())
        }
        Err(ServiceError::InvalidArgument { message, .. }) => {
            let runs = area_import::recent_runs(&state.app, &principal).await?;
            Ok((
                StatusCode::BAD_REQUEST,
                upload_page(&principal, &runs, Some(&message)),
            )
                .into_response())
        }
        Err(other) => Err(ConsoleError::with_back_link(other, AREA_IMPORT_PATH)),
    }
}

/// `GET /console/areas/import/{job_id}`.
pub async fn job_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(job_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let view = import_jobs::view::<AreaImport>(&state.app, &principal, &job_id, None)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, AREA_IMPORT_PATH))?;
    let page = progress_page(&principal, &view);
    if view.phase.is_running() {
        Ok(([(header::REFRESH, HeaderValue::from_static("1"))], page).into_response())
    } else {
        Ok(page.into_response())
    }
}

/// `POST /console/areas/import/{job_id}/apply`.
pub async fn apply(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(job_id): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let back = format!("{AREA_IMPORT_PATH}/{job_id}");
    import_jobs::start_apply::<AreaImport>(&state.app, &principal, &job_id)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back.clone()))?;
    Ok(Redirect::to(&back))
}

/// `POST /console/api/areas/import`.
pub async fn api_upload(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<AreaJobView>), ApiError> {
    let upload = read_upload(multipart).await?;
    let view = import_jobs::start::<AreaImport>(&state.app, &principal, upload).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `GET /console/api/areas/import/{job_id}[?wait=true]`.
pub async fn api_job(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    Path(job_id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Json<AreaJobView>, ApiError> {
    let wait = query.wants_wait()?.then_some(LONGEST_WAIT);
    Ok(Json(
        import_jobs::view::<AreaImport>(&state.app, &principal, &job_id, wait).await?,
    ))
}

/// `POST /console/api/areas/import/{job_id}/apply`.
pub async fn api_apply(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<AreaJobView>), ApiError> {
    let view = import_jobs::start_apply::<AreaImport>(&state.app, &principal, &job_id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

// ---- views ---------------------------------------------------------------------------------

fn centre_zh(area: &AreaEntry) -> String {
    area.centre.map_or_else(String::new, |point| {
        format!("{:.5}, {:.5}", point.lat, point.lon)
    })
}

fn hierarchy_page(principal: &Principal, areas: &[AreaEntry]) -> Markup {
    let townships = areas
        .iter()
        .filter(|area| area.level == AreaLevel::Township)
        .count();
    let villages = areas
        .iter()
        .filter(|area| area.level == AreaLevel::Village)
        .count();
    let county_name = areas
        .iter()
        .find(|area| area.level == AreaLevel::County)
        .map_or("", |area| area.name.as_str());
    layout(
        "行政区划",
        Some(principal),
        Nav::Areas,
        html! {
            h1 { "行政区划：" (county_name) }
            p {
                "共 " (townships) " 个乡镇、" (villages) " 个行政村。"
                // The auditor reads this page; importing is the administrator's.
                @if principal.role == fieldsync_model::codes::Role::County {
                    a href=(AREA_IMPORT_PATH) { "导入或更新行政区划" }
                }
            }
            @if townships == 0 {
                div.notice.info role="status" {
                    "尚未导入乡镇和行政村：请先导入行政区划，再导入花名册。"
                }
            } @else {
                // A wide table (20 columns): it scrolls inside its box, at any width.
                div.table-scroll {
                    table.areas {
                        thead { tr {
                            th { "统计用区划代码" } th { "名称" } th { "层级" } th { "中心点" }
                            @for attribute in Attribute::ALL { th { (attribute.label_zh()) } }
                        } }
                        tbody {
                            @for area in areas.iter().filter(|area| area.level != AreaLevel::County) {
                                tr.township[area.level == AreaLevel::Township] {
                                    td { code { (area.area_id) } }
                                    td {
                                        @if area.level == AreaLevel::Village { "　" }
                                        (area.name)
                                    }
                                    td { (area.level.label_zh()) }
                                    td { (centre_zh(area)) }
                                    @for attribute in Attribute::ALL {
                                        td { (attribute.display_zh(attribute.get(&area.attributes))) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn upload_page(principal: &Principal, runs: &[AreaImportRun], error: Option<&str>) -> Markup {
    layout(
        "行政区划导入",
        Some(principal),
        Nav::Areas,
        html! {
            h1 { "行政区划导入（乡镇、行政村）" }
            @if let Some(error) = error {
                div.notice.error role="alert" { "文件未导入，系统数据未作任何改动：" (error) }
            }
            section.card {
                p {
                    "上传本县乡镇和行政村名单（XLSX 或 UTF-8 编码的 CSV），每行一个区划，"
                    "以12位统计用区划代码为准：乡镇代码以000结尾，上级由代码前缀确定。"
                    "可选填村中心点（须注明坐标系 WGS-84 或 GCJ-02，全文件一致）和村级属性。"
                }
                p {
                    "上传后先做预览（不写入），确认无误后再导入。重复导入同一文件不会产生变化；"
                    "空白单元格不会清除已有数据；文件中缺少的村不会被删除，只在预览中列出。"
                }
                p { a href="/console/areas/import/template.xlsx" { "下载导入模板（XLSX）" } }
                form.import method="post" action=(AREA_IMPORT_PATH) enctype="multipart/form-data" {
                    (super::csrf::form_field())
                    label { "行政区划文件 " input type="file" name="file" accept=".xlsx,.csv" required; }
                    button.primary type="submit" { "上传并预览" }
                }
            }
            p { a href=(AREAS_PATH) { "查看本县行政区划" } }
            h2 { "已导入记录" }
            @if runs.is_empty() {
                p.muted { "尚无导入记录。" }
            } @else {
                table {
                    thead { tr {
                        th { "导入时间" } th { "导入人" } th { "文件" } th { "数据行" } th { "新增" }
                        th { "修改" } th { "其中更名" } th { "文件中缺少" } th { "SHA-256" }
                    } }
                    tbody {
                        @for run in runs {
                            tr {
                                td { (beijing_minutes(run.applied_at)) }
                                td { (run.applied_by_name) }
                                td { (run.file_name) }
                                td.num { (run.data_rows) }
                                td.num { (run.areas_created) }
                                td.num { (run.areas_changed) }
                                td.num { (run.areas_renamed) }
                                td.num { (run.areas_missing) }
                                td { code { (run.file_sha256.chars().take(12).collect::<String>()) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn issue_table(issues: &[AreaIssue]) -> Markup {
    html! {
        table.import-issues {
            thead { tr { th { "行号" } th { "列" } th { "原因" } } }
            tbody {
                @for issue in issues {
                    tr { td.num { (issue.row_number) } td { (issue.column) } td { (issue.reason) } }
                }
            }
        }
    }
}

fn progress_page(principal: &Principal, view: &AreaJobView) -> Markup {
    layout(
        "导入进度",
        Some(principal),
        Nav::Areas,
        html! {
            @if view.phase.is_running() {
                meta http-equiv="refresh" content="1";
            }
            h1 { "行政区划导入：" (view.file_name) }
            section.card.import-progress {
                table.kv {
                    tr { th { "阶段" } td { strong { (view.phase_zh) } } }
                    tr { th { "已读取行数" } td { (view.rows_read) } }
                    tr { th { "已校验行数" } td { (view.rows_validated) } }
                    @if matches!(view.phase, JobPhase::Applying | JobPhase::Applied) {
                        tr { th { "已写入" } td {
                            (view.items_applied) " / " (view.items_to_apply)
                            " " progress max=(view.items_to_apply.max(1)) value=(view.items_applied) {}
                        } }
                    }
                    tr { th { "文件 SHA-256" } td { code { (view.file_sha256) } } }
                }
                @if view.phase.is_running() {
                    p.muted { "处理中，本页每秒自动刷新。" }
                }
            }
            @if let Some(error) = &view.error {
                div.notice.error role="alert" { (error) }
                p { a href=(AREA_IMPORT_PATH) { "返回重新上传" } }
            }
            @if let Some(run) = &view.run {
                div.notice.info role="status" {
                    "已导入：新增 " (run.areas_created) " 个区划，修改 " (run.areas_changed)
                    " 个区划（其中更名 " (run.areas_renamed) " 个）。"
                }
                p { a href=(AREAS_PATH) { "查看本县行政区划" } }
            }
            @if let Some(preview) = &view.preview {
                h2 { "预览" }
                table.kv.import-counts {
                    tr { th { "数据行" } td { (preview.data_rows) } }
                    tr { th { "新增乡镇" } td { (preview.new_townships) } }
                    tr { th { "新增行政村" } td { (preview.new_villages) } }
                    tr { th { "修改的区划" } td { (preview.changed_areas) " （" (preview.changed_fields) " 项，其中更名 " (preview.renamed_areas) " 个）" } }
                    tr { th { "无变化行" } td { (preview.unchanged_rows) } }
                    tr { th { "文件中缺少" } td { (preview.missing.len()) } }
                    tr { th { "坐标系" } td { (preview.crs.as_deref().unwrap_or("（无坐标）")) } }
                    tr { th { "错误行" } td { (preview.bad_rows) } }
                }
                @if preview.no_changes && view.run.is_none() {
                    div.notice.info role="status" { "无变化：文件与系统中的行政区划一致，无需导入。" }
                }
                @if preview.bad_rows > 0 {
                    div.notice.error role="alert" {
                        "文件中有 " (preview.bad_rows) " 行错误。请修正后重新上传；存在错误时不能导入，系统数据未作任何改动。"
                    }
                    (issue_table(&preview.issues))
                }
                @if !preview.warnings.is_empty() {
                    h3 { "提醒（不影响导入）" }
                    (issue_table(&preview.warnings))
                }
                @if !preview.changes.is_empty() {
                    h3 { "变更（" (preview.changes.len()) " 项）" }
                    table.import-changes {
                        thead { tr { th { "行号" } th { "代码" } th { "名称" } th { "字段" } th { "原值" } th { "新值" } } }
                        tbody {
                            @for change in &preview.changes {
                                tr {
                                    td.num { (change.row_number) }
                                    td { code { (change.area_id) } }
                                    td { (change.area_name) }
                                    td { (change.field_zh) }
                                    td { (change.old_value) }
                                    td { (change.new_value) }
                                }
                            }
                        }
                    }
                }
                @if !preview.missing.is_empty() {
                    h3 { "文件中缺少的村（" (preview.missing.len()) " 个，保留不删除）" }
                    p.muted { "这些乡镇或村已在系统中，但本文件没有列出。它们及其农户、结对和走访记录都保留不变。" }
                    table.import-missing {
                        thead { tr { th { "代码" } th { "名称" } th { "层级" } } }
                        tbody {
                            @for area in &preview.missing {
                                tr { td { code { (area.area_id) } } td { (area.name) } td { (area.level.label_zh()) } }
                            }
                        }
                    }
                }
                @if view.can_apply {
                    form method="post" action=(format!("{AREA_IMPORT_PATH}/{}/apply", view.job_id)) {
                        (super::csrf::form_field())
                        button.primary type="submit" {
                            "确认导入（写入 " (view.items_to_apply) " 个区划）"
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::area_import::AreaPreview;
    use fieldsync_model::areas::{IssueKind, MissingArea, VillageAttributes};
    use fieldsync_model::codes::Role;

    fn admin() -> Principal {
        Principal {
            user_id: "u-county".into(),
            display_name: "县管理员".into(),
            role: Role::County,
            area_id: "522731000000".into(),
            device_id: "console".into(),
        }
    }

    fn job(phase: JobPhase, preview: Option<AreaPreview>) -> AreaJobView {
        AreaJobView {
            job_id: "job-1".into(),
            file_name: "行政区划.xlsx".into(),
            file_sha256: "ab".repeat(32),
            file_bytes: 10,
            phase,
            phase_zh: phase.label_zh(),
            rows_read: 30,
            rows_validated: 30,
            items_applied: 0,
            items_to_apply: 0,
            error: None,
            can_apply: false,
            preview,
            run: None,
        }
    }

    #[test]
    fn the_preview_lists_bad_rows_and_missing_villages_and_offers_no_apply() {
        let preview = AreaPreview {
            data_rows: 3,
            bad_rows: 1,
            issues: vec![AreaIssue {
                row_number: 4,
                column: "统计用区划代码".into(),
                kind: IssueKind::DuplicateCode,
                reason: "代码522731101201与第3行重复".into(),
                reason_en: "row 4, code: duplicate".into(),
            }],
            missing: vec![MissingArea {
                area_id: "522731101202".into(),
                name: "老寨村".into(),
                level: AreaLevel::Village,
            }],
            ..AreaPreview::default()
        };
        let page = progress_page(&admin(), &job(JobPhase::Ready, Some(preview))).into_string();
        assert!(page.contains("与第3行重复"));
        assert!(page.contains("文件中缺少的村") && page.contains("老寨村"));
        assert!(!page.contains("确认导入"));
        assert!(!page.contains("http-equiv"));
    }

    #[test]
    fn the_hierarchy_indents_villages_and_shows_attributes_in_words() {
        let mut village = AreaEntry {
            area_id: "522731101201".into(),
            name: "新寨村".into(),
            level: AreaLevel::Village,
            parent_id: Some("522731101000".into()),
            centre: None,
            attributes: VillageAttributes::default(),
        };
        village.attributes.is_poor_village = Some(true);
        village.attributes.collective_income_yuan = Some(125_000);
        let township = AreaEntry {
            area_id: "522731101000".into(),
            name: "城关镇".into(),
            level: AreaLevel::Township,
            parent_id: Some("522731000000".into()),
            centre: None,
            attributes: VillageAttributes::default(),
        };
        let page = hierarchy_page(&admin(), &[township, village]).into_string();
        assert!(page.contains("城关镇") && page.contains("新寨村"));
        assert!(page.contains("贫困村") && page.contains("12.5万元"));
        let empty = hierarchy_page(&admin(), &[]).into_string();
        assert!(empty.contains("尚未导入乡镇和行政村"));
    }
}
