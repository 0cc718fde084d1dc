//! Household use cases of the console (issue 5 items 3–5): the household page and its
//! printable 明白卡, quarterly income (季登记) with the annual summary (年汇总) and the
//! projection flag, the income thresholds (标准线) and the 两不愁三保障 + 饮水安全 checklist.
//!
//! The rules are pure functions in `fieldsync_model::income` and `fieldsync_model::wellbeing`;
//! this module gathers their inputs from the store and enforces scope once: staff see the
//! households of their area (a supervisor's township, a county admin's or auditor's county),
//! and a household outside it is answered exactly like an unknown one.

use std::collections::{BTreeMap, HashMap};

use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::income::{
    self, AnnualIncome, INCOME_YEARS, IncomeFlag, IncomeRegistration, IncomeThreshold,
    ResolvedLine, UnannouncedReplacement,
};
use fieldsync_model::time_util::BEIJING;
use fieldsync_model::visit::WellbeingCheck;
use fieldsync_model::wellbeing::{self, WellbeingAssessment, WellbeingItem};
use time::Date;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{Area, HouseholdDossier, Principal};

/// The area a staff member sees, or a permission error for other roles.
pub fn staff_area(principal: &Principal) -> Result<&str, ServiceError> {
    match principal.role {
        Role::Township | Role::County | Role::Auditor => Ok(&principal.area_id),
        _ => Err(ServiceError::PermissionDenied(
            "只有乡镇审核员、县级管理员和审计员可以查看农户信息 (staff only)".into(),
        )),
    }
}

/// Today in Beijing time: ages, school years and the default income year count from it.
pub fn beijing_today(state: &AppState) -> Date {
    state.clock.now().to_offset(BEIJING).date()
}

/// The county a township belongs to (its parent area); a county is its own county.
async fn county_of(state: &AppState, area_id: &str) -> Result<String, ServiceError> {
    match state.store.get_area(area_id).await? {
        Some(area) if area.level == "county" => Ok(area.area_id),
        Some(area) => Ok(area.parent_id.unwrap_or(area.area_id)),
        None => Ok(area_id.to_owned()),
    }
}

/// Whether the household lies in the area: its township is the area or a township of it.
async fn household_in_area(
    state: &AppState,
    household: &Household,
    area_id: &str,
) -> Result<bool, ServiceError> {
    if household.township_id == area_id {
        return Ok(true);
    }
    Ok(state
        .store
        .get_area(&household.township_id)
        .await?
        .and_then(|township| township.parent_id)
        .is_some_and(|county| county == area_id))
}

/// The villages of the caller's area in area order (a county's: township by township).
pub async fn villages_of(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<Area>, ServiceError> {
    let area_id = staff_area(principal)?;
    let children = state.store.list_areas(Some(area_id)).await?;
    let mut villages = Vec::new();
    for child in children {
        if child.level == "village" {
            villages.push(child);
        } else {
            villages.extend(
                state
                    .store
                    .list_areas(Some(&child.area_id))
                    .await?
                    .into_iter()
                    .filter(|area| area.level == "village"),
            );
        }
    }
    Ok(villages)
}

/// A village filter must name a village of the caller's area; any other id is answered
/// like an unknown one.
fn check_village(villages: &[Area], village: Option<&str>) -> Result<(), ServiceError> {
    match village {
        Some(village) if !villages.iter().any(|area| area.area_id == village) => Err(
            ServiceError::NotFound(format!("village {village} not found")),
        ),
        _ => Ok(()),
    }
}

/// Years a page may ask for; anything else is a typo.
fn check_year(year: i32) -> Result<i32, ServiceError> {
    let (first, last) = (INCOME_YEARS.start(), INCOME_YEARS.end());
    if INCOME_YEARS.contains(&year) {
        Ok(year)
    } else {
        Err(ServiceError::invalid(
            "year",
            format!("年度应在{first}到{last}之间 (year must be {first}–{last}, got {year})"),
        ))
    }
}

// ----- thresholds (标准线) -----

/// The threshold rows and the regions the county admin may set.
#[derive(Debug, Clone)]
pub struct ThresholdsView {
    pub rows: Vec<IncomeThreshold>,
    /// Most specific first: the county, its province, national.
    pub regions: Vec<String>,
    pub county_id: String,
}

/// Every threshold row, for the county admin's page.
pub async fn thresholds(
    state: &AppState,
    principal: &Principal,
) -> Result<ThresholdsView, ServiceError> {
    let county_id = county_admin_county(principal)?;
    Ok(ThresholdsView {
        rows: state.store.income_thresholds().await?,
        regions: income::region_chain(county_id),
        county_id: county_id.to_owned(),
    })
}

fn county_admin_county(principal: &Principal) -> Result<&str, ServiceError> {
    match principal.role {
        Role::County => Ok(&principal.area_id),
        _ => Err(ServiceError::PermissionDenied(
            "只有县级管理员可以设置标准线 (county administrators only)".into(),
        )),
    }
}

/// Set (insert or replace) one threshold row. The region must be the admin's county, its
/// province or national: lines of other places are not this county's to set.
pub async fn set_threshold(
    state: &AppState,
    principal: &Principal,
    threshold: IncomeThreshold,
) -> Result<(), ServiceError> {
    let county_id = county_admin_county(principal)?;
    threshold.validate().map_err(|error| {
        let field = match error {
            income::ThresholdError::BadYear(_) => "year",
            income::ThresholdError::BadRegion(_) => "region",
            income::ThresholdError::NoLine => "poverty_line_yuan",
            income::ThresholdError::BadAmount(income::IncomeLineKind::Poverty, _) => {
                "poverty_line_yuan"
            }
            income::ThresholdError::BadAmount(income::IncomeLineKind::Monitoring, _) => {
                "monitoring_line_yuan"
            }
            income::ThresholdError::NoteTooLong => "source_note",
        };
        ServiceError::invalid(field, error.to_string())
    })?;
    if !income::region_chain(county_id).contains(&threshold.region) {
        return Err(ServiceError::invalid(
            "region",
            format!(
                "只能设置本县、本省或全国的标准线 (region {} is not this county, its province or national)",
                threshold.region
            ),
        ));
    }
    let filter = format!("year={} region={}", threshold.year, threshold.region);
    let detail = format!(
        "设置收入标准线：贫困线 {} 元，监测线 {} 元（{}）",
        threshold
            .poverty_line_yuan
            .map_or_else(|| "未设".to_owned(), |yuan| yuan.to_string()),
        threshold
            .monitoring_line_yuan
            .map_or_else(|| "未设".to_owned(), |yuan| yuan.to_string()),
        threshold.source_note
    );
    state.store.set_income_threshold(threshold).await?;
    // Audited after the write, so the log never claims a change that did not happen; a
    // failure here is reported to the admin rather than hidden.
    state
        .store
        .append_audit(crate::audit::settings_change_record(
            principal,
            state.clock.now(),
            "income_thresholds",
            filter,
            detail,
        ))
        .await?;
    Ok(())
}

// ----- income (季登记 / 年汇总) -----

/// One household's year with the lines that apply and the flag, if raised.
#[derive(Debug, Clone)]
pub struct YearIncome {
    pub annual: AnnualIncome,
    pub lines: Vec<ResolvedLine>,
    pub flag: Option<IncomeFlag>,
    /// Quarters of the year where a registration replaced the one in force without naming
    /// it (two phones registered the quarter without seeing each other): to be checked.
    pub replacements: Vec<UnannouncedReplacement>,
}

/// Summarise `year` for a household and judge the projection against the lines.
fn year_income(
    registrations: &[IncomeRegistration],
    year: i32,
    household_size: u32,
    lines: &[ResolvedLine],
    margin: f64,
) -> Result<YearIncome, ServiceError> {
    let annual = income::annual_income(registrations, year, household_size).map_err(|error| {
        // Stored registrations passed the same formula when they arrived; failing now means
        // corrupt data, not a caller error.
        tracing::error!(%error, year, "stored income registrations do not add up");
        ServiceError::Internal
    })?;
    let flag = annual
        .projected_per_capita_net_fen
        .and_then(|projected| income::projection_flag(projected, lines, margin));
    let replacements = income::unannounced_replacements(registrations)
        .into_iter()
        .filter(|replacement| replacement.by.year == year)
        .collect();
    Ok(YearIncome {
        annual,
        lines: lines.to_vec(),
        flag,
        replacements,
    })
}

fn current_size(household: &Household) -> u32 {
    u32::try_from(household.current_members().count()).unwrap_or(u32::MAX)
}

/// One row of the income page.
#[derive(Debug, Clone)]
pub struct IncomeRow {
    pub household: Household,
    pub income: YearIncome,
}

/// The income page: households of the area for one year, flagged first.
#[derive(Debug, Clone)]
pub struct IncomeOverview {
    pub year: i32,
    pub village: Option<String>,
    pub villages: Vec<Area>,
    /// The lines of the area's county for the year.
    pub lines: Vec<ResolvedLine>,
    pub margin: f64,
    pub rows: Vec<IncomeRow>,
}

impl IncomeOverview {
    pub fn flagged_count(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| row.income.flag.is_some())
            .count()
    }
}

/// Households of the caller's area (optionally one village) with their year: the quarters,
/// the projection, the line used and the flag. Flagged households come first (lowest
/// projection first), then the others by village and name.
pub async fn income_overview(
    state: &AppState,
    principal: &Principal,
    year: Option<i32>,
    village: Option<String>,
) -> Result<IncomeOverview, ServiceError> {
    let area_id = staff_area(principal)?;
    let year = check_year(year.unwrap_or_else(|| beijing_today(state).year()))?;
    let villages = villages_of(state, principal).await?;
    check_village(&villages, village.as_deref())?;
    let county_id = county_of(state, area_id).await?;
    let thresholds = state.store.income_thresholds().await?;
    let lines = income::resolve_lines(&thresholds, year, &income::region_chain(&county_id));
    let margin = state.settings.income_projection_margin;

    let mut by_household: HashMap<String, Vec<IncomeRegistration>> = HashMap::new();
    for registration in state.store.area_income_registrations(area_id, year).await? {
        by_household
            .entry(registration.household_id.clone())
            .or_default()
            .push(registration);
    }
    let mut rows = Vec::new();
    for household in state.store.households_in_area(area_id).await? {
        if village
            .as_deref()
            .is_some_and(|village| village != household.village_id)
        {
            continue;
        }
        let registrations = by_household
            .remove(&household.household_id)
            .unwrap_or_default();
        let income = year_income(
            &registrations,
            year,
            current_size(&household),
            &lines,
            margin,
        )?;
        rows.push(IncomeRow { household, income });
    }
    // Stable sort: within each group the store's village/name order is kept.
    rows.sort_by_key(|row| {
        row.income
            .flag
            .as_ref()
            .map_or((1, 0), |flag| (0, flag.projected_per_capita_net_fen))
    });
    Ok(IncomeOverview {
        year,
        village,
        villages,
        lines,
        margin,
        rows,
    })
}

// ----- 两不愁三保障 checklist -----

/// Failing-household counts of one village, per item.
#[derive(Debug, Clone)]
pub struct VillageWellbeing {
    pub village_id: String,
    pub village_name: String,
    pub households: u32,
    pub failing: BTreeMap<WellbeingItem, u32>,
    /// Households failing at least one item.
    pub failing_any: u32,
}

/// One household behind a count, with the reasons of its failing items.
#[derive(Debug, Clone)]
pub struct WellbeingListRow {
    pub household: Household,
    pub assessment: WellbeingAssessment,
}

/// The checklist page: counts by village and item, and (when a village or item is chosen)
/// the households behind the count.
#[derive(Debug, Clone)]
pub struct WellbeingOverview {
    pub villages: Vec<VillageWellbeing>,
    pub village: Option<String>,
    pub item: Option<WellbeingItem>,
    /// Whether a list was asked for (a village, an item or `item=any`).
    pub listing: bool,
    /// Failing households matching the filter; empty when no list was asked for.
    pub list: Vec<WellbeingListRow>,
}

/// The `item` value that lists households failing any item.
pub const ANY_ITEM: &str = "any";

/// Parse an item code from a query (`any` or absent: every item), as a typed error naming
/// the field.
pub fn parse_item(code: Option<&str>) -> Result<Option<WellbeingItem>, ServiceError> {
    match code.map(str::trim).filter(|code| !code.is_empty()) {
        None | Some(ANY_ITEM) => Ok(None),
        Some(code) => WellbeingItem::from_code(code).map(Some).ok_or_else(|| {
            ServiceError::invalid(
                "item",
                format!("未知的检查项 (unknown checklist item {code:?})"),
            )
        }),
    }
}

/// Run the checklist over every household of the caller's area.
pub async fn wellbeing_overview(
    state: &AppState,
    principal: &Principal,
    village: Option<String>,
    item: Option<WellbeingItem>,
    listing: bool,
) -> Result<WellbeingOverview, ServiceError> {
    let area_id = staff_area(principal)?;
    let villages = villages_of(state, principal).await?;
    check_village(&villages, village.as_deref())?;
    let today = beijing_today(state);
    let rules = &state.settings.wellbeing;
    let checks: HashMap<String, WellbeingCheck> = state
        .store
        .latest_wellbeing_checks(area_id)
        .await?
        .into_iter()
        .map(|latest| (latest.household_id, latest.check))
        .collect();

    let mut counts: Vec<VillageWellbeing> = villages
        .iter()
        .map(|area| VillageWellbeing {
            village_id: area.area_id.clone(),
            village_name: area.name.clone(),
            households: 0,
            failing: BTreeMap::new(),
            failing_any: 0,
        })
        .collect();
    let mut list = Vec::new();
    for household in state.store.households_in_area(area_id).await? {
        let assessment = wellbeing::assess(
            &household,
            checks.get(&household.household_id),
            today,
            rules,
        );
        let position = match counts
            .iter()
            .position(|count| count.village_id == household.village_id)
        {
            Some(position) => position,
            None => {
                // A household whose village is missing from the area tree still counts.
                counts.push(VillageWellbeing {
                    village_id: household.village_id.clone(),
                    village_name: household.village_name.clone(),
                    households: 0,
                    failing: BTreeMap::new(),
                    failing_any: 0,
                });
                counts.len() - 1
            }
        };
        let count = &mut counts[position];
        count.households += 1;
        let mut any = false;
        for outcome in assessment.failing() {
            *count.failing.entry(outcome.item).or_default() += 1;
            any = true;
        }
        if any {
            count.failing_any += 1;
        }
        let in_village = village
            .as_deref()
            .is_none_or(|village| village == household.village_id);
        let matches_item = match item {
            Some(item) => assessment.fails(item),
            None => any,
        };
        if listing && in_village && matches_item {
            list.push(WellbeingListRow {
                household,
                assessment,
            });
        }
    }
    Ok(WellbeingOverview {
        villages: counts,
        village,
        item,
        listing,
        list,
    })
}

// ----- household page and 明白卡 -----

/// Everything the household page, its JSON twin and the 明白卡 show.
#[derive(Debug, Clone)]
pub struct HouseholdPage {
    pub dossier: HouseholdDossier,
    pub assessment: WellbeingAssessment,
    /// Years with registrations, newest first, plus the current year even when empty.
    pub years: Vec<YearIncome>,
    pub margin: f64,
    pub today: Date,
    /// County then township of the household, for the card's heading (missing areas are
    /// left out).
    pub place: Vec<Area>,
}

/// One household of the caller's area; outside the area it is "not found", like an
/// unknown id.
pub async fn household_page(
    state: &AppState,
    principal: &Principal,
    household_id: &str,
) -> Result<HouseholdPage, ServiceError> {
    let area_id = staff_area(principal)?;
    let not_found = || ServiceError::NotFound(format!("household {household_id} not found"));
    let dossier = state
        .store
        .household_dossier(household_id)
        .await?
        .ok_or_else(not_found)?;
    if !household_in_area(state, &dossier.household, area_id).await? {
        return Err(not_found());
    }
    let today = beijing_today(state);
    let latest_check = dossier.visits.first().map(|item| &item.visit.wellbeing);
    let assessment = wellbeing::assess(
        &dossier.household,
        latest_check,
        today,
        &state.settings.wellbeing,
    );
    let township = state.store.get_area(&dossier.household.township_id).await?;
    let county = match township.as_ref().and_then(|area| area.parent_id.as_deref()) {
        Some(parent) => state.store.get_area(parent).await?,
        None => None,
    };
    let county_id = county.as_ref().map_or_else(
        || dossier.household.township_id.clone(),
        |county| county.area_id.clone(),
    );
    let chain = income::region_chain(&county_id);
    let thresholds = state.store.income_thresholds().await?;
    let margin = state.settings.income_projection_margin;
    let mut years: Vec<i32> = dossier
        .registrations
        .iter()
        .map(|registration| registration.year)
        .collect();
    years.push(today.year());
    years.sort_unstable_by(|a, b| b.cmp(a));
    years.dedup();
    let size = current_size(&dossier.household);
    let years = years
        .into_iter()
        .map(|year| {
            let lines = income::resolve_lines(&thresholds, year, &chain);
            year_income(&dossier.registrations, year, size, &lines, margin)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HouseholdPage {
        dossier,
        assessment,
        years,
        margin,
        today,
        place: county.into_iter().chain(township).collect(),
    })
}

/// The township supervisor settles a quarter that two phones registered without seeing each
/// other: `chosen` (one of the two) becomes the registration in force again, as a new
/// registration with its figures that names the one in force now, so every phone receives it
/// at its next sync and the disagreement is settled. Returns the new registration.
pub async fn settle_income_disagreement(
    state: &AppState,
    principal: &Principal,
    household_id: &str,
    chosen_registration_id: &str,
) -> Result<IncomeRegistration, ServiceError> {
    if principal.role != Role::Township {
        return Err(ServiceError::PermissionDenied(
            "仅乡镇审核员可以确认收入登记 (township supervisors only)".into(),
        ));
    }
    let not_found = || ServiceError::NotFound(format!("household {household_id} not found"));
    let dossier = state
        .store
        .household_dossier(household_id)
        .await?
        .ok_or_else(not_found)?;
    if !household_in_area(state, &dossier.household, &principal.area_id).await? {
        return Err(not_found());
    }
    let disagreement = income::unannounced_replacements(&dossier.registrations)
        .into_iter()
        .find(|replacement| {
            replacement.replaced.registration_id == chosen_registration_id
                || replacement.by.registration_id == chosen_registration_id
        })
        .ok_or_else(|| {
            ServiceError::FailedPrecondition(
                "该登记所在季度没有待核实的不一致（可能已被更正）(no open disagreement for it)"
                    .into(),
            )
        })?;
    let chosen = if disagreement.replaced.registration_id == chosen_registration_id {
        &disagreement.replaced
    } else {
        &disagreement.by
    };
    let settled = IncomeRegistration::new(
        uuid::Uuid::now_v7().to_string(),
        chosen.household_id.clone(),
        chosen.year,
        chosen.quarter,
        chosen.household_size,
        chosen.components,
    )
    .map_err(|error| {
        tracing::error!(%error, "a stored income registration no longer adds up");
        ServiceError::Internal
    })?
    .superseding(Some(disagreement.by.registration_id.clone()));
    state
        .store
        .save_income_registrations(vec![settled.clone()])
        .await?;
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use fieldsync_model::income::{self, IncomeLineKind};

    use crate::demo::{
        DEMO_COUNTY_ID, DEMO_SEED, demo_income_registrations, demo_thresholds, generate_demo_county,
    };

    #[test]
    fn the_margin_and_checklist_rules_are_ordinary_settings() {
        use crate::settings::Settings;
        let defaults = Settings::default();
        assert_eq!(defaults.income_projection_margin, 0.1);
        assert_eq!(defaults.wellbeing.school_age_min, 6);
        let folder = tempfile::tempdir().expect("temp dir");
        let file = folder.path().join("fieldsync.toml");
        std::fs::write(
            &file,
            "income_projection_margin = 0.2\n[wellbeing]\nschool_age_max = 14\nunassessed_housing_fails = true\n",
        )
        .expect("write settings");
        let environment = vec![(
            "FIELDSYNC_WELLBEING__REQUIRE_SERIOUS_ILLNESS_INSURANCE".to_owned(),
            "false".to_owned(),
        )];
        let settings = Settings::load(Some(&file), environment).expect("load");
        assert_eq!(settings.income_projection_margin, 0.2);
        assert_eq!(settings.wellbeing.school_age_max, 14);
        assert!(settings.wellbeing.unassessed_housing_fails);
        assert!(!settings.wellbeing.require_serious_illness_insurance);
        assert_eq!(
            settings.wellbeing.school_age_min, 6,
            "unnamed rules keep defaults"
        );
        let folder = tempfile::tempdir().expect("temp dir");
        let typo_file = folder.path().join("typo.toml");
        std::fs::write(&typo_file, "[wellbeing]\nschool_age = 7\n").expect("write");
        assert!(
            Settings::load(Some(&typo_file), Vec::new()).is_err(),
            "an unknown rule in the file is an error, not silently ignored"
        );
        let loaded = Settings::load_reporting(
            None,
            vec![("FIELDSYNC_WELLBEING__SCHOOL_AGE".to_owned(), "7".to_owned())],
        )
        .expect("an unknown variable only warns");
        assert_eq!(
            loaded.ignored_variables,
            ["FIELDSYNC_WELLBEING__SCHOOL_AGE"]
        );
    }

    #[test]
    fn the_demo_county_has_income_and_some_households_below_the_line() {
        let county = generate_demo_county(DEMO_SEED);
        let registrations = demo_income_registrations(&county.seed);
        assert_eq!(
            registrations,
            demo_income_registrations(&county.seed),
            "deterministic"
        );
        let lines = income::resolve_lines(
            &demo_thresholds(),
            2026,
            &income::region_chain(DEMO_COUNTY_ID),
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].kind, IncomeLineKind::Monitoring);
        let (mut registered, mut flagged) = (0, 0);
        for household in &county.seed.households {
            let own: Vec<_> = registrations
                .iter()
                .filter(|registration| registration.household_id == household.household_id)
                .cloned()
                .collect();
            let size = household.current_members().count() as u32;
            let annual = income::annual_income(&own, 2026, size).expect("valid demo income");
            if let Some(projected) = annual.projected_per_capita_net_fen {
                registered += 1;
                if income::projection_flag(projected, &lines, 0.1).is_some() {
                    flagged += 1;
                }
            }
        }
        let total = county.seed.households.len();
        assert!(registered > total / 2, "{registered} of {total} registered");
        assert!(
            flagged > 5 && flagged < registered / 3,
            "{flagged} of {registered} flagged"
        );
    }
}
