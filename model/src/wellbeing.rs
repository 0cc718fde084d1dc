//! 两不愁三保障 + 饮水安全 checklist (domain.md §1.11): pure, configurable rules over a
//! household's card (members' schooling, health and insurance; the housing danger level) and
//! the 两不愁三保障 quick check of its latest visit. Each failing item carries Chinese reasons
//! a supervisor can act on.
//!
//! What the rules can see today: the card has no water or food fields, so 不愁吃, 不愁穿 and
//! 饮水安全 come from the cadre's visit check only; 义务教育, 基本医疗 and 住房安全 are judged
//! from the card AND the visit check (either one failing fails the item).

use serde::{Deserialize, Serialize};
use time::{Date, Month};

use crate::codes::{CodeList, Health, Schooling};
use crate::household::{Household, Member};
use crate::visit::{CheckResult, WellbeingCheck};

/// One checklist item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WellbeingItem {
    /// 不愁吃.
    Food,
    /// 不愁穿.
    Clothing,
    /// 义务教育有保障.
    CompulsoryEducation,
    /// 基本医疗有保障.
    BasicMedical,
    /// 住房安全有保障.
    HousingSafety,
    /// 饮水安全有保障.
    DrinkingWater,
}

impl WellbeingItem {
    /// Every item, in the order officials list them.
    pub const ALL: [WellbeingItem; 6] = [
        Self::Food,
        Self::Clothing,
        Self::CompulsoryEducation,
        Self::BasicMedical,
        Self::HousingSafety,
        Self::DrinkingWater,
    ];

    /// Stable code used in URLs and JSON.
    pub fn code(self) -> &'static str {
        match self {
            Self::Food => "food",
            Self::Clothing => "clothing",
            Self::CompulsoryEducation => "compulsory_education",
            Self::BasicMedical => "basic_medical",
            Self::HousingSafety => "housing_safety",
            Self::DrinkingWater => "drinking_water",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|item| item.code() == code)
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Food => "不愁吃",
            Self::Clothing => "不愁穿",
            Self::CompulsoryEducation => "义务教育有保障",
            Self::BasicMedical => "基本医疗有保障",
            Self::HousingSafety => "住房安全有保障",
            Self::DrinkingWater => "饮水安全有保障",
        }
    }

    /// This item's result in a visit's quick check.
    fn in_check(self, check: &WellbeingCheck) -> CheckResult {
        match self {
            Self::Food => check.food,
            Self::Clothing => check.clothing,
            Self::CompulsoryEducation => check.compulsory_education,
            Self::BasicMedical => check.basic_medical,
            Self::HousingSafety => check.housing_safety,
            Self::DrinkingWater => check.drinking_water,
        }
    }
}

/// The configurable parts of the rules (server settings table `[wellbeing]`). Defaults follow
/// domain.md §1.11.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WellbeingRules {
    /// Youngest age of compulsory education (义务教育), on the school-year start (1 September).
    pub school_age_min: u32,
    /// Oldest age of compulsory education.
    pub school_age_max: u32,
    /// Children with a disability of grade 1..=this (一、二级重度) are not counted as dropouts:
    /// they are excused for health reasons or taught at home (送教上门). 0 excuses nobody.
    pub education_exempt_max_disability_grade: u32,
    /// Children with a serious illness (患有大病) are excused from school for health reasons.
    pub education_exempt_serious_illness: bool,
    /// 基本医疗 needs 大病保险 as well as 基本医疗保险 (domain.md: "医保 + 大病保险").
    pub require_serious_illness_insurance: bool,
    /// A house never assessed (no danger level) fails 住房安全; by default it is only unknown.
    pub unassessed_housing_fails: bool,
    /// Use the latest visit's 两不愁三保障 quick check. Without it, 不愁吃/不愁穿/饮水安全 can
    /// never be judged.
    pub use_visit_check: bool,
}

impl Default for WellbeingRules {
    fn default() -> Self {
        Self {
            school_age_min: 6,
            school_age_max: 15,
            education_exempt_max_disability_grade: 2,
            education_exempt_serious_illness: true,
            require_serious_illness_insurance: true,
            unassessed_housing_fails: false,
            use_visit_check: true,
        }
    }
}

/// What the rules concluded for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pass,
    Fail,
    /// Nothing to judge by (no visit check, house never assessed).
    Unknown,
}

/// One item's outcome with its reasons (Chinese; one per failing cause).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemOutcome {
    pub item: WellbeingItem,
    pub status: ItemStatus,
    pub reasons: Vec<String>,
}

/// The whole checklist for one household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WellbeingAssessment {
    /// One outcome per item, in [`WellbeingItem::ALL`] order.
    pub items: Vec<ItemOutcome>,
}

impl WellbeingAssessment {
    /// The failing items.
    pub fn failing(&self) -> impl Iterator<Item = &ItemOutcome> {
        self.items
            .iter()
            .filter(|outcome| outcome.status == ItemStatus::Fail)
    }

    pub fn fails(&self, item: WellbeingItem) -> bool {
        self.failing().any(|outcome| outcome.item == item)
    }

    /// 两不愁三保障 overall: every item passes (unknown items do not pass).
    pub fn all_pass(&self) -> bool {
        self.items
            .iter()
            .all(|outcome| outcome.status == ItemStatus::Pass)
    }
}

/// Run the checklist. `latest_check` is the quick check of the household's latest visit,
/// `today` the date ages are computed for (Beijing time).
pub fn assess(
    household: &Household,
    latest_check: Option<&WellbeingCheck>,
    today: Date,
    rules: &WellbeingRules,
) -> WellbeingAssessment {
    let check = latest_check.filter(|_| rules.use_visit_check);
    let items = WellbeingItem::ALL
        .into_iter()
        .map(|item| {
            let mut reasons = Vec::new();
            let mut judged = false;
            if let Some(check) = check {
                match item.in_check(check) {
                    CheckResult::Fail => {
                        judged = true;
                        reasons.push(format!("最近一次走访核查：{}不达标", item.label_zh()));
                    }
                    CheckResult::Pass => judged = true,
                    CheckResult::NotChecked => {}
                }
            }
            match item {
                WellbeingItem::CompulsoryEducation => {
                    judged = true;
                    reasons.extend(education_reasons(household, today, rules));
                }
                WellbeingItem::BasicMedical => {
                    judged = true;
                    reasons.extend(medical_reasons(household, rules));
                }
                WellbeingItem::HousingSafety => match household.housing_danger_level {
                    Some(level) => {
                        judged = true;
                        if !level.is_safe() {
                            reasons.push(format!("住房鉴定为{}", level.label_zh()));
                        }
                    }
                    None if rules.unassessed_housing_fails => {
                        judged = true;
                        reasons.push("住房未经安全鉴定".to_owned());
                    }
                    None => {}
                },
                WellbeingItem::Food | WellbeingItem::Clothing | WellbeingItem::DrinkingWater => {}
            }
            let status = if !reasons.is_empty() {
                ItemStatus::Fail
            } else if judged {
                ItemStatus::Pass
            } else {
                ItemStatus::Unknown
            };
            ItemOutcome {
                item,
                status,
                reasons,
            }
        })
        .collect();
    WellbeingAssessment { items }
}

/// Age in whole years on `on`, or `None` for a birth date that is not `YYYY-MM-DD`.
pub fn age_on(birth_date: &str, on: Date) -> Option<i32> {
    let mut parts = birth_date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let birth = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    let mut age = on.year() - birth.year();
    if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
        age -= 1;
    }
    Some(age)
}

/// 1 September of the school year `today` falls in: schooling follows the age a child had
/// when the school year started, as 学籍 does, not its age today.
pub fn school_year_start(today: Date) -> Date {
    let year = if today.month() >= Month::September {
        today.year()
    } else {
        today.year() - 1
    };
    Date::from_calendar_date(year, Month::September, 1).unwrap_or(today)
}

fn education_reasons(household: &Household, today: Date, rules: &WellbeingRules) -> Vec<String> {
    let start = school_year_start(today);
    household
        .current_members()
        .filter_map(|member| {
            let age = age_on(&member.birth_date, start)?;
            let in_range = age >= rules.school_age_min as i32 && age <= rules.school_age_max as i32;
            let out_of_school = matches!(
                member.schooling,
                Schooling::NotInSchool | Schooling::Preschool
            );
            (in_range && out_of_school && !excused_from_school(member, rules)).then(|| {
                format!(
                    "{}（{}岁）为义务教育阶段适龄儿童，在校状况为{}",
                    member.name,
                    age,
                    member.schooling.label_zh()
                )
            })
        })
        .collect()
}

fn excused_from_school(member: &Member, rules: &WellbeingRules) -> bool {
    let severe_disability = member.disability_grade >= 1
        && member.disability_grade <= rules.education_exempt_max_disability_grade;
    let serious_illness =
        rules.education_exempt_serious_illness && member.health == Health::SeriousIllness;
    severe_disability || serious_illness
}

fn medical_reasons(household: &Household, rules: &WellbeingRules) -> Vec<String> {
    household
        .current_members()
        .filter_map(|member| {
            let mut missing = Vec::new();
            if !member.has_medical_insurance {
                missing.push("基本医疗保险");
            }
            if rules.require_serious_illness_insurance && !member.has_serious_illness_insurance {
                missing.push("大病保险");
            }
            (!missing.is_empty()).then(|| format!("{}未参加{}", member.name, missing.join("、")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{
        Disability, HouseholdAttribute, HousingDangerLevel, LabourCapacity, PovertyCause, Relation,
        Sex,
    };
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 29);

    fn member(name: &str, birth_date: &str, schooling: Schooling) -> Member {
        Member {
            member_id: name.into(),
            name: name.into(),
            relation: Relation::Son,
            sex: Sex::Male,
            birth_date: birth_date.into(),
            id_number: String::new(),
            health: Health::Healthy,
            labour_capacity: LabourCapacity::Ordinary,
            schooling,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: true,
            has_serious_illness_insurance: true,
            has_pension_insurance: true,
            removed: false,
        }
    }

    fn household(members: Vec<Member>, level: Option<HousingDangerLevel>) -> Household {
        Household {
            household_id: "h".into(),
            national_household_number: String::new(),
            head_name: "户主".into(),
            township_id: "t".into(),
            village_id: "v".into(),
            village_name: "村".into(),
            address: String::new(),
            phone: String::new(),
            attribute: HouseholdAttribute::General,
            main_cause: PovertyCause::Illness,
            secondary_causes: Vec::new(),
            housing_danger_level: level,
            location: None,
            members,
            measures: Vec::new(),
            server_seq: 0,
            field_seqs: Default::default(),
        }
    }

    fn healthy_family() -> Household {
        household(
            vec![
                member("王大山", "1970-05-01", Schooling::NotInSchool),
                member("王小明", "2014-03-01", Schooling::Primary),
            ],
            Some(HousingDangerLevel::B),
        )
    }

    fn status(assessment: &WellbeingAssessment, item: WellbeingItem) -> ItemStatus {
        assessment
            .items
            .iter()
            .find(|o| o.item == item)
            .map(|o| o.status)
            .expect("item")
    }

    fn reasons(assessment: &WellbeingAssessment, item: WellbeingItem) -> Vec<String> {
        assessment
            .items
            .iter()
            .find(|o| o.item == item)
            .map(|o| o.reasons.clone())
            .expect("item")
    }

    #[test]
    fn a_healthy_family_with_a_passing_visit_passes_everything() {
        let check = WellbeingCheck {
            food: CheckResult::Pass,
            clothing: CheckResult::Pass,
            compulsory_education: CheckResult::Pass,
            basic_medical: CheckResult::Pass,
            housing_safety: CheckResult::Pass,
            drinking_water: CheckResult::Pass,
            note: String::new(),
        };
        let assessment = assess(
            &healthy_family(),
            Some(&check),
            TODAY,
            &WellbeingRules::default(),
        );
        assert!(assessment.all_pass(), "{assessment:?}");
        assert_eq!(assessment.failing().count(), 0);
    }

    #[test]
    fn without_a_visit_check_food_clothing_and_water_are_unknown_not_failing() {
        let assessment = assess(&healthy_family(), None, TODAY, &WellbeingRules::default());
        for item in [
            WellbeingItem::Food,
            WellbeingItem::Clothing,
            WellbeingItem::DrinkingWater,
        ] {
            assert_eq!(status(&assessment, item), ItemStatus::Unknown);
        }
        assert_eq!(
            status(&assessment, WellbeingItem::CompulsoryEducation),
            ItemStatus::Pass
        );
        assert_eq!(
            status(&assessment, WellbeingItem::BasicMedical),
            ItemStatus::Pass
        );
        assert_eq!(
            status(&assessment, WellbeingItem::HousingSafety),
            ItemStatus::Pass
        );
        assert!(!assessment.all_pass());
    }

    #[test]
    fn each_visit_check_failure_fails_its_item_with_a_reason() {
        for item in WellbeingItem::ALL {
            let mut check = WellbeingCheck::default();
            match item {
                WellbeingItem::Food => check.food = CheckResult::Fail,
                WellbeingItem::Clothing => check.clothing = CheckResult::Fail,
                WellbeingItem::CompulsoryEducation => {
                    check.compulsory_education = CheckResult::Fail
                }
                WellbeingItem::BasicMedical => check.basic_medical = CheckResult::Fail,
                WellbeingItem::HousingSafety => check.housing_safety = CheckResult::Fail,
                WellbeingItem::DrinkingWater => check.drinking_water = CheckResult::Fail,
            }
            let assessment = assess(
                &healthy_family(),
                Some(&check),
                TODAY,
                &WellbeingRules::default(),
            );
            let failing: Vec<WellbeingItem> = assessment.failing().map(|o| o.item).collect();
            assert_eq!(failing, vec![item]);
            assert_eq!(
                reasons(&assessment, item),
                vec![format!("最近一次走访核查：{}不达标", item.label_zh())]
            );
            let ignored = WellbeingRules {
                use_visit_check: false,
                ..WellbeingRules::default()
            };
            assert_eq!(
                assess(&healthy_family(), Some(&check), TODAY, &ignored)
                    .failing()
                    .count(),
                0
            );
        }
    }

    #[test]
    fn a_school_age_child_out_of_school_fails_education_unless_excused() {
        // Born 2014-03-01: 12 on 2026-09-01.
        let mut family = healthy_family();
        family.members[1].schooling = Schooling::NotInSchool;
        let rules = WellbeingRules::default();
        let assessment = assess(&family, None, TODAY, &rules);
        assert_eq!(
            reasons(&assessment, WellbeingItem::CompulsoryEducation),
            vec!["王小明（12岁）为义务教育阶段适龄儿童，在校状况为非在校生".to_owned()]
        );
        // 一级 disability: excused (送教上门); 三级 is not.
        family.members[1].disability = Disability::Intellectual;
        family.members[1].disability_grade = 1;
        assert!(!assess(&family, None, TODAY, &rules).fails(WellbeingItem::CompulsoryEducation));
        family.members[1].disability_grade = 3;
        assert!(assess(&family, None, TODAY, &rules).fails(WellbeingItem::CompulsoryEducation));
        family.members[1].disability_grade = 0;
        family.members[1].health = Health::SeriousIllness;
        assert!(!assess(&family, None, TODAY, &rules).fails(WellbeingItem::CompulsoryEducation));
        // A removed member is not counted.
        family.members[1].health = Health::Healthy;
        family.members[1].removed = true;
        assert!(!assess(&family, None, TODAY, &rules).fails(WellbeingItem::CompulsoryEducation));
    }

    #[test]
    fn school_ages_are_configurable_and_counted_on_the_school_year_start() {
        // Born 2020-10-01: 5 on 2026-09-01 (6 only in October), so preschool is fine.
        let mut family = healthy_family();
        family
            .members
            .push(member("王小妹", "2020-10-01", Schooling::Preschool));
        let rules = WellbeingRules::default();
        assert!(!assess(&family, None, TODAY, &rules).fails(WellbeingItem::CompulsoryEducation));
        let younger = WellbeingRules {
            school_age_min: 5,
            ..rules
        };
        assert!(assess(&family, None, TODAY, &younger).fails(WellbeingItem::CompulsoryEducation));
        // A 16-year-old (born 2010-01-01) out of school is past compulsory age.
        let mut older = healthy_family();
        older.members[1] = member("王大明", "2010-01-01", Schooling::NotInSchool);
        assert!(
            !assess(&older, None, TODAY, &WellbeingRules::default())
                .fails(WellbeingItem::CompulsoryEducation)
        );
        assert_eq!(
            school_year_start(date!(2026 - 08 - 31)),
            date!(2025 - 09 - 01)
        );
        assert_eq!(
            school_year_start(date!(2026 - 09 - 01)),
            date!(2026 - 09 - 01)
        );
        assert_eq!(age_on("2014-09-02", date!(2026 - 09 - 01)), Some(11));
        assert_eq!(age_on("not a date", TODAY), None);
    }

    #[test]
    fn an_uninsured_member_fails_basic_medical() {
        let mut family = healthy_family();
        family.members[0].has_medical_insurance = false;
        family.members[0].has_serious_illness_insurance = false;
        family.members[1].has_serious_illness_insurance = false;
        let rules = WellbeingRules::default();
        assert_eq!(
            reasons(
                &assess(&family, None, TODAY, &rules),
                WellbeingItem::BasicMedical
            ),
            vec![
                "王大山未参加基本医疗保险、大病保险".to_owned(),
                "王小明未参加大病保险".to_owned()
            ]
        );
        let lenient = WellbeingRules {
            require_serious_illness_insurance: false,
            ..rules
        };
        assert_eq!(
            reasons(
                &assess(&family, None, TODAY, &lenient),
                WellbeingItem::BasicMedical
            ),
            vec!["王大山未参加基本医疗保险".to_owned()],
            "without the 大病保险 rule only the missing 基本医疗保险 counts"
        );
    }

    #[test]
    fn c_and_d_houses_fail_housing_and_unassessed_ones_are_configurable() {
        let rules = WellbeingRules::default();
        for (level, fails) in [
            (HousingDangerLevel::A, false),
            (HousingDangerLevel::B, false),
            (HousingDangerLevel::C, true),
            (HousingDangerLevel::D, true),
        ] {
            let family = household(healthy_family().members, Some(level));
            let assessment = assess(&family, None, TODAY, &rules);
            assert_eq!(
                assessment.fails(WellbeingItem::HousingSafety),
                fails,
                "{level:?}"
            );
            if fails {
                assert_eq!(
                    reasons(&assessment, WellbeingItem::HousingSafety),
                    vec![format!("住房鉴定为{}", level.label_zh())]
                );
            }
        }
        let unassessed = household(healthy_family().members, None);
        assert_eq!(
            status(
                &assess(&unassessed, None, TODAY, &rules),
                WellbeingItem::HousingSafety
            ),
            ItemStatus::Unknown
        );
        let strict = WellbeingRules {
            unassessed_housing_fails: true,
            ..rules
        };
        assert!(assess(&unassessed, None, TODAY, &strict).fails(WellbeingItem::HousingSafety));
    }

    #[test]
    fn item_codes_round_trip() {
        for item in WellbeingItem::ALL {
            assert_eq!(WellbeingItem::from_code(item.code()), Some(item));
        }
        assert_eq!(WellbeingItem::from_code("water"), None);
    }
}
