//! Console handlers for households, income and the 两不愁三保障 checklist (issue 5 items
//! 3–5). Use cases and scope checks live in [`crate::households`]; HTML in
//! [`super::households_views`].
//!
//! Routes:
//! - `GET /console/income[?year=YYYY][&village=ID]` (staff): 收入监测, quarters, projection,
//!   line used and flag per household, flagged first.
//! - `GET /console/wellbeing[?village=ID][&item=CODE|any]` (staff): failing-household counts
//!   by village and item; a village and/or item lists the households behind the count.
//! - `GET /console/thresholds`, `POST /console/thresholds` (county admin): 标准线 per year and
//!   region.
//! - `GET /console/households/{household_id}` (staff): the household page.
//! - `GET /console/households/{household_id}/card` (staff): the printable 明白卡.
//! - `GET /console/api/households/{household_id}` (staff, JSON): the household page's data,
//!   with ID numbers and phone numbers masked.

use axum::Form;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::access::{Disclosure, disclose_household, mask_phone};
use fieldsync_model::income::IncomeThreshold;
use serde::Deserialize;
use serde_json::{Value, json};

use super::households_views::{self as views, ThresholdFormValues};
use super::{
    ApiError, ApiReviewer, ApiStaff, ConsoleError, ConsoleState, CountyAdmin, Reviewer, Staff,
};
use crate::error::ServiceError;
use crate::households;
use crate::text::non_empty;

/// Path of the thresholds page.
pub const THRESHOLDS_PATH: &str = "/console/thresholds";

/// Query of the income page. Kept as text so a malformed year is answered with the
/// console's own typed error instead of a bare 400 from the extractor.
#[derive(Debug, Default, Deserialize)]
pub struct IncomeQuery {
    #[serde(default)]
    year: Option<String>,
    #[serde(default)]
    village: Option<String>,
}

fn parse_year(text: Option<&str>) -> Result<Option<i32>, ServiceError> {
    match non_empty(text) {
        None => Ok(None),
        Some(text) => text.parse::<i32>().map(Some).map_err(|_| {
            ServiceError::invalid(
                "year",
                format!("年度应为四位数字 (year {text:?} is not a number)"),
            )
        }),
    }
}

/// `GET /console/income`.
pub async fn income(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Query(query): Query<IncomeQuery>,
) -> Result<Response, ConsoleError> {
    let back = "/console/income";
    let year = parse_year(query.year.as_deref())
        .map_err(|error| ConsoleError::with_back_link(error, back))?;
    let overview = households::income_overview(
        &state.app,
        &principal,
        year,
        non_empty(query.village.as_deref()),
    )
    .await
    .map_err(|error| ConsoleError::with_back_link(error, back))?;
    Ok(views::income_page(&principal, &overview).into_response())
}

/// Query of the checklist page.
#[derive(Debug, Default, Deserialize)]
pub struct WellbeingQuery {
    #[serde(default)]
    village: Option<String>,
    #[serde(default)]
    item: Option<String>,
}

/// `GET /console/wellbeing`.
pub async fn wellbeing(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Query(query): Query<WellbeingQuery>,
) -> Result<Response, ConsoleError> {
    let back = "/console/wellbeing";
    let item = households::parse_item(query.item.as_deref())
        .map_err(|error| ConsoleError::with_back_link(error, back))?;
    let village = non_empty(query.village.as_deref());
    let listing = village.is_some() || non_empty(query.item.as_deref()).is_some();
    let overview = households::wellbeing_overview(&state.app, &principal, village, item, listing)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back))?;
    let rules = &state.app.settings.wellbeing;
    let rules_text = format!(
        "规则：义务教育按{}—{}周岁（以当学年9月1日计）核查在校情况{}；基本医疗要求全部成员参加基本医疗保险{}；住房C级、D级为不安全；\
         不愁吃、不愁穿、饮水安全以最近一次走访的核查结果为准。",
        rules.school_age_min,
        rules.school_age_max,
        if rules.education_exempt_max_disability_grade > 0 {
            format!(
                "（{}级及以上重度残疾送教上门、患大病者不计为辍学）",
                rules.education_exempt_max_disability_grade
            )
        } else {
            String::new()
        },
        if rules.require_serious_illness_insurance {
            "和大病保险"
        } else {
            ""
        },
    );
    Ok(views::wellbeing_page(&principal, &overview, &rules_text).into_response())
}

/// Query of the thresholds page after a save.
#[derive(Debug, Default, Deserialize)]
pub struct ThresholdsQuery {
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /console/thresholds`.
pub async fn thresholds(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Query(query): Query<ThresholdsQuery>,
) -> Result<Response, ConsoleError> {
    let view = households::thresholds(&state.app, &principal).await?;
    let notice = query
        .saved
        .as_deref()
        .map(|saved| format!("已保存 {saved} 的标准线。"));
    let form = ThresholdFormValues::for_year(households::beijing_today(&state.app).year());
    Ok(views::thresholds_page(&principal, &view, notice.as_deref(), None, &form).into_response())
}

/// Fields of the thresholds form; all text, parsed by [`parse_threshold_form`].
#[derive(Debug, Default, Deserialize)]
pub struct ThresholdForm {
    #[serde(default)]
    year: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    poverty_line_yuan: String,
    #[serde(default)]
    monitoring_line_yuan: String,
    #[serde(default)]
    source_note: String,
}

/// Turn the form into a row; an empty line means "not set by this region".
fn parse_threshold_form(form: &ThresholdForm) -> Result<IncomeThreshold, ServiceError> {
    let year = form.year.trim().parse::<i32>().map_err(|_| {
        ServiceError::invalid(
            "year",
            format!("年度应为四位数字 (year {:?} is not a number)", form.year),
        )
    })?;
    let line = |field: &'static str, text: &str| -> Result<Option<i64>, ServiceError> {
        let text = text.trim().replace([',', '，'], "");
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<i64>().map(Some).map_err(|_| {
            ServiceError::invalid(
                field,
                format!("应为整数元 (must be whole yuan, got {text:?})"),
            )
        })
    };
    Ok(IncomeThreshold {
        year,
        region: form.region.trim().to_owned(),
        poverty_line_yuan: line("poverty_line_yuan", &form.poverty_line_yuan)?,
        monitoring_line_yuan: line("monitoring_line_yuan", &form.monitoring_line_yuan)?,
        source_note: form.source_note.trim().to_owned(),
    })
}

/// `POST /console/thresholds`: save one row, then back to the page (303). A bad form is
/// shown again with the error (400) and nothing is stored.
pub async fn save_threshold(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Form(form): Form<ThresholdForm>,
) -> Result<Response, ConsoleError> {
    let outcome = match parse_threshold_form(&form) {
        Ok(threshold) => {
            let saved = format!("{}年 {}", threshold.year, threshold.region);
            households::set_threshold(&state.app, &principal, threshold)
                .await
                .map(|()| saved)
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(saved) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("saved", &saved)
                .finish();
            Ok(Redirect::to(&format!("{THRESHOLDS_PATH}?{query}")).into_response())
        }
        Err(ServiceError::InvalidArgument { field, message }) => {
            let view = households::thresholds(&state.app, &principal).await?;
            let values = ThresholdFormValues {
                year: form.year,
                region: form.region,
                poverty_line_yuan: form.poverty_line_yuan,
                monitoring_line_yuan: form.monitoring_line_yuan,
                source_note: form.source_note,
            };
            let error = format!("未保存：{message}（{field}）");
            Ok((
                StatusCode::BAD_REQUEST,
                views::thresholds_page(&principal, &view, None, Some(&error), &values),
            )
                .into_response())
        }
        Err(other) => Err(ConsoleError::with_back_link(other, THRESHOLDS_PATH)),
    }
}

/// `GET /console/households/{household_id}`.
pub async fn household(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Path(household_id): Path<String>,
    Query(query): Query<HouseholdQuery>,
) -> Result<Response, ConsoleError> {
    let page = households::household_page(&state.app, &principal, &household_id).await?;
    Ok(views::household_page(&principal, &page, query.settled.is_some()).into_response())
}

/// Query of the household page.
#[derive(Debug, Default, Deserialize)]
pub struct HouseholdQuery {
    /// Present after an income disagreement was settled.
    #[serde(default)]
    settled: Option<String>,
}

/// Form of the income settle button.
#[derive(Debug, Default, Deserialize)]
pub struct SettleForm {
    #[serde(default)]
    registration_id: String,
}

/// `POST /console/households/{household_id}/income/settle` (township supervisors): keep one
/// of two disagreeing registrations of a quarter as the one in force.
pub async fn settle_income(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Path(household_id): Path<String>,
    Form(form): Form<SettleForm>,
) -> Result<Response, ConsoleError> {
    let back = format!("/console/households/{household_id}");
    households::settle_income_disagreement(
        &state.app,
        &principal,
        &household_id,
        form.registration_id.trim(),
    )
    .await
    .map_err(|error| ConsoleError::with_back_link(error, back.clone()))?;
    Ok(Redirect::to(&format!("{back}?settled=1")).into_response())
}

/// `POST /console/api/households/{household_id}/income/settle` with
/// `{"registration_id": ...}`: the JSON twin; answers the new registration in force.
pub async fn settle_income_json(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    Path(household_id): Path<String>,
    body: Result<Json<SettleForm>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) =
        body.map_err(|rejection| ServiceError::invalid("body", rejection.body_text()))?;
    let settled = households::settle_income_disagreement(
        &state.app,
        &principal,
        &household_id,
        body.registration_id.trim(),
    )
    .await?;
    Ok(Json(json!({ "registration": settled })))
}

/// `GET /console/households/{household_id}/card`.
pub async fn household_card(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Path(household_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let page = households::household_page(&state.app, &principal, &household_id).await?;
    Ok(views::household_card(&principal, &page).into_response())
}

/// `GET /console/api/households/{household_id}`: the household page as JSON. ID numbers and
/// phone numbers are masked for every role.
pub async fn household_json(
    State(state): State<ConsoleState>,
    ApiStaff(principal): ApiStaff,
    Path(household_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let page = households::household_page(&state.app, &principal, &household_id).await?;
    Ok(Json(household_value(&page)))
}

fn household_value(page: &households::HouseholdPage) -> Value {
    let mut household = page.dossier.household.clone();
    // Masked for every role on the console (and the birth date cut to its year beside the
    // masked ID number), by the same rule as a staff pull.
    disclose_household(&mut household, Disclosure::Masked, Disclosure::Masked);
    household.members.retain(|member| !member.removed);
    let cadres: Vec<Value> = page
        .dossier
        .cadres
        .iter()
        .map(|cadre| {
            json!({
                "user_id": cadre.user_id,
                "display_name": cadre.display_name,
                "phone": mask_phone(&cadre.phone),
                "rank": cadre.rank,
                "is_primary": cadre.is_primary,
            })
        })
        .collect();
    let visits: Vec<Value> = page
        .dossier
        .visits
        .iter()
        .map(|item| {
            json!({
                "visit_id": item.visit.visit_id,
                "revision": item.visit.revision,
                "checkin_at": fieldsync_model::time_util::beijing_minutes(item.visit.checkin_at),
                "mode": item.visit.mode,
                "visit_type": item.visit.visit_type,
                "state": item.state.as_str(),
                "cadre_name": item.cadre_name,
                "url": format!("/console/visits/{}", item.visit.visit_id),
            })
        })
        .collect();
    let years: Vec<Value> = page
        .years
        .iter()
        .map(|income| {
            json!({
                "annual": income.annual,
                "lines": income.lines,
                "flag": income.flag,
                "unannounced_replacements": income.replacements,
            })
        })
        .collect();
    json!({
        "household": household,
        "cadres": cadres,
        "wellbeing": page.assessment,
        "income_projection_margin": page.margin,
        "income": years,
        "visits": visits,
        "open_conflicts": page.dossier.open_conflicts,
        "card_url": format!("/console/households/{}/card", page.dossier.household.household_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(year: &str, poverty: &str, monitoring: &str) -> ThresholdForm {
        ThresholdForm {
            year: year.into(),
            region: " national ".into(),
            poverty_line_yuan: poverty.into(),
            monitoring_line_yuan: monitoring.into(),
            source_note: " 文件 ".into(),
        }
    }

    #[test]
    fn the_threshold_form_parses_lines_and_names_bad_fields() {
        let row = parse_threshold_form(&form("2026", "", "7,000")).expect("valid");
        assert_eq!(row.year, 2026);
        assert_eq!(row.region, "national");
        assert_eq!(row.poverty_line_yuan, None);
        assert_eq!(row.monitoring_line_yuan, Some(7_000));
        assert_eq!(row.source_note, "文件");
        for (bad, field) in [
            (form("二〇二六", "1", ""), "year"),
            (form("2026", "4000.5", ""), "poverty_line_yuan"),
            (form("2026", "", "很多"), "monitoring_line_yuan"),
        ] {
            match parse_threshold_form(&bad) {
                Err(ServiceError::InvalidArgument { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_malformed_year_query_is_a_typed_error() {
        assert_eq!(parse_year(None).ok(), Some(None));
        assert_eq!(parse_year(Some(" ")).ok(), Some(None));
        assert_eq!(parse_year(Some("2025")).ok(), Some(Some(2025)));
        assert!(matches!(
            parse_year(Some("20x5")),
            Err(ServiceError::InvalidArgument { .. })
        ));
    }
}
