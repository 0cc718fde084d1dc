//! 季度收入登记 quarterly income registration and the income formula of domain.md §1.8:
//! `net = wage + business_gross + property + transfer − business_cost`, and
//! `per_capita_net = net / household_size`. Amounts are in fen so sums are exact.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The five components a cadre records for one quarter, in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IncomeComponents {
    /// 工资性收入.
    pub wage_fen: i64,
    /// 生产经营性收入 (gross).
    pub business_gross_fen: i64,
    /// 财产性收入.
    pub property_fen: i64,
    /// 转移性收入.
    pub transfer_fen: i64,
    /// 生产经营性支出.
    pub business_cost_fen: i64,
}

/// Why an income registration cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IncomeError {
    #[error("收入项不能为负数 (income component {0} is negative)")]
    NegativeComponent(&'static str),
    #[error("家庭人口必须大于0 (household size must be at least 1)")]
    EmptyHousehold,
    #[error("季度必须是1到4 (quarter must be 1–4, got {0})")]
    BadQuarter(u32),
    #[error("金额超出范围 (amount overflows)")]
    Overflow,
}

impl IncomeComponents {
    /// 家庭纯收入: wage + business_gross + property + transfer − business_cost. May be negative
    /// when a business lost money, which is a real outcome and must not be clamped.
    pub fn net_fen(&self) -> Result<i64, IncomeError> {
        self.check_non_negative()?;
        self.wage_fen
            .checked_add(self.business_gross_fen)
            .and_then(|sum| sum.checked_add(self.property_fen))
            .and_then(|sum| sum.checked_add(self.transfer_fen))
            .and_then(|sum| sum.checked_sub(self.business_cost_fen))
            .ok_or(IncomeError::Overflow)
    }

    /// 人均纯收入: net divided by household size, rounded half away from zero to the fen.
    pub fn per_capita_net_fen(&self, household_size: u32) -> Result<i64, IncomeError> {
        if household_size == 0 {
            return Err(IncomeError::EmptyHousehold);
        }
        let net = i128::from(self.net_fen()?);
        let size = i128::from(household_size);
        let rounded = if net >= 0 {
            (2 * net + size) / (2 * size)
        } else {
            -((-2 * net + size) / (2 * size))
        };
        i64::try_from(rounded).map_err(|_| IncomeError::Overflow)
    }

    fn check_non_negative(&self) -> Result<(), IncomeError> {
        let named = [
            ("wage", self.wage_fen),
            ("business_gross", self.business_gross_fen),
            ("property", self.property_fen),
            ("transfer", self.transfer_fen),
            ("business_cost", self.business_cost_fen),
        ];
        match named.iter().find(|(_, amount)| *amount < 0) {
            Some((name, _)) => Err(IncomeError::NegativeComponent(name)),
            None => Ok(()),
        }
    }
}

/// One quarterly registration with its derived totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomeRegistration {
    pub registration_id: String,
    pub household_id: String,
    pub year: i32,
    pub quarter: u32,
    pub household_size: u32,
    pub components: IncomeComponents,
    pub net_fen: i64,
    pub per_capita_net_fen: i64,
    /// 更正: the registration in force for the quarter that the phone saw and replaces on
    /// purpose; `None` for a first registration. A replacement that does not name the
    /// registration it replaces is shown to reviewers ([`unannounced_replacements`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes_registration_id: Option<String>,
}

impl IncomeRegistration {
    /// Build a registration, deriving net and per-capita net with the formula. Values the
    /// phone sent for the derived fields are ignored on purpose: the server is the authority.
    pub fn new(
        registration_id: String,
        household_id: String,
        year: i32,
        quarter: u32,
        household_size: u32,
        components: IncomeComponents,
    ) -> Result<Self, IncomeError> {
        if !(1..=4).contains(&quarter) {
            return Err(IncomeError::BadQuarter(quarter));
        }
        Ok(Self {
            net_fen: components.net_fen()?,
            per_capita_net_fen: components.per_capita_net_fen(household_size)?,
            registration_id,
            household_id,
            year,
            quarter,
            household_size,
            components,
            supersedes_registration_id: None,
        })
    }

    /// The same registration, declared as the correction (更正) of `replaced`.
    pub fn superseding(mut self, replaced: Option<String>) -> Self {
        self.supersedes_registration_id = replaced;
        self
    }
}

// ----- 年汇总 annual summary, 标准线 thresholds and the projection flag -----

/// Region key of a threshold that applies everywhere (全国).
pub const NATIONAL_REGION: &str = "national";

/// Which reference line (标准线) a threshold row sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncomeLineKind {
    /// 贫困线: the poverty line used for identification (national or provincial standard).
    Poverty,
    /// 防止返贫监测线: the monitoring line of the post-2020 防返贫 regime.
    Monitoring,
}

impl IncomeLineKind {
    pub const ALL: [IncomeLineKind; 2] = [IncomeLineKind::Poverty, IncomeLineKind::Monitoring];

    /// The name officials use.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Poverty => "贫困线",
            Self::Monitoring => "防止返贫监测线",
        }
    }
}

/// One row of the threshold table (domain.md §1.9 `threshold`): the lines in force for one
/// year in one region, in yuan per person per year. Lines are data, never constants, because
/// they differ by region and year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomeThreshold {
    pub year: i32,
    /// [`NATIONAL_REGION`], or a 12-digit statistical area code (province or county).
    pub region: String,
    pub poverty_line_yuan: Option<i64>,
    pub monitoring_line_yuan: Option<i64>,
    /// Where the figure comes from (文件/出处), shown next to the line.
    pub source_note: String,
}

/// Why a threshold row cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ThresholdError {
    #[error("年度应在2000到2100之间 (year must be 2000–2100, got {0})")]
    BadYear(i32),
    #[error(
        "地区应为 national 或12位区划代码 (region must be \"national\" or a 12-digit area code, got {0:?})"
    )]
    BadRegion(String),
    #[error("至少填写一条标准线 (set at least one of the two lines)")]
    NoLine,
    #[error(
        "{}应在1到1000000元之间 (the {} must be 1–1,000,000 yuan, got {})",
        .0.label_zh(),
        .0.label_zh(),
        .1
    )]
    BadAmount(IncomeLineKind, i64),
    #[error("出处不能超过200个字 (source note is longer than 200 characters)")]
    NoteTooLong,
}

/// Years a registration, a threshold or a report may be for: one range on the phone, in the
/// console and in exports, so a year one of them accepts is never refused by another.
pub const INCOME_YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

/// Longest source note a threshold keeps.
pub const MAX_SOURCE_NOTE_CHARS: usize = 200;
/// Largest line accepted, in yuan: far above any real line, so a typo with extra zeros is
/// refused instead of flagging every household.
pub const MAX_LINE_YUAN: i64 = 1_000_000;

impl IncomeThreshold {
    /// Check a row before it is stored.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        if !INCOME_YEARS.contains(&self.year) {
            return Err(ThresholdError::BadYear(self.year));
        }
        if !is_region_key(&self.region) {
            return Err(ThresholdError::BadRegion(self.region.clone()));
        }
        if self.poverty_line_yuan.is_none() && self.monitoring_line_yuan.is_none() {
            return Err(ThresholdError::NoLine);
        }
        for kind in IncomeLineKind::ALL {
            if let Some(amount) = self.line(kind)
                && !(1..=MAX_LINE_YUAN).contains(&amount)
            {
                return Err(ThresholdError::BadAmount(kind, amount));
            }
        }
        if self.source_note.chars().count() > MAX_SOURCE_NOTE_CHARS {
            return Err(ThresholdError::NoteTooLong);
        }
        Ok(())
    }

    /// The amount this row sets for one line, if it sets it.
    pub fn line(&self, kind: IncomeLineKind) -> Option<i64> {
        match kind {
            IncomeLineKind::Poverty => self.poverty_line_yuan,
            IncomeLineKind::Monitoring => self.monitoring_line_yuan,
        }
    }
}

/// True for [`NATIONAL_REGION`] and for 12-digit area codes.
pub fn is_region_key(region: &str) -> bool {
    region == NATIONAL_REGION || (region.len() == 12 && region.bytes().all(|b| b.is_ascii_digit()))
}

/// The regions whose lines apply to a county, most specific first: the county itself, its
/// province (the first two digits of a 12-digit statistical code, zero-filled), then
/// [`NATIONAL_REGION`]. A county id that is not a 12-digit code has no province step.
pub fn region_chain(county_id: &str) -> Vec<String> {
    let mut chain = vec![county_id.to_owned()];
    if county_id.len() == 12 && county_id.bytes().all(|b| b.is_ascii_digit()) {
        let province = format!("{}0000000000", &county_id[..2]);
        if province != county_id {
            chain.push(province);
        }
    }
    if county_id != NATIONAL_REGION {
        chain.push(NATIONAL_REGION.to_owned());
    }
    chain
}

/// A line as it applies to one household: the amount and the row it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedLine {
    pub kind: IncomeLineKind,
    pub yuan: i64,
    pub year: i32,
    pub region: String,
}

/// The line of `kind` in force in `year` for a place with `region_chain` (most specific
/// first, see [`region_chain`]): among the rows of exactly that year, the most specific
/// region that sets this line wins. Each line resolves on its own, so a county row that only
/// sets the monitoring line still falls back to the national poverty line. A year without
/// any row has no line: lines are never carried over silently from another year.
pub fn resolve_line(
    thresholds: &[IncomeThreshold],
    kind: IncomeLineKind,
    year: i32,
    region_chain: &[String],
) -> Option<ResolvedLine> {
    region_chain.iter().find_map(|region| {
        thresholds
            .iter()
            .find(|row| row.year == year && &row.region == region && row.line(kind).is_some())
            .and_then(|row| {
                Some(ResolvedLine {
                    kind,
                    yuan: row.line(kind)?,
                    year,
                    region: region.clone(),
                })
            })
    })
}

/// Both lines for a year and place (each may be missing).
pub fn resolve_lines(
    thresholds: &[IncomeThreshold],
    year: i32,
    region_chain: &[String],
) -> Vec<ResolvedLine> {
    IncomeLineKind::ALL
        .iter()
        .filter_map(|kind| resolve_line(thresholds, *kind, year, region_chain))
        .collect()
}

/// Divide and round half away from zero (the rounding [`IncomeComponents::per_capita_net_fen`]
/// uses), so every per-capita figure in the system rounds the same way.
fn divide_rounded(numerator: i128, denominator: i128) -> Result<i64, IncomeError> {
    if denominator <= 0 {
        return Err(IncomeError::EmptyHousehold);
    }
    let rounded = if numerator >= 0 {
        (2 * numerator + denominator) / (2 * denominator)
    } else {
        -((-2 * numerator + denominator) / (2 * denominator))
    };
    i64::try_from(rounded).map_err(|_| IncomeError::Overflow)
}

/// 年汇总 one household's year: the registered quarters, their totals and the projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnualIncome {
    pub year: i32,
    /// The registration in force for each registered quarter, in quarter order.
    pub quarters: Vec<IncomeRegistration>,
    /// Sum of each component over the registered quarters.
    pub totals: IncomeComponents,
    /// 家庭纯收入 of the registered quarters (formula §1.8 on the totals).
    pub net_fen: i64,
    /// Household size used for the per-capita figures: members not removed, today.
    pub household_size: u32,
    /// 人均纯收入 of the registered quarters; `None` for a household with no current member.
    pub per_capita_net_fen: Option<i64>,
    /// Projected annual 家庭纯收入; `None` before any quarter is registered.
    pub projected_net_fen: Option<i64>,
    /// Projected annual 人均纯收入; `None` without quarters or members.
    pub projected_per_capita_net_fen: Option<i64>,
}

/// The registration in force for each quarter of `year`: the last one registered wins (a
/// correction is a new registration), so `registrations` must be in arrival order.
pub fn latest_per_quarter(
    registrations: &[IncomeRegistration],
    year: i32,
) -> Vec<IncomeRegistration> {
    current_registrations(registrations)
        .into_iter()
        .filter(|registration| registration.year == year)
        .collect()
}

/// The registration in force for every (year, quarter) registered, by year and quarter:
/// the last to arrive wins, so `registrations` must be in arrival order.
pub fn current_registrations(registrations: &[IncomeRegistration]) -> Vec<IncomeRegistration> {
    let mut by_quarter: std::collections::BTreeMap<(i32, u32), &IncomeRegistration> =
        std::collections::BTreeMap::new();
    for registration in registrations {
        by_quarter.insert((registration.year, registration.quarter), registration);
    }
    by_quarter.into_values().cloned().collect()
}

/// A registration that replaced the one in force for its quarter without naming it: two
/// devices registered the same quarter with different figures, neither having seen the
/// other's (both offline), and the later arrival won. Every registration is kept; this is
/// what a reviewer is shown so the household's figures get checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnannouncedReplacement {
    /// The registration that had been in force.
    pub replaced: IncomeRegistration,
    /// The registration in force now, which did not name `replaced`.
    pub by: IncomeRegistration,
}

/// The unannounced replacements among a household's registrations (arrival order) whose
/// replacing registration is still in force, by year and quarter. A later correction that
/// names the registration in force (someone looked at it) settles its quarter; a second
/// registration with the same figures is no disagreement.
pub fn unannounced_replacements(
    registrations: &[IncomeRegistration],
) -> Vec<UnannouncedReplacement> {
    use std::collections::BTreeMap;
    let mut in_force: BTreeMap<(i32, u32), &IncomeRegistration> = BTreeMap::new();
    let mut open: BTreeMap<(i32, u32), UnannouncedReplacement> = BTreeMap::new();
    for registration in registrations {
        let quarter = (registration.year, registration.quarter);
        if let Some(current) = in_force.get(&quarter) {
            let named = registration.supersedes_registration_id.as_deref()
                == Some(current.registration_id.as_str());
            let same_figures = registration.components == current.components
                && registration.household_size == current.household_size;
            if named {
                open.remove(&quarter);
            } else if !same_figures {
                open.insert(
                    quarter,
                    UnannouncedReplacement {
                        replaced: (*current).clone(),
                        by: registration.clone(),
                    },
                );
            }
        }
        in_force.insert(quarter, registration);
    }
    open.into_values().collect()
}

/// Build the annual summary of `year` from a household's registrations (arrival order) and
/// its current size.
///
/// **Projection rule** (domain.md §1.8 note, §2.4): the quarters registered so far are
/// annualised, `projected_net = net_of_registered_quarters × 4 / registered_quarters`, and
/// `projected_per_capita = projected_net / household_size`, computed in one division in
/// integer fen and rounded half away from zero. With all four quarters registered the
/// projection equals the actual annual figure. Seasonal income (a harvest in Q3) makes early
/// projections rough; they are a prompt to adjust the help plan, not a verdict.
pub fn annual_income(
    registrations: &[IncomeRegistration],
    year: i32,
    household_size: u32,
) -> Result<AnnualIncome, IncomeError> {
    let quarters = latest_per_quarter(registrations, year);
    let mut totals = IncomeComponents::default();
    for quarter in &quarters {
        let parts = &quarter.components;
        let add = |sum: i64, part: i64| sum.checked_add(part).ok_or(IncomeError::Overflow);
        totals.wage_fen = add(totals.wage_fen, parts.wage_fen)?;
        totals.business_gross_fen = add(totals.business_gross_fen, parts.business_gross_fen)?;
        totals.property_fen = add(totals.property_fen, parts.property_fen)?;
        totals.transfer_fen = add(totals.transfer_fen, parts.transfer_fen)?;
        totals.business_cost_fen = add(totals.business_cost_fen, parts.business_cost_fen)?;
    }
    let net_fen = totals.net_fen()?;
    let registered = quarters.len() as i128;
    let size = i128::from(household_size);
    let per_capita_net_fen = if household_size == 0 {
        None
    } else {
        Some(divide_rounded(i128::from(net_fen), size)?)
    };
    let (projected_net_fen, projected_per_capita_net_fen) = if registered == 0 {
        (None, None)
    } else {
        let annualised = i128::from(net_fen) * 4;
        let projected_net = divide_rounded(annualised, registered)?;
        let per_capita = if household_size == 0 {
            None
        } else {
            Some(divide_rounded(annualised, registered * size)?)
        };
        (Some(projected_net), per_capita)
    };
    Ok(AnnualIncome {
        year,
        quarters,
        totals,
        net_fen,
        household_size,
        per_capita_net_fen,
        projected_net_fen,
        projected_per_capita_net_fen,
    })
}

/// The margin as whole basis points (0.1 → 1000), so the comparison stays in integers.
/// A negative or non-finite margin counts as 0; margins above 1000% are capped.
pub fn margin_basis_points(margin: f64) -> i64 {
    if !margin.is_finite() || margin <= 0.0 {
        return 0;
    }
    (margin.min(10.0) * 10_000.0).round() as i64
}

/// A household whose projected annual per-capita net income is below `line × (1 + margin)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomeFlag {
    /// The line the projection falls under (the lowest such line, i.e. the most serious).
    pub line: ResolvedLine,
    /// `line × (1 + margin)` in fen, rounded half away from zero (for display; the
    /// comparison itself is exact).
    pub threshold_fen: i64,
    pub projected_per_capita_net_fen: i64,
}

/// Flag a projection below `line × (1 + margin)` of any of `lines`, naming the lowest line it
/// falls under (below the poverty line is more serious than below the monitoring line). The
/// comparison is exact: `projected × 10000 < line_fen × (10000 + margin_bp)`.
pub fn projection_flag(
    projected_per_capita_net_fen: i64,
    lines: &[ResolvedLine],
    margin: f64,
) -> Option<IncomeFlag> {
    let basis_points = i128::from(margin_basis_points(margin));
    let mut ordered: Vec<&ResolvedLine> = lines.iter().collect();
    ordered.sort_by_key(|line| line.yuan);
    ordered.into_iter().find_map(|line| {
        let line_fen = i128::from(line.yuan) * 100;
        let limit = line_fen * (10_000 + basis_points);
        (i128::from(projected_per_capita_net_fen) * 10_000 < limit).then(|| IncomeFlag {
            line: line.clone(),
            threshold_fen: divide_rounded(limit, 10_000).unwrap_or(i64::MAX),
            projected_per_capita_net_fen,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q1(id: &str, wage_fen: i64) -> IncomeRegistration {
        IncomeRegistration::new(
            id.into(),
            "h-1".into(),
            2026,
            1,
            2,
            IncomeComponents {
                wage_fen,
                ..IncomeComponents::default()
            },
        )
        .unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_replacement_that_does_not_name_the_registration_in_force_is_reported() {
        let first = q1("a", 100_000);
        let offline_twin = q1("b", 120_000);
        let found = unannounced_replacements(&[first.clone(), offline_twin.clone()]);
        assert_eq!(
            found,
            vec![UnannouncedReplacement {
                replaced: first.clone(),
                by: offline_twin.clone(),
            }]
        );
        // The same figures twice are no disagreement.
        assert!(unannounced_replacements(&[first.clone(), q1("c", 100_000)]).is_empty());
        // A correction that names the registration in force is not reported ...
        let corrected = q1("d", 130_000).superseding(Some("a".into()));
        assert!(unannounced_replacements(&[first.clone(), corrected]).is_empty());
        // ... and settles an earlier disagreement once someone corrected what was in force.
        let settled = q1("e", 125_000).superseding(Some("b".into()));
        assert!(
            unannounced_replacements(&[first.clone(), offline_twin.clone(), settled]).is_empty()
        );
        // Naming an older registration than the one in force does not settle it.
        let stale = q1("f", 90_000).superseding(Some("a".into()));
        let found = unannounced_replacements(&[first, offline_twin.clone(), stale.clone()]);
        assert_eq!(found.len(), 1);
        assert_eq!((&found[0].replaced, &found[0].by), (&offline_twin, &stale));
    }

    #[test]
    fn registrations_without_the_supersedes_field_still_read() {
        // Rows stored before the field existed have no key at all; new rows without a
        // replacement write none, so stored bodies keep comparing equal.
        let first = q1("a", 100_000);
        let text = serde_json::to_string(&first).unwrap_or_default();
        assert!(!text.contains("supersedes"), "{text}");
        let read: IncomeRegistration =
            serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(read, first);
    }

    fn components(
        wage: i64,
        business: i64,
        property: i64,
        transfer: i64,
        cost: i64,
    ) -> IncomeComponents {
        IncomeComponents {
            wage_fen: wage,
            business_gross_fen: business,
            property_fen: property,
            transfer_fen: transfer,
            business_cost_fen: cost,
        }
    }

    #[test]
    fn net_is_the_four_incomes_minus_business_cost() {
        // 务工 3,000 + 养殖 2,000 + 分红 150 + 低保 900 − 饲料 800 = 5,250 yuan.
        let income = components(300_000, 200_000, 15_000, 90_000, 80_000);
        assert_eq!(income.net_fen(), Ok(525_000));
        assert_eq!(income.per_capita_net_fen(3), Ok(175_000));
    }

    #[test]
    fn per_capita_rounds_half_away_from_zero_to_the_fen() {
        assert_eq!(components(100, 0, 0, 0, 0).per_capita_net_fen(3), Ok(33));
        assert_eq!(components(200, 0, 0, 0, 0).per_capita_net_fen(3), Ok(67));
        assert_eq!(components(0, 100, 0, 0, 200).per_capita_net_fen(3), Ok(-33));
    }

    #[test]
    fn a_business_loss_gives_a_negative_net() {
        assert_eq!(components(0, 10_000, 0, 0, 25_000).net_fen(), Ok(-15_000));
    }

    #[test]
    fn negative_components_zero_size_and_bad_quarters_are_errors() {
        assert_eq!(
            components(-1, 0, 0, 0, 0).net_fen(),
            Err(IncomeError::NegativeComponent("wage"))
        );
        assert_eq!(
            components(1, 0, 0, 0, 0).per_capita_net_fen(0),
            Err(IncomeError::EmptyHousehold)
        );
        let bad = IncomeRegistration::new(
            "r".into(),
            "h".into(),
            2026,
            5,
            3,
            IncomeComponents::default(),
        );
        assert_eq!(bad, Err(IncomeError::BadQuarter(5)));
        let overflow = components(i64::MAX, 1, 0, 0, 0);
        assert_eq!(overflow.net_fen(), Err(IncomeError::Overflow));
    }

    #[test]
    fn registration_derives_the_totals() {
        let registration = IncomeRegistration::new(
            "r1".into(),
            "h1".into(),
            2026,
            3,
            4,
            components(400_000, 0, 0, 120_000, 0),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(registration.net_fen, 520_000);
        assert_eq!(registration.per_capita_net_fen, 130_000);
    }

    fn quarter(id: &str, year: i32, quarter: u32, parts: IncomeComponents) -> IncomeRegistration {
        IncomeRegistration::new(id.into(), "h1".into(), year, quarter, 3, parts)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn threshold(
        year: i32,
        region: &str,
        poverty: Option<i64>,
        monitoring: Option<i64>,
    ) -> IncomeThreshold {
        IncomeThreshold {
            year,
            region: region.into(),
            poverty_line_yuan: poverty,
            monitoring_line_yuan: monitoring,
            source_note: String::new(),
        }
    }

    #[test]
    fn the_annual_summary_sums_components_exactly_in_fen() {
        // Q1: 务工 3,000.01 + 低保 900 − 0; Q2: 养殖 2,000 − 饲料 800.02 + 分红 150.
        let registrations = vec![
            quarter("a", 2026, 1, components(300_001, 0, 0, 90_000, 0)),
            quarter("b", 2026, 2, components(0, 200_000, 15_000, 0, 80_002)),
            quarter("other-year", 2025, 4, components(999_999, 0, 0, 0, 0)),
        ];
        let annual = annual_income(&registrations, 2026, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(annual.quarters.len(), 2);
        assert_eq!(
            annual.totals,
            components(300_001, 200_000, 15_000, 90_000, 80_002)
        );
        assert_eq!(annual.net_fen, 524_999);
        // 524,999 / 3 = 174,999.67 → 175,000.
        assert_eq!(annual.per_capita_net_fen, Some(175_000));
        // Two quarters annualised: 524,999 × 4 / 2 = 1,049,998; per capita / 3 = 349,999.33.
        assert_eq!(annual.projected_net_fen, Some(1_049_998));
        assert_eq!(annual.projected_per_capita_net_fen, Some(349_999));
    }

    #[test]
    fn a_correction_replaces_the_quarter_and_four_quarters_project_to_themselves() {
        let registrations = vec![
            quarter("q1", 2026, 1, components(100_000, 0, 0, 0, 0)),
            quarter("q2", 2026, 2, components(100_000, 0, 0, 0, 0)),
            quarter("q1-fixed", 2026, 1, components(130_000, 0, 0, 0, 0)),
            quarter("q3", 2026, 3, components(100_000, 0, 0, 0, 0)),
            quarter("q4", 2026, 4, components(70_000, 0, 0, 0, 0)),
        ];
        let annual = annual_income(&registrations, 2026, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            annual
                .quarters
                .iter()
                .map(|q| q.registration_id.as_str())
                .collect::<Vec<_>>(),
            ["q1-fixed", "q2", "q3", "q4"]
        );
        assert_eq!(annual.net_fen, 400_000);
        assert_eq!(annual.projected_net_fen, Some(400_000));
        assert_eq!(annual.projected_per_capita_net_fen, Some(200_000));
    }

    #[test]
    fn no_quarters_or_no_members_give_no_projection() {
        let empty = annual_income(&[], 2026, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(empty.projected_per_capita_net_fen, None);
        assert_eq!(empty.net_fen, 0);
        let registrations = vec![quarter("a", 2026, 1, components(100, 0, 0, 0, 0))];
        let nobody = annual_income(&registrations, 2026, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nobody.projected_net_fen, Some(400));
        assert_eq!(nobody.projected_per_capita_net_fen, None);
        assert_eq!(nobody.per_capita_net_fen, None);
    }

    #[test]
    fn thresholds_resolve_by_exact_year_and_most_specific_region() {
        let county = "522731000000";
        let chain = region_chain(county);
        assert_eq!(
            chain,
            vec![
                county.to_owned(),
                "520000000000".to_owned(),
                "national".to_owned()
            ]
        );
        let rows = vec![
            threshold(2025, NATIONAL_REGION, Some(4_000), Some(6_000)),
            threshold(2026, NATIONAL_REGION, Some(4_100), Some(6_500)),
            threshold(2026, "520000000000", None, Some(7_000)),
            threshold(2026, county, None, Some(7_500)),
            threshold(2026, "510000000000", Some(9_999), Some(9_999)),
        ];
        let line = |kind, year| resolve_line(&rows, kind, year, &chain).map(|l| (l.yuan, l.region));
        assert_eq!(
            line(IncomeLineKind::Monitoring, 2025),
            Some((6_000, "national".into()))
        );
        assert_eq!(
            line(IncomeLineKind::Monitoring, 2026),
            Some((7_500, county.into()))
        );
        // The county row sets no poverty line, so the national one applies.
        assert_eq!(
            line(IncomeLineKind::Poverty, 2026),
            Some((4_100, "national".into()))
        );
        // Another province's row never applies; a year without rows has no line.
        assert_eq!(line(IncomeLineKind::Poverty, 2027), None);
        let province_chain = region_chain("520000000000");
        assert_eq!(
            resolve_line(&rows, IncomeLineKind::Monitoring, 2026, &province_chain).map(|l| l.yuan),
            Some(7_000)
        );
        assert_eq!(resolve_lines(&rows, 2026, &chain).len(), 2);
        assert_eq!(
            region_chain("county-1"),
            vec!["county-1".to_owned(), "national".to_owned()]
        );
    }

    #[test]
    fn threshold_rows_are_validated() {
        assert_eq!(
            threshold(2026, "national", Some(4_000), None).validate(),
            Ok(())
        );
        assert_eq!(
            threshold(1999, "national", Some(1), None).validate(),
            Err(ThresholdError::BadYear(1999))
        );
        assert_eq!(
            threshold(2026, "5227", Some(1), None).validate(),
            Err(ThresholdError::BadRegion("5227".into()))
        );
        assert_eq!(
            threshold(2026, "national", None, None).validate(),
            Err(ThresholdError::NoLine)
        );
        assert_eq!(
            threshold(2026, "national", Some(0), None).validate(),
            Err(ThresholdError::BadAmount(IncomeLineKind::Poverty, 0))
        );
        assert_eq!(
            threshold(2026, "national", None, Some(1_000_001)).validate(),
            Err(ThresholdError::BadAmount(
                IncomeLineKind::Monitoring,
                1_000_001
            ))
        );
        let mut long = threshold(2026, "national", Some(1), None);
        long.source_note = "字".repeat(201);
        assert_eq!(long.validate(), Err(ThresholdError::NoteTooLong));
    }

    fn line(kind: IncomeLineKind, yuan: i64) -> ResolvedLine {
        ResolvedLine {
            kind,
            yuan,
            year: 2026,
            region: NATIONAL_REGION.into(),
        }
    }

    #[test]
    fn the_flag_fires_below_line_times_one_plus_margin_and_not_at_it() {
        let lines = [line(IncomeLineKind::Monitoring, 6_000)];
        // 6,000 × 1.1 = 6,600 yuan = 660,000 fen.
        let below = projection_flag(659_999, &lines, 0.1).expect("one fen below the limit");
        assert_eq!(below.line.kind, IncomeLineKind::Monitoring);
        assert_eq!(below.threshold_fen, 660_000);
        assert_eq!(
            projection_flag(660_000, &lines, 0.1),
            None,
            "at the limit is not below it"
        );
        assert_eq!(projection_flag(700_000, &lines, 0.1), None);
        // Above the line itself but inside the margin still flags.
        assert!(projection_flag(610_000, &lines, 0.1).is_some());
        assert_eq!(projection_flag(610_000, &lines, 0.0), None);
        assert!(
            projection_flag(-5_000, &lines, 0.1).is_some(),
            "a loss flags"
        );
        assert_eq!(projection_flag(1, &[], 0.1), None, "no line, no flag");
    }

    #[test]
    fn the_flag_names_the_lowest_line_the_projection_falls_under() {
        let lines = [
            line(IncomeLineKind::Monitoring, 6_000),
            line(IncomeLineKind::Poverty, 4_000),
        ];
        let under_both = projection_flag(400_000, &lines, 0.1).expect("flag");
        assert_eq!(under_both.line.kind, IncomeLineKind::Poverty);
        let under_monitoring = projection_flag(500_000, &lines, 0.1).expect("flag");
        assert_eq!(under_monitoring.line.kind, IncomeLineKind::Monitoring);
        assert_eq!(under_monitoring.line.yuan, 6_000);
    }

    #[test]
    fn margins_become_whole_basis_points() {
        assert_eq!(margin_basis_points(0.1), 1_000);
        assert_eq!(margin_basis_points(0.125), 1_250);
        assert_eq!(margin_basis_points(-1.0), 0);
        assert_eq!(margin_basis_points(f64::NAN), 0);
        assert_eq!(margin_basis_points(1e9), 100_000);
    }
}
