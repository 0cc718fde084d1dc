//! Roster import pages (花名册导入) for the county administrator (县级管理员), and their
//! JSON twin. The use case lives in [`crate::roster_import`]; this file only reads the
//! multipart upload, renders the pages and maps errors.
//!
//! Routes:
//! - `GET /console/import`: upload form, template link, the county's applied imports
//! - `GET /console/import/template.xlsx`: the empty template (rust_xlsxwriter)
//! - `POST /console/import` (multipart, field `file`): start the dry run → 303 to the job
//! - `GET /console/import/{job_id}`: progress (进度; refreshes itself every second while
//!   running), then the preview: counts, bad rows, a sample of changes, the apply button
//! - `POST /console/import/{job_id}/apply`: apply a clean preview → 303 to the job
//! - JSON: `POST /console/api/import` (multipart) → 202 with the job,
//!   `GET /console/api/import/{job_id}[?wait=true]` (wait: answer once the job stops
//!   running, at most 60 s), `POST /console/api/import/{job_id}/apply` → 202 with the job

use std::time::Duration;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::access::mask_phone;
use fieldsync_model::id_number;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::display::beijing_minutes;
use super::fields::{field_label_zh, value_zh};
use super::views::{Nav, layout};
use super::{ApiCountyAdmin, ApiError, ConsoleError, ConsoleState, CountyAdmin};
use crate::error::ServiceError;
use crate::import_jobs;
use crate::roster_import::{
    self, ImportFileError, JobPhase, JobView, MAX_IMPORT_BYTES, RosterImport, Upload,
};
use crate::store::{ImportRun, Principal};

/// Path of the upload page.
pub const IMPORT_PATH: &str = "/console/import";

/// Request bodies of the upload routes may hold a whole register (plus multipart framing);
/// the exact file limit is checked while reading, with a typed error.
pub const UPLOAD_BODY_LIMIT: usize = MAX_IMPORT_BYTES + 1024 * 1024;

/// Longest a `?wait=true` request holds before answering with the job as it is.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// Issues listed on the preview page (the JSON twin lists all).
const LISTED_ISSUES: usize = 1_000;

/// Read the `file` part of a multipart upload, refusing more than [`MAX_IMPORT_BYTES`]
/// (the area import reads its uploads with it too).
pub(super) async fn read_upload(
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Upload, ServiceError> {
    let mut multipart = multipart.map_err(|rejection| {
        ServiceError::invalid(
            "file",
            format!("请以 multipart/form-data 上传文件（{rejection}）"),
        )
    })?;
    let broken = |error: axum::extract::multipart::MultipartError| {
        ServiceError::invalid("file", format!("上传中断或格式错误（{error}）"))
    };
    while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
        if field.name() != Some("file") {
            continue;
        }
        let file_name = field.file_name().unwrap_or("").to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            if bytes.len() + chunk.len() > MAX_IMPORT_BYTES {
                return Err(ImportFileError::TooLarge {
                    limit_mib: MAX_IMPORT_BYTES / (1024 * 1024),
                }
                .into());
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Upload { file_name, bytes });
    }
    Err(ServiceError::invalid("file", "请选择要上传的文件"))
}

/// `GET /console/import`.
pub async fn import_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
) -> Result<Response, ConsoleError> {
    let runs = roster_import::recent_runs(&state.app, &principal).await?;
    Ok(upload_page(&principal, &runs, None).into_response())
}

/// `GET /console/import/template.xlsx`.
pub async fn template(CountyAdmin(_principal): CountyAdmin) -> Result<Response, ConsoleError> {
    let bytes = tokio::task::spawn_blocking(roster_import::template_xlsx)
        .await
        .map_err(|_| ServiceError::Internal)?
        .map_err(|error| {
            tracing::error!(%error, "roster template could not be written");
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
                HeaderValue::from_static(
                    "attachment; filename=\"roster-template.xlsx\"; filename*=UTF-8''%E8%8A%B1%E5%90%8D%E5%86%8C%E5%AF%BC%E5%85%A5%E6%A8%A1%E6%9D%BF.xlsx",
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /console/import`: a bad file re-renders the form with the reason (nothing stored).
pub async fn upload(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ConsoleError> {
    let started = match read_upload(multipart).await {
        Ok(upload) => import_jobs::start::<RosterImport>(&state.app, &principal, upload).await,
        Err(error) => Err(error),
    };
    match started {
        Ok(view) => Ok(Redirect::to(&format!("{IMPORT_PATH}/{}", view.job_id)).into_response()),
        Err(ServiceError::InvalidArgument { message, .. }) => {
            let runs = roster_import::recent_runs(&state.app, &principal).await?;
            Ok((
                StatusCode::BAD_REQUEST,
                upload_page(&principal, &runs, Some(&message)),
            )
                .into_response())
        }
        Err(other) => Err(ConsoleError::with_back_link(other, IMPORT_PATH)),
    }
}

/// `GET /console/import/{job_id}`.
pub async fn job_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(job_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let view = import_jobs::view::<RosterImport>(&state.app, &principal, &job_id, None)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, IMPORT_PATH))?;
    let page = progress_page(&principal, &view);
    if view.phase.is_running() {
        // The header and the meta tag both refresh; no JavaScript is needed.
        Ok(([(header::REFRESH, HeaderValue::from_static("1"))], page).into_response())
    } else {
        Ok(page.into_response())
    }
}

/// `POST /console/import/{job_id}/apply`.
pub async fn apply(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(job_id): Path<String>,
) -> Result<Redirect, ConsoleError> {
    let back = format!("{IMPORT_PATH}/{job_id}");
    import_jobs::start_apply::<RosterImport>(&state.app, &principal, &job_id)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back.clone()))?;
    Ok(Redirect::to(&back))
}

/// `POST /console/api/import`.
pub async fn api_upload(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let upload = read_upload(multipart).await?;
    let view = import_jobs::start::<RosterImport>(&state.app, &principal, upload).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Query of the JSON job view.
#[derive(Debug, Default, Deserialize)]
pub struct JobQuery {
    /// `true` or `1`: answer once the job stops running (at most [`LONGEST_WAIT`]). Text,
    /// so that another value is a typed 400 rather than axum's plain-text rejection.
    #[serde(default)]
    wait: Option<String>,
}

impl JobQuery {
    /// Whether the caller asked to wait; another value than true/false/1/0 is a typed 400.
    pub(super) fn wants_wait(&self) -> Result<bool, ApiError> {
        match self.wait.as_deref().map(str::trim) {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(ApiError(ServiceError::invalid(
                "wait",
                "应为 true 或 false (expected true or false)",
            ))),
        }
    }
}

/// `GET /console/api/import/{job_id}[?wait=true]`.
pub async fn api_job(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    Path(job_id): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Json<JobView>, ApiError> {
    let wait = query.wants_wait()?.then_some(LONGEST_WAIT);
    Ok(Json(
        import_jobs::view::<RosterImport>(&state.app, &principal, &job_id, wait).await?,
    ))
}

/// `POST /console/api/import/{job_id}/apply`.
pub async fn api_apply(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let view = import_jobs::start_apply::<RosterImport>(&state.app, &principal, &job_id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

// ---- views ---------------------------------------------------------------------------------

/// A change value in words, masked for the sensitive fields (DESIGN §7: lists mask ID and
/// phone numbers).
fn change_value_zh(field: &str, value: &Value) -> String {
    match (field, value.as_str()) {
        ("phone", Some(phone)) if !phone.is_empty() => mask_phone(phone),
        ("id_number", Some(number)) => id_number::mask(number),
        _ => value_zh(field, value),
    }
}

fn upload_page(principal: &Principal, runs: &[ImportRun], error: Option<&str>) -> Markup {
    layout(
        "花名册导入",
        Some(principal),
        Nav::Import,
        html! {
            h1 { "花名册导入（建档立卡）" }
            @if let Some(error) = error {
                div.notice.error role="alert" { "文件未导入，系统数据未作任何改动：" (error) }
            }
            section.card {
                p {
                    "上传建档立卡花名册（XLSX 或 UTF-8 编码的 CSV），每行一名家庭成员，户信息在同户各行重复。"
                    "表头按列名识别，列的顺序不限。上传后先做预览（不写入），确认无误后再导入。"
                }
                p { a href="/console/import/template.xlsx" { "下载导入模板（XLSX）" } }
                form.import method="post" action=(IMPORT_PATH) enctype="multipart/form-data" {
                    // The CSRF token goes first: the guard stops parsing the upload once it has it.
                    (super::csrf::form_field())
                    label { "花名册文件 " input type="file" name="file" accept=".xlsx,.csv" required; }
                    button.primary type="submit" { "上传并预览" }
                }
            }
            h2 { "已导入记录" }
            @if runs.is_empty() {
                p.muted { "尚无导入记录。" }
            } @else {
                table {
                    thead { tr {
                        th { "导入时间" } th { "导入人" } th { "文件" } th { "数据行" } th { "新增户" }
                        th { "新增成员" } th { "变更字段" } th { "无变化行" } th { "SHA-256" }
                    } }
                    tbody {
                        @for run in runs {
                            tr {
                                td { (beijing_minutes(run.applied_at)) }
                                td { (run.applied_by_name) }
                                td { (run.file_name) }
                                td.num { (run.data_rows) }
                                td.num { (run.households_created) }
                                td.num { (run.members_created) }
                                td.num { (run.fields_changed) }
                                td.num { (run.unchanged_rows) }
                                td { code { (run.file_sha256.chars().take(12).collect::<String>()) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The validation bar's value: the rows validated so far while the job runs, and all rows
/// read once validation is over (a finished dry run never shows a bar short of 100 %); a
/// job that failed shows where it stopped.
fn validated_for_bar(view: &JobView) -> u64 {
    let validation_over = !matches!(
        view.phase,
        JobPhase::Reading | JobPhase::Validating | JobPhase::Failed
    );
    if validation_over && view.error.is_none() {
        view.rows_read
    } else {
        view.rows_validated.min(view.rows_read)
    }
}

fn progress_page(principal: &Principal, view: &JobView) -> Markup {
    layout(
        "导入进度",
        Some(principal),
        Nav::Import,
        html! {
            @if view.phase.is_running() {
                meta http-equiv="refresh" content="1";
            }
            h1 { "花名册导入：" (view.file_name) }
            section.card.import-progress {
                table.kv {
                    tr { th { "阶段" } td { strong { (view.phase_zh) } } }
                    tr { th { "已读取行数" } td { (view.rows_read) } }
                    tr { th { "已校验行数" } td {
                        (view.rows_validated)
                        @if view.rows_read > 0 {
                            " " progress max=(view.rows_read) value=(validated_for_bar(view)) {}
                        }
                    } }
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
                p { a href=(IMPORT_PATH) { "返回重新上传" } }
            }
            @if let Some(run) = &view.run {
                div.notice.info role="status" {
                    "已导入：新增 " (run.households_created) " 户、" (run.members_created) " 名成员，变更 "
                    (run.fields_changed) " 个字段。变更已作为字段修改同步到帮扶干部手机。"
                }
                p { a href=(IMPORT_PATH) { "返回导入页" } }
            }
            @if let Some(preview) = &view.preview {
                h2 { "预览" }
                table.kv.import-counts {
                    tr { th { "数据行" } td { (preview.data_rows) } }
                    tr { th { "新增户" } td { (preview.new_households) } }
                    tr { th { "新增成员" } td { (preview.new_members) } }
                    tr { th { "变更字段" } td { (preview.changed_fields) } }
                    tr { th { "无变化行" } td { (preview.unchanged_rows) } }
                    tr { th { "错误行" } td { (preview.bad_rows) } }
                }
                @if preview.no_changes && view.run.is_none() {
                    div.notice.info role="status" { "无变化：文件与系统中的数据一致，无需导入。" }
                }
                @if preview.bad_rows > 0 {
                    div.notice.error role="alert" {
                        "文件中有 " (preview.bad_rows) " 行错误。请修正后重新上传；存在错误时不能导入，系统数据未作任何改动。"
                    }
                    table.import-issues {
                        thead { tr { th { "行号" } th { "列" } th { "原因" } } }
                        tbody {
                            @for issue in preview.issues.iter().take(LISTED_ISSUES) {
                                tr { td.num { (issue.row_number) } td { (issue.column) } td { (issue.reason) } }
                            }
                        }
                    }
                    @if preview.issues.len() > LISTED_ISSUES {
                        p.muted { "仅显示前 " (LISTED_ISSUES) " 条，共 " (preview.issues.len()) " 条。" }
                    }
                }
                @if !preview.sample_changes.is_empty() {
                    h3 { "变更示例（前 " (preview.sample_changes.len()) " 项）" }
                    table.import-changes {
                        thead { tr { th { "行号" } th { "户编号" } th { "对象" } th { "字段" } th { "原值" } th { "新值" } } }
                        tbody {
                            @for change in &preview.sample_changes {
                                tr {
                                    td.num { (change.row_number) }
                                    td { (change.national_household_number) }
                                    td { (change.subject) }
                                    td { (field_label_zh(&change.field)) }
                                    td { (change_value_zh(&change.field, &change.old_value)) }
                                    td { (change_value_zh(&change.field, &change.new_value)) }
                                }
                            }
                        }
                    }
                }
                @if view.can_apply {
                    form method="post" action=(format!("{IMPORT_PATH}/{}/apply", view.job_id)) {
                        (super::csrf::form_field())
                        button.primary type="submit" {
                            "确认导入（写入 " (view.items_to_apply) " 项）"
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
    use crate::roster_import::Preview;
    use fieldsync_model::codes::Role;

    fn admin() -> Principal {
        Principal {
            user_id: "u-county".into(),
            display_name: "县管理员".into(),
            role: Role::County,
            area_id: "county".into(),
            device_id: "console".into(),
        }
    }

    fn job(phase: JobPhase, preview: Option<Preview>) -> JobView {
        JobView {
            job_id: "job-1".into(),
            file_name: "花名册.xlsx".into(),
            file_sha256: "ab".repeat(32),
            file_bytes: 10,
            phase,
            phase_zh: phase.label_zh(),
            rows_read: 1_200,
            rows_validated: 600,
            items_applied: 0,
            items_to_apply: 0,
            error: None,
            preview,
            run: None,
            can_apply: false,
        }
    }

    #[test]
    fn a_running_job_refreshes_itself_and_a_finished_one_does_not() {
        let running = progress_page(&admin(), &job(JobPhase::Validating, None)).into_string();
        assert!(running.contains(r#"http-equiv="refresh" content="1""#));
        assert!(running.contains("逐行校验") && running.contains("1200"));
        let unchanged = Preview {
            data_rows: 3,
            unchanged_rows: 3,
            no_changes: true,
            ..Preview::default()
        };
        let done = progress_page(&admin(), &job(JobPhase::Ready, Some(unchanged))).into_string();
        assert!(!done.contains("http-equiv"));
        assert!(done.contains("无变化"));
        // Done: the bar is full even when the last progress report was short of the total.
        assert!(
            done.contains(r#"<progress max="1200" value="1200">"#),
            "{done}"
        );
        assert!(
            running.contains(r#"<progress max="1200" value="600">"#),
            "{running}"
        );
        assert!(!done.contains("确认导入"), "nothing to apply");
    }

    #[test]
    fn phone_and_id_numbers_are_masked_in_the_change_list() {
        assert_eq!(
            change_value_zh("id_number", &Value::from("11010519491231002X")),
            "110105********002X"
        );
        assert_eq!(change_value_zh("phone", &Value::from("")), "");
        assert_eq!(change_value_zh("name", &Value::from("王大山")), "王大山");
    }
}
