//! Pairing (结对) rules: the 8741 quota by cadre rank and "every active household has exactly
//! one first responsible cadre (第一帮扶责任人)", as pure checks (domain.md §1.5, §1.6, §2.2).
//!
//! The quota scheme comes from one county's speech (通渭, Gansu, 双联行动) [S:L741]:
//! "正县级干部、副县级干部、科级干部、一般干部每人分别结对帮扶8户、7户、4户、1户贫困户,
//! 剩余贫困户由乡镇驻村干部兜底联系". So a 正县级 leader pairs with up to 8 households, a
//! 副县级 with 7, a 科级 with 4 and a 一般干部 with 1. domain.md §6 notes that no other source
//! corroborates it, so the numbers are a [`QuotaTable`] value, configurable per county.
//!
//! A cadre without a rank is a 乡镇驻村干部 taking the leftovers (兜底联系) and has no quota.
//! The quota counts the cadre's active PRIMARY pairings (第一帮扶责任人): the households the
//! cadre is responsible for. Secondary pairings (第二帮扶责任人) do not count.

use crate::CodeList;
use crate::codes::CadreRank;

/// The most households a cadre of each rank may be first responsible for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaTable {
    pub county_level: u32,
    pub deputy_county_level: u32,
    pub section_level: u32,
    pub general: u32,
}

impl QuotaTable {
    /// 8741 as 通渭 set it [S:L741]: 正县级 8, 副县级 7, 科级 4, 一般干部 1.
    pub const TONGWEI_8741: QuotaTable = QuotaTable {
        county_level: 8,
        deputy_county_level: 7,
        section_level: 4,
        general: 1,
    };

    /// The quota of a rank; `None` (no quota) for a cadre without a rank (兜底联系).
    pub fn quota(&self, rank: Option<CadreRank>) -> Option<u32> {
        rank.map(|rank| self.for_rank(rank))
    }

    /// The quota of a cadre with this rank.
    pub fn for_rank(&self, rank: CadreRank) -> u32 {
        match rank {
            CadreRank::CountyLevel => self.county_level,
            CadreRank::DeputyCountyLevel => self.deputy_county_level,
            CadreRank::SectionLevel => self.section_level,
            CadreRank::General => self.general,
        }
    }
}

impl Default for QuotaTable {
    fn default() -> Self {
        Self::TONGWEI_8741
    }
}

/// A cadre's load against the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaStatus {
    /// `None` when the cadre has no quota.
    pub quota: Option<u32>,
    /// Active primary pairings now.
    pub count: u32,
}

impl QuotaStatus {
    pub fn new(table: &QuotaTable, rank: Option<CadreRank>, count: u32) -> Self {
        Self {
            quota: table.quota(rank),
            count,
        }
    }

    /// How many households beyond the quota (0 when within it or without a quota).
    pub fn over_by(&self) -> u32 {
        self.quota
            .map_or(0, |quota| self.count.saturating_sub(quota))
    }

    pub fn is_over(&self) -> bool {
        self.over_by() > 0
    }
}

/// Why a pairing change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingRefusal {
    /// The cadre would exceed the quota and the admin did not tick 超额确认.
    #[error(
        "该干部职级为{rank}，结对上限{quota}户，现有{count}户；再分配将超出上限。如确需超额，请勾选“超额确认”（将记录审计日志）"
    )]
    OverQuota {
        rank: &'static str,
        quota: u32,
        count: u32,
    },
    /// The cadre works in another county than the household.
    #[error("该干部不属于此户所在县，不能结对")]
    OutsideCounty,
    /// The cadre is already the household's first responsible cadre.
    #[error("该干部已是此户的第一帮扶责任人")]
    AlreadyPrimary,
}

/// What an accepted primary assignment means for the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// Within the quota (or the cadre has none).
    Within,
    /// Beyond the quota, confirmed by the admin (超额确认): must be audited.
    OverConfirmed { quota: u32, count_after: u32 },
}

/// Check making a cadre the first responsible cadre of one more household: `current` is the
/// cadre's load now (before the change); `confirmed_over_quota` is the admin's 超额确认.
pub fn check_primary_assignment(
    table: &QuotaTable,
    rank: Option<CadreRank>,
    current: u32,
    confirmed_over_quota: bool,
) -> Result<QuotaOutcome, PairingRefusal> {
    let Some(quota) = table.quota(rank) else {
        return Ok(QuotaOutcome::Within);
    };
    let count_after = current.saturating_add(1);
    if count_after <= quota {
        return Ok(QuotaOutcome::Within);
    }
    if confirmed_over_quota {
        return Ok(QuotaOutcome::OverConfirmed { quota, count_after });
    }
    Err(PairingRefusal::OverQuota {
        rank: rank.map_or("", CadreRank::label_zh),
        quota,
        count: current,
    })
}

/// Refuse a cadre of another county (the cadre's county is the parent of their township).
pub fn check_same_county(
    cadre_county_id: Option<&str>,
    household_county_id: Option<&str>,
) -> Result<(), PairingRefusal> {
    match (cadre_county_id, household_county_id) {
        (Some(cadre), Some(household)) if cadre == household => Ok(()),
        _ => Err(PairingRefusal::OutsideCounty),
    }
}

/// A household's active primary count, for the "exactly one 第一帮扶责任人" check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdPrimaries {
    pub household_id: String,
    pub primary_count: u32,
}

/// What is wrong with a household's primaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryProblem {
    /// No 第一帮扶责任人: breaks 两个全覆盖 [S:L741].
    NoPrimary,
    /// Two or more 第一帮扶责任人: responsibility is unclear.
    SeveralPrimaries(u32),
}

impl PrimaryProblem {
    pub fn label_zh(self) -> String {
        match self {
            Self::NoPrimary => "无第一帮扶责任人".to_owned(),
            Self::SeveralPrimaries(count) => format!("有{count}名第一帮扶责任人"),
        }
    }
}

/// The problem of one household, if any: exactly one primary is the only valid state.
pub fn primary_problem(primary_count: u32) -> Option<PrimaryProblem> {
    match primary_count {
        1 => None,
        0 => Some(PrimaryProblem::NoPrimary),
        several => Some(PrimaryProblem::SeveralPrimaries(several)),
    }
}

/// The households with a problem, in input order.
pub fn primary_problems(households: &[HouseholdPrimaries]) -> Vec<(&str, PrimaryProblem)> {
    households
        .iter()
        .filter_map(|household| {
            primary_problem(household.primary_count)
                .map(|problem| (household.household_id.as_str(), problem))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_follow_tongwei_8741_by_rank() {
        let table = QuotaTable::default();
        let quotas: Vec<Option<u32>> = [
            CadreRank::CountyLevel,
            CadreRank::DeputyCountyLevel,
            CadreRank::SectionLevel,
            CadreRank::General,
        ]
        .into_iter()
        .map(|rank| table.quota(Some(rank)))
        .collect();
        assert_eq!(quotas, vec![Some(8), Some(7), Some(4), Some(1)]);
        assert_eq!(table.quota(None), None, "兜底联系 has no quota");
    }

    #[test]
    fn an_assignment_beyond_the_quota_needs_confirmation() {
        let table = QuotaTable::default();
        let section = Some(CadreRank::SectionLevel);
        assert_eq!(
            check_primary_assignment(&table, section, 3, false),
            Ok(QuotaOutcome::Within)
        );
        assert_eq!(
            check_primary_assignment(&table, section, 4, false),
            Err(PairingRefusal::OverQuota {
                rank: "科级",
                quota: 4,
                count: 4
            })
        );
        assert_eq!(
            check_primary_assignment(&table, section, 4, true),
            Ok(QuotaOutcome::OverConfirmed {
                quota: 4,
                count_after: 5
            })
        );
        assert_eq!(
            check_primary_assignment(&table, None, 40, false),
            Ok(QuotaOutcome::Within)
        );
        let message = check_primary_assignment(&table, Some(CadreRank::General), 1, false)
            .expect_err("over")
            .to_string();
        assert!(message.contains("超额确认"), "{message}");
    }

    #[test]
    fn load_over_quota_is_counted() {
        let table = QuotaTable::default();
        let status = QuotaStatus::new(&table, Some(CadreRank::General), 3);
        assert_eq!(status.over_by(), 2);
        assert!(status.is_over());
        assert!(!QuotaStatus::new(&table, Some(CadreRank::CountyLevel), 8).is_over());
        assert!(!QuotaStatus::new(&table, None, 99).is_over());
    }

    #[test]
    fn every_household_needs_exactly_one_primary() {
        let households = [
            HouseholdPrimaries {
                household_id: "a".into(),
                primary_count: 1,
            },
            HouseholdPrimaries {
                household_id: "b".into(),
                primary_count: 0,
            },
            HouseholdPrimaries {
                household_id: "c".into(),
                primary_count: 2,
            },
        ];
        assert_eq!(
            primary_problems(&households),
            vec![
                ("b", PrimaryProblem::NoPrimary),
                ("c", PrimaryProblem::SeveralPrimaries(2))
            ]
        );
        assert_eq!(PrimaryProblem::NoPrimary.label_zh(), "无第一帮扶责任人");
    }

    #[test]
    fn cadres_of_another_county_are_refused() {
        assert_eq!(check_same_county(Some("c1"), Some("c1")), Ok(()));
        assert_eq!(
            check_same_county(Some("c1"), Some("c2")),
            Err(PairingRefusal::OutsideCounty)
        );
        assert_eq!(
            check_same_county(None, Some("c1")),
            Err(PairingRefusal::OutsideCounty)
        );
    }
}
