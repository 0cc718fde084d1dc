//! The households and income area of the store: income registrations (收入登记) and the
//! thresholds they are judged by (标准线), the households of an area, the latest
//! 两不愁三保障 check of each household, and the household page's dossier (明白卡). SQLite
//! in `sqlite.rs`, the checks every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::codes::{CadreRank, ReviewState};
use fieldsync_model::household::Household;
use fieldsync_model::income::{IncomeRegistration, IncomeThreshold};
use fieldsync_model::visit::{Visit, WellbeingCheck};
use time::OffsetDateTime;

use crate::store::StoreResult;

/// A cadre actively paired with a household (结对帮扶干部), for the household page and card.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedCadre {
    pub user_id: String,
    pub display_name: String,
    /// Full number; callers mask it unless the page may show it (the 明白卡 does).
    pub phone: String,
    pub rank: Option<CadreRank>,
    /// 第一帮扶责任人.
    pub is_primary: bool,
}

/// One visit of a household's history: its latest revision with its review state.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdVisit {
    pub visit: Visit,
    pub state: ReviewState,
    pub cadre_name: String,
}

/// What the household page and the 明白卡 show about one household.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdDossier {
    pub household: Household,
    /// Active pairings, primary first, then by name.
    pub cadres: Vec<PairedCadre>,
    /// Every income registration of the household, in arrival order (a correction of a
    /// quarter comes after the registration it corrects).
    pub registrations: Vec<IncomeRegistration>,
    /// Latest revision of each visit, latest check-in first.
    pub visits: Vec<HouseholdVisit>,
    /// Unresolved conflict records of the household.
    pub open_conflicts: u32,
}

/// The quick check of a household's latest visit ([`Store::latest_wellbeing_checks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LatestWellbeingCheck {
    pub household_id: String,
    pub visit_id: String,
    pub checkin_at: OffsetDateTime,
    pub check: WellbeingCheck,
}

/// Storage of households, their income and their wellbeing checks. Every method is a
/// complete unit of work.
#[async_trait]
pub trait HouseholdsStore: Send + Sync {
    /// Latest income registrations of a household, newest first.
    async fn income_registrations(
        &self,
        household_id: &str,
    ) -> StoreResult<Vec<IncomeRegistration>>;
    /// Every threshold row (标准线), by year then region. The table is small (a few rows per
    /// year), so callers resolve lines in memory with `income::resolve_line`.
    async fn income_thresholds(&self) -> StoreResult<Vec<IncomeThreshold>>;
    /// Insert or replace the row of `(year, region)`.
    async fn set_income_threshold(&self, threshold: IncomeThreshold) -> StoreResult<()>;
    /// Store income registrations that did not come through a phone push (the demo county,
    /// a later register import), in one transaction. A registration id already stored with
    /// the same content is skipped; with other content it is a `Conflict`. An unknown
    /// household is `NotFound`. Nothing is stored when any entry fails.
    async fn save_income_registrations(
        &self,
        registrations: Vec<IncomeRegistration>,
    ) -> StoreResult<()>;
    /// Households of an area: a township's, or every township's of a county (townships whose
    /// parent is `area_id`), ordered by village then head name.
    async fn households_in_area(&self, area_id: &str) -> StoreResult<Vec<Household>>;
    /// Income registrations of `year` for the households of an area (as
    /// [`Store::households_in_area`]), in arrival order so that a later correction of a
    /// quarter comes after the registration it corrects.
    async fn area_income_registrations(
        &self,
        area_id: &str,
        year: i32,
    ) -> StoreResult<Vec<IncomeRegistration>>;
    /// For each household of an area with at least one visit: the 两不愁三保障 quick check of
    /// its latest visit (latest check-in; the visit's latest revision, whatever its review
    /// state, because the check records what the cadre saw).
    async fn latest_wellbeing_checks(
        &self,
        area_id: &str,
    ) -> StoreResult<Vec<LatestWellbeingCheck>>;
    /// Everything the household page and the 明白卡 show, read in one snapshot; `None` for an
    /// unknown household.
    async fn household_dossier(&self, household_id: &str) -> StoreResult<Option<HouseholdDossier>>;

    async fn get_household(&self, household_id: &str) -> StoreResult<Option<Household>>;
}
