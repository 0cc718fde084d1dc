//! 建档立卡户 households, their members (家庭成员) and help-plan measures (帮扶措施).

use serde::{Deserialize, Serialize};

use crate::codes::{
    Crs, Disability, FundingSource, Health, HouseholdAttribute, HousingDangerLevel, LabourCapacity,
    MeasureCategory, MeasureStatus, PovertyCause, Relation, Schooling, Sex,
};

/// A point with its coordinate system.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
    pub crs: Crs,
}

/// One registered household, as the 明白卡 shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Household {
    pub household_id: String,
    /// 户编号 in the national system.
    pub national_household_number: String,
    pub head_name: String,
    pub township_id: String,
    pub village_id: String,
    pub village_name: String,
    pub address: String,
    /// 联系电话; sensitive.
    pub phone: String,
    pub attribute: HouseholdAttribute,
    pub main_cause: PovertyCause,
    pub secondary_causes: Vec<PovertyCause>,
    pub housing_danger_level: Option<HousingDangerLevel>,
    pub location: Option<GeoPoint>,
    pub members: Vec<Member>,
    pub measures: Vec<HelpMeasure>,
    /// Server sequence of the household's last change (0 before it reached the server).
    pub server_seq: i64,
    /// Server sequence of the last write to each edited field, keyed by [`field_seq_key`];
    /// an edit quotes it as its `base_seq`. Fields never edited are absent (0).
    #[serde(default)]
    pub field_seqs: std::collections::BTreeMap<String, i64>,
}

/// Key of a field in [`Household::field_seqs`]: `household.<field>` or
/// `member:<member_id>.<field>`.
pub fn field_seq_key(target: &crate::register::FieldTarget, field: &str) -> String {
    format!("{}.{field}", target.as_key())
}

impl Household {
    /// The `base_seq` an edit of this field should quote.
    pub fn field_seq(&self, target: &crate::register::FieldTarget, field: &str) -> i64 {
        self.field_seqs
            .get(&field_seq_key(target, field))
            .copied()
            .unwrap_or(0)
    }
}

impl Household {
    /// Members that have not been removed.
    pub fn current_members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|member| !member.removed)
    }
}

/// 家庭成员 one person in a household.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub member_id: String,
    pub name: String,
    pub relation: Relation,
    pub sex: Sex,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// 18-digit 身份证号; sensitive.
    pub id_number: String,
    pub health: Health,
    pub labour_capacity: LabourCapacity,
    pub schooling: Schooling,
    pub disability: Disability,
    /// 1–4 for 一级–四级; 0 when not disabled.
    pub disability_grade: u32,
    pub has_medical_insurance: bool,
    pub has_serious_illness_insurance: bool,
    pub has_pension_insurance: bool,
    pub removed: bool,
}

/// 帮扶措施 one measure of the help plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelpMeasure {
    pub measure_id: String,
    pub category: MeasureCategory,
    pub name: String,
    /// 规模, e.g. "养羊30只".
    pub scale: String,
    pub funding_fen: i64,
    pub funding_source: Option<FundingSource>,
    /// YYYY-MM-DD, or empty.
    pub deadline: String,
    pub status: MeasureStatus,
}
