//! The household search (农户检索) pages: `GET /console/search?q=…` for the header's search
//! box on every page, and its JSON twin `GET /console/api/search?q=…`, for staff (township
//! supervisors, county admins, auditors). What a query means, the area scope and the masking
//! are the use case's ([`crate::search`]); this module renders.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::views::{Nav, household_name_link, layout};
use super::{ApiError, ApiStaff, ConsoleError, ConsoleState, Staff};
use crate::error::ServiceError;
use crate::search::{SearchResults, search};
use crate::store::Principal;

/// Path of the search page (the header's search form posts here with GET).
pub const SEARCH_PATH: &str = "/console/search";

/// The audit record's target for an auditor's search (every page an auditor opens is
/// audited): the path with the query, where a query that looks like an ID number is masked
/// as lists mask them, so the audit log never holds a whole ID number. `None` for other paths.
pub(super) fn audit_target(uri: &axum::http::Uri) -> Option<String> {
    let path = uri.path();
    if path != SEARCH_PATH && path != "/console/api/search" {
        return None;
    }
    let q = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "q")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let compact: String = q.chars().filter(|c| !c.is_whitespace()).collect();
    let id_like = compact.len() > 6
        && compact
            .chars()
            .all(|c| c.is_ascii_digit() || c.eq_ignore_ascii_case(&'x'));
    let shown = if id_like {
        fieldsync_model::id_number::mask(&compact)
    } else {
        q
    };
    Some(format!(
        "{path}?q={}",
        form_urlencoded::byte_serialize(shown.as_bytes()).collect::<String>()
    ))
}

/// `?q=` of both routes.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The header's search form: one box, no script; its placeholder says what it finds.
pub(super) fn search_form(value: &str) -> Markup {
    html! {
        form.search role="search" method="get" action=(SEARCH_PATH) {
            input type="search" name="q" value=(value) maxlength="40"
                placeholder="姓名 / 户编号 / 身份证后4位" aria-label="搜索农户：户主或成员姓名、拼音首字母、户编号或身份证号后几位";
            button.link type="submit" { "搜索" }
        }
    }
}

/// `GET /console/search?q=…`: the households found, or the reason a query cannot be read
/// (400). An empty query shows the explanation only.
pub async fn search_page(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Query(query): Query<SearchQuery>,
) -> Result<Response, ConsoleError> {
    if query.q.trim().is_empty() {
        return Ok(page(&principal, &query.q, None, None).into_response());
    }
    match search(&state.app, &principal, &query.q).await {
        Ok(results) => Ok(page(&principal, &query.q, Some(&results), None).into_response()),
        Err(ServiceError::InvalidArgument { message, .. }) => Ok((
            StatusCode::BAD_REQUEST,
            page(&principal, &query.q, None, Some(&message)),
        )
            .into_response()),
        Err(other) => Err(other.into()),
    }
}

/// `GET /console/api/search?q=…`: `{"households": [...], "truncated"}`; ID numbers masked
/// (the query is not echoed: it may be a whole ID number). A query that cannot be read is a
/// 400 naming `q`.
pub async fn search_json(
    State(state): State<ConsoleState>,
    ApiStaff(principal): ApiStaff,
    Query(query): Query<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let results = search(&state.app, &principal, &query.q).await?;
    let households: Vec<serde_json::Value> = results
        .hits
        .iter()
        .map(|hit| {
            serde_json::json!({
                "household_id": hit.household_id,
                "head_name": hit.head_name,
                "township_name": hit.township_name,
                "village_name": hit.village_name,
                "national_household_number": hit.national_household_number,
                "url": super::views::household_path(&hit.household_id),
                "matched_members": hit.matched_members.iter().map(|member| serde_json::json!({
                    "name": member.name,
                    "relation": member.relation,
                    "id_number_masked": member.id_number_masked,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "households": households,
        "truncated": results.truncated,
    })))
}

fn page(
    principal: &Principal,
    text: &str,
    results: Option<&SearchResults>,
    error: Option<&str>,
) -> Markup {
    layout(
        "搜索农户",
        Some(principal),
        Nav::None,
        html! {
            h1 { "搜索农户" }
            section.card.search-page {
                (search_form(text))
                p.muted { "可按户主或家庭成员姓名（可只输入名字的一部分，或拼音首字母，如 wxm）、户编号（至少4位数字）或身份证号后4–6位、完整身份证号查找。只查找您负责范围内的农户；身份证号一律脱敏显示。" }
            }
            @if let Some(error) = error {
                div.notice.error role="alert" { (error) }
            }
            @if let Some(results) = results {
                @if results.hits.is_empty() {
                    section.card #search-results { p.muted { "没有找到符合“" (text.trim()) "”的农户。" } }
                } @else {
                    section.card #search-results {
                        h2 { "找到 " (results.hits.len()) @if results.truncated { "+" } " 户" }
                        @if results.truncated {
                            p.notice.warn { "结果较多，仅显示前 " (results.hits.len()) " 户，请输入更完整的姓名或号码。" }
                        }
                        table.search-results {
                            thead { tr { th { "户主" } th { "乡镇" } th { "村" } th { "户编号" } th { "匹配的成员" } } }
                            tbody {
                                @for hit in &results.hits {
                                    tr {
                                        td { (household_name_link(&hit.household_id, &hit.head_name)) }
                                        td { (hit.township_name) }
                                        td { (hit.village_name) }
                                        td { code { (hit.national_household_number) } }
                                        td {
                                            @for member in &hit.matched_members {
                                                div { (member.name) "（" (member.relation) "） " code { (member.id_number_masked) } }
                                            }
                                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_auditors_search_for_an_id_number_is_audited_masked() {
        let target = |uri: &str| audit_target(&uri.parse().expect("uri"));
        assert_eq!(
            target("/console/search?q=11010519491231002X").as_deref(),
            Some("/console/search?q=110105********002X")
        );
        assert_eq!(
            target("/console/api/search?q=%E7%8E%8B%E5%B0%8F").as_deref(),
            Some("/console/api/search?q=%E7%8E%8B%E5%B0%8F"),
            "names are kept"
        );
        assert_eq!(
            target("/console/search?q=1234").as_deref(),
            Some("/console/search?q=1234"),
            "a tail shows no more than the masked form"
        );
        assert_eq!(target("/console/queue?q=110105194912310021"), None);
    }
}
