//! Console handlers of the ledger exports (台账导出). The use case (scope, masking, audit,
//! file building) lives in [`crate::export`].
//!
//! Routes (staff: township supervisor, county admin, auditor):
//! - `GET /console/exports`: the page listing the ledgers with month, year and quarter
//!   pickers (and, for the county admin, the audited 完整导出 checkbox).
//! - `GET /console/exports/{kind}.{xlsx|csv}?month=YYYY-MM` for `visits` (走访台账), `flags`
//!   (核验提示清单) and `coverage` (入户率), `?year=YYYY[&quarter=N]` for `income`
//!   (收入登记台账); `&full=1` (county admin only, audited) for full ID numbers and phones.
//!   Unknown kinds or formats are 404, bad parameters 400, `full=1` by other roles 403.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fieldsync_model::codes::Role;
use fieldsync_model::time_util::{BEIJING, business_month};
use maud::html;

use super::views::{Nav, layout};
use super::{ConsoleError, ConsoleState, Staff};
use crate::error::ServiceError;
use crate::export::{self, ExportKind, ExportQuery};

/// `GET /console/exports`.
pub async fn exports_page(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
) -> Result<Response, ConsoleError> {
    let now = state.app.clock.now();
    let month = business_month(now);
    let year = now.to_offset(BEIJING).year();
    let county_admin = principal.role == Role::County;
    let full_box = |kind: ExportKind| {
        html! {
            @if county_admin {
                label.full-export {
                    input type="checkbox" name="full" value="1";
                    " 导出完整身份证号和电话（将记录审计日志）"
                }
            }
            button type="submit" formaction=(format!("/console/exports/{}.xlsx", kind.as_str())) { "导出 XLSX" }
            " "
            button type="submit" formaction=(format!("/console/exports/{}.csv", kind.as_str())) { "导出 CSV" }
        }
    };
    let content = html! {
        h1 { "台账导出" }
        p.hint {
            "导出范围为本账号管辖区域。身份证号和电话默认脱敏（如 110105********1234、138****5678）；"
            "仅县级管理员可导出完整信息，每次完整导出都会写入审计日志。"
        }
        @for kind in [ExportKind::Visits, ExportKind::Flags, ExportKind::Coverage] {
            section.card.export {
                h2 { (kind.label_zh()) }
                form method="get" action=(format!("/console/exports/{}.xlsx", kind.as_str())) {
                    label { "月份 " input type="month" name="month" value=(month) required; }
                    " "
                    @if kind != ExportKind::Flags { (full_box(kind)) } @else {
                        button type="submit" formaction=(format!("/console/exports/{}.xlsx", kind.as_str())) { "导出 XLSX" }
                        " "
                        button type="submit" formaction=(format!("/console/exports/{}.csv", kind.as_str())) { "导出 CSV" }
                    }
                }
            }
        }
        section.card.export {
            h2 { (ExportKind::Income.label_zh()) }
            form method="get" action="/console/exports/income.xlsx" {
                label { "年度 " input type="number" name="year" min="2000" max="2999" value=(year) required; }
                " "
                label { "季度 "
                    select name="quarter" {
                        option value="" { "全年" }
                        @for quarter in 1..=4 { option value=(quarter) { "第" (quarter) "季度" } }
                    }
                }
                " "
                (full_box(ExportKind::Income))
            }
        }
    };
    Ok(layout("台账导出", Some(&principal), Nav::Exports, content).into_response())
}

/// `Content-Disposition` with an ASCII fallback and the Chinese name (RFC 6266 / 5987).
fn content_disposition(ascii_name: &str, utf8_name: &str) -> String {
    let mut encoded = String::new();
    for byte in utf8_name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}")
}

/// `GET /console/exports/{file}`: the file itself.
pub async fn export_file(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Path(file): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ConsoleError> {
    let back = "/console/exports";
    let request = export::parse_request(&file, &query, state.app.clock.now())
        .map_err(|error| ConsoleError::with_back_link(error, back))?;
    let file = export::export(&state.app, &principal, &request)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back))?;
    let disposition =
        HeaderValue::from_str(&content_disposition(&file.ascii_file_name, &file.file_name))
            .map_err(|_| ServiceError::Internal)?;
    let digest = HeaderValue::from_str(&file.sha256).map_err(|_| ServiceError::Internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::HeaderName::from_static("x-fieldsync-rows"),
                HeaderValue::from(file.row_count),
            ),
            (
                header::HeaderName::from_static("x-fieldsync-sha256"),
                digest,
            ),
        ],
        file.bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_file_names_are_percent_encoded() {
        let value = content_disposition("a.xlsx", "示范县-走访台账.xlsx");
        assert!(value.starts_with("attachment; filename=\"a.xlsx\"; filename*=UTF-8''"));
        assert!(value.contains("%E7%A4%BA"), "{value}");
        assert!(
            value.ends_with("-%E8%B5%B0%E8%AE%BF%E5%8F%B0%E8%B4%A6.xlsx"),
            "{value}"
        );
        assert!(value.is_ascii());
    }
}
