//! 帮扶干部花名册导入 (cadre roster import) pages for the county administrator: upload, the
//! dry run (new cadres, cadres who already have accounts, bad cells by row and column),
//! apply, and the one-time passwords as a printable table and an audited XLSX download.
//!
//! Routes: `GET|POST /console/cadres/import`, `GET /console/cadres/import/template.xlsx`,
//! `GET /console/cadres/import/{plan_id}`, `POST /console/cadres/import/{plan_id}/apply`,
//! `GET /console/cadres/import/{plan_id}/passwords.xlsx`.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::codes::CodeList;
use fieldsync_model::id_number;
use maud::{Markup, html};

use super::views::{Nav, layout};
use super::{ConsoleError, ConsoleState, CountyAdmin};
use crate::cadre_import::{self, CadrePlan, Credential};
use crate::error::ServiceError;
use crate::store::Principal;

/// Path of the upload page.
pub const CADRE_IMPORT_PATH: &str = "/console/cadres/import";

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn plan_path(plan_id: &str) -> String {
    format!(
        "{CADRE_IMPORT_PATH}/{}",
        super::sessions::utf8_percent_encode_path(plan_id)
    )
}

/// `GET /console/cadres/import`.
pub async fn upload_page(CountyAdmin(principal): CountyAdmin) -> Response {
    render_upload(&principal, None).into_response()
}

/// `GET /console/cadres/import/template.xlsx`.
pub async fn template(CountyAdmin(_principal): CountyAdmin) -> Result<Response, ConsoleError> {
    let bytes = tokio::task::spawn_blocking(cadre_import::template_xlsx)
        .await
        .map_err(|_| ServiceError::Internal)?
        .map_err(|error| {
            tracing::error!(%error, "cadre template could not be written");
            ServiceError::Internal
        })?;
    Ok(xlsx_response(
        bytes,
        "attachment; filename=\"cadre-roster-template.xlsx\"",
    ))
}

fn xlsx_response(bytes: Vec<u8>, disposition: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(XLSX_TYPE)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(disposition),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response()
}

/// `POST /console/cadres/import`: dry run; a bad file re-renders the form with the reason.
pub async fn upload(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ConsoleError> {
    let checked = match super::roster::read_upload(multipart).await {
        Ok(upload) => cadre_import::dry_run(&state.app, &principal, upload).await,
        Err(error) => Err(error),
    };
    match checked {
        Ok(plan) => Ok(Redirect::to(&plan_path(&plan.plan_id)).into_response()),
        Err(ServiceError::InvalidArgument { message, .. }) => Ok((
            StatusCode::BAD_REQUEST,
            render_upload(&principal, Some(&message)),
        )
            .into_response()),
        Err(other) => Err(ConsoleError::with_back_link(other, CADRE_IMPORT_PATH)),
    }
}

/// `GET /console/cadres/import/{plan_id}`: the dry run, or the passwords once applied.
pub async fn plan_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(plan_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let (plan, credentials) = cadre_import::credentials_shown(&state.app, &principal, &plan_id)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, CADRE_IMPORT_PATH))?;
    Ok(match credentials {
        Some(credentials) => render_passwords(&principal, &plan, &credentials),
        None => render_preview(&principal, &plan, None),
    }
    .into_response())
}

/// `POST /console/cadres/import/{plan_id}/apply`.
pub async fn apply(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(plan_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let plan = cadre_import::plan(&state.app, &principal, &plan_id)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, CADRE_IMPORT_PATH))?;
    match cadre_import::apply(&state.app, &principal, &plan_id).await {
        Ok(_) => Ok(Redirect::to(&plan_path(&plan_id)).into_response()),
        Err(ServiceError::InvalidArgument { message, .. }) => Ok((
            StatusCode::CONFLICT,
            render_preview(&principal, &plan, Some(&message)),
        )
            .into_response()),
        Err(other) => Err(ConsoleError::with_back_link(other, plan_path(&plan_id))),
    }
}

/// `GET /console/cadres/import/{plan_id}/passwords.xlsx`: audited download.
pub async fn passwords_xlsx(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(plan_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let bytes = cadre_import::credentials_xlsx(&state.app, &principal, &plan_id)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, plan_path(&plan_id)))?;
    Ok(xlsx_response(
        bytes,
        "attachment; filename=\"cadre-one-time-passwords.xlsx\"",
    ))
}

fn render_upload(principal: &Principal, error: Option<&str>) -> Markup {
    layout(
        "帮扶干部花名册导入",
        Some(principal),
        Nav::Accounts,
        html! {
            section.card {
                h1 { "帮扶干部花名册导入" }
                p.muted { "上传 XLSX 或 CSV（UTF-8）花名册：先预览，确认后为每位新干部创建账号（用户名为手机号），并生成一次性密码。已有账号的干部（按身份证号）自动跳过，重复导入不会重复创建。" }
                p { a href=(format!("{CADRE_IMPORT_PATH}/template.xlsx")) { "下载导入模板" } }
                @if let Some(error) = error {
                    div.notice.error role="alert" { (error) }
                }
                form method="post" action=(CADRE_IMPORT_PATH) enctype="multipart/form-data" {
                    (super::csrf::form_field())
                    label { "花名册文件" input type="file" name="file" accept=".xlsx,.csv" required; }
                    button.primary type="submit" { "上传并预览" }
                }
                p { a href=(super::accounts::ACCOUNTS_PATH) { "返回账号管理" } }
            }
        },
    )
}

fn render_preview(principal: &Principal, plan: &CadrePlan, error: Option<&str>) -> Markup {
    let check = &plan.check;
    layout(
        "花名册预览",
        Some(principal),
        Nav::Accounts,
        html! {
            section.card {
                h1 { "花名册预览：" (plan.file_name) }
                @if let Some(error) = error {
                    div.notice.error role="alert" { (error) }
                }
                p {
                    "共 " (check.rows) " 行：新建账号 " strong data-new-cadres { (check.new_cadres.len()) }
                    " 人，已有账号跳过 " strong data-existing-cadres { (check.existing.len()) }
                    " 人，有误未导入 " strong data-bad-rows { (check.bad_row_count()) } " 行。"
                }
                @if !check.issues.is_empty() {
                    h2 { "有误的行（修改后重新上传；其余行可先导入）" }
                    div.table-scroll {
                        table.issues {
                            thead { tr { th { "行号" } th { "列" } th { "问题" } } }
                            tbody {
                                @for issue in &check.issues {
                                    tr { td { (issue.row_number) } td { (issue.column) } td { (issue.reason) } }
                                }
                            }
                        }
                    }
                }
                @if !check.new_cadres.is_empty() {
                    h2 { "将新建的账号" }
                    div.table-scroll {
                        table {
                            thead { tr { th { "行号" } th { "姓名" } th { "用户名（手机号）" } th { "身份证号" } th { "乡镇" } th { "职级" } th { "帮扶单位" } th { "驻村工作队" } } }
                            tbody {
                                @for entry in &check.new_cadres {
                                    tr {
                                        td { (entry.row_number) }
                                        td { (entry.name) }
                                        td { (entry.mobile) }
                                        td { (id_number::mask(&entry.id_number)) }
                                        td { (plan.township_name(&entry.township_id)) }
                                        td { (entry.rank.map_or("无", |rank| rank.label_zh())) }
                                        td { (entry.unit) }
                                        td { (if entry.team_member { "是" } else { "否" }) }
                                    }
                                }
                            }
                        }
                    }
                    form method="post" action=(format!("{}/apply", plan_path(&plan.plan_id))) {
                        (super::csrf::form_field())
                        button.primary type="submit" { "确认导入 " (check.new_cadres.len()) " 个账号" }
                    }
                }
                @if !check.existing.is_empty() {
                    h2 { "已有账号（跳过）" }
                    ul {
                        @for (row_number, name, username) in &check.existing {
                            li { "第" (row_number) "行 " (name) "：已有账号 " (username) }
                        }
                    }
                }
                p { a href=(CADRE_IMPORT_PATH) { "重新上传" } }
            }
        },
    )
}

fn render_passwords(principal: &Principal, plan: &CadrePlan, credentials: &[Credential]) -> Markup {
    layout(
        "一次性密码",
        Some(principal),
        Nav::Accounts,
        html! {
            section.card {
                h1 { "已导入：" (credentials.len()) " 个新账号" }
                div.notice.info role="status" {
                    "以下一次性密码只保存在服务器内存中（重启后不再可得），请打印或下载后当面分发给本人；每位干部首次登录后必须修改密码。下载会记录审计日志。"
                }
                @if !credentials.is_empty() {
                    p {
                        a.button href=(format!("{}/passwords.xlsx", plan_path(&plan.plan_id))) { "下载一次性密码表（XLSX）" }
                        " "
                        button type="button" onclick="window.print()" { "打印" }
                    }
                    div.table-scroll {
                        table.credentials {
                            thead { tr { th { "行号" } th { "姓名" } th { "乡镇" } th { "用户名" } th { "一次性密码" } } }
                            tbody {
                                @for credential in credentials {
                                    tr {
                                        td { (credential.row_number) }
                                        td { (credential.name) }
                                        td { (credential.township) }
                                        td { (credential.username) }
                                        td { code data-one-time-password { (credential.one_time_password) } }
                                    }
                                }
                            }
                        }
                    }
                }
                p { a href=(super::accounts::ACCOUNTS_PATH) { "返回账号管理" } }
            }
        },
    )
}
