//! The demo county behind `fieldsync-server --demo`: one county with 2 townships, 6 villages,
//! about 320 registered households (members, ID numbers, locations, help measures), about
//! 60 cadres, 2 township supervisors and a county administrator. Pairing follows 通渭's 8741
//! scheme [S:L741]: ranked cadres take households up to their quota (正县级 8, 副县级 7, 科级 4,
//! 一般干部 1; [`crate::pairings::quota_table`]) and 乡镇驻村干部 without a rank take the
//! remaining households (兜底联系, no quota).
//!
//! Generation is a pure function of a seed ([`generate_demo_county`]): no clock, no I/O, no
//! thread-local randomness. That keeps the README tour stable (`cadre01` always has the same
//! 8 households), lets the binary print the demo logins on every start without touching the
//! database ([`demo_logins`]), and lets tests compare two runs. Password hashing is separate
//! ([`hash_demo_passwords`]) because argon2 is deliberately slow and most callers (tests,
//! printing logins) do not need it.
//!
//! Everything is fictional. The codes and coordinates only look like a rural county in
//! southern Guizhou so that maps, distances and ID checks behave as they would in the field.

use std::collections::HashSet;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{
    CadreRank, Crs, Disability, FundingSource, Health, HouseholdAttribute, HousingDangerLevel,
    LabourCapacity, MeasureCategory, MeasureStatus, PovertyCause, Relation, Role, Schooling, Sex,
};
use fieldsync_model::household::{GeoPoint, HelpMeasure, Household, Member};
use fieldsync_model::id_number;
use fieldsync_model::income::{
    IncomeComponents, IncomeRegistration, IncomeThreshold, NATIONAL_REGION,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::auth::{AuthError, hash_password};
use crate::pairings::quota_table;
use crate::store::{Area, Pairing, SeedData, Store, StoreError, UserRecord};

/// Seed used by `--demo`. Fixed, so every installation gets the same county and the README
/// can name households and accounts.
pub const DEMO_SEED: u64 = 20_261_129;
/// The one password every demo account shares. Demo only: it is printed on the console.
pub const DEMO_PASSWORD: &str = "fieldsync-demo";
/// 12-digit statistical area code of the demo county.
pub const DEMO_COUNTY_ID: &str = "522731000000";
/// The cadre the README tour logs in as: a 正县级 cadre in 清水镇 with exactly 8 households
/// (the full 8741 quota of the rank), all in 桃园村.
pub const DEMO_TOUR_CADRE: &str = "cadre01";
/// The supervisor of the tour cadre's township.
pub const DEMO_TOUR_SUPERVISOR: &str = "township1";
/// The county administrator.
pub const DEMO_COUNTY_ADMIN: &str = "county";

/// Ages are computed on this date (the start of the 2026 school year), so schooling matches
/// age the way 学籍 does, and no one is born after the demo's "today".
const REFERENCE_YEAR: i32 = 2026;
const REFERENCE_MONTH_DAY: (u8, u8) = (9, 1);
/// 6-digit region prefix of the county's ID numbers (地址码).
const ID_REGION_PREFIX: &str = "522731";
const COUNTY_NAME: &str = "示范县";
const COUNTY_CENTRE: (f64, f64) = (26.3800, 107.4500);
/// Households per village, inclusive range; 6 villages × 52 ≥ 300 at the low end.
const HOUSEHOLDS_PER_VILLAGE: (u32, u32) = (52, 56);
/// Home locations lie this far from the village centre (metres), as scattered hamlets do.
const HOME_DISTANCE_M: (f64, f64) = (300.0, 3_000.0);

/// Cadre ranks of one township's roster (30 cadres) before shuffling; `None` is a 乡镇驻村干部
/// without a rank who takes the remaining households (兜底联系, no quota) [S:L741]. The ranked
/// cadres' 8741 capacity is 1·8 + 3·7 + 8·4 + 10·1 = 71 households; the 8 驻村干部 share the
/// rest, 85 to 97 households (11 to 13 each) for the 3 × 52 = 156 to 3 × 56 = 168 households a
/// township can have.
const TOWNSHIP_RANK_MIX: [(Option<CadreRank>, usize); 5] = [
    (Some(CadreRank::CountyLevel), 1),
    (Some(CadreRank::DeputyCountyLevel), 3),
    (Some(CadreRank::SectionLevel), 8),
    (Some(CadreRank::General), 10),
    (None, 8),
];
/// How a cadre without a rank shows in the login notes.
const BACKSTOP_LABEL: &str = "乡镇驻村干部（兜底联系）";

struct VillageSpec {
    code_suffix: &'static str,
    name: &'static str,
    centre: (f64, f64),
}

struct TownshipSpec {
    code_suffix: &'static str,
    name: &'static str,
    supervisor_username: &'static str,
    centre: (f64, f64),
    villages: [VillageSpec; 3],
}

/// Township codes 1xx are 镇 and 2xx are 乡; village committees are 2xx within a township.
const TOWNSHIPS: [TownshipSpec; 2] = [
    TownshipSpec {
        code_suffix: "101",
        name: "清水镇",
        supervisor_username: "township1",
        centre: (26.4330, 107.3340),
        villages: [
            VillageSpec {
                code_suffix: "201",
                name: "桃园村",
                centre: (26.4521, 107.3012),
            },
            VillageSpec {
                code_suffix: "202",
                name: "河口村",
                centre: (26.4186, 107.3467),
            },
            VillageSpec {
                code_suffix: "203",
                name: "新寨村",
                centre: (26.4705, 107.3589),
            },
        ],
    },
    TownshipSpec {
        code_suffix: "201",
        name: "石门乡",
        supervisor_username: "township2",
        centre: (26.3050, 107.5650),
        villages: [
            VillageSpec {
                code_suffix: "201",
                name: "石门村",
                centre: (26.3127, 107.5406),
            },
            VillageSpec {
                code_suffix: "202",
                name: "龙井村",
                centre: (26.2764, 107.5815),
            },
            VillageSpec {
                code_suffix: "203",
                name: "高坡村",
                centre: (26.3381, 107.6102),
            },
        ],
    },
];

/// Common Han surnames plus the Buyi and Miao surnames frequent in southern Guizhou.
const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "韦", "龙", "石", "潘", "蒙", "岑", "陆", "梁", "宋", "谢", "唐", "冯",
];
/// Given names by generation, so that grandparents and grandchildren sound like them.
const MALE_NAMES_OLDER: &[&str] = &[
    "建国", "国强", "德明", "志明", "建华", "建军", "海军", "文华", "正华", "家福", "世明", "应祥",
    "德华", "永福", "光明", "明", "刚", "军", "强", "平", "华", "勇", "忠", "贵", "学文", "开富",
];
const MALE_NAMES_YOUNGER: &[&str] = &[
    "浩然", "子豪", "俊杰", "宇航", "梓轩", "浩宇", "博文", "一鸣", "天佑", "磊", "涛", "斌", "鹏",
    "伟", "杰", "浩", "宇", "凯", "俊", "鑫", "家乐", "明轩", "晨阳", "思远",
];
const FEMALE_NAMES_OLDER: &[&str] = &[
    "秀英", "桂英", "秀兰", "桂兰", "玉兰", "玉梅", "淑珍", "凤英", "翠花", "素芬", "金花", "丽",
    "芳", "英", "兰", "梅", "秀芳", "春花", "桂芳", "美英", "小燕", "红梅",
];
const FEMALE_NAMES_YOUNGER: &[&str] = &[
    "欣怡", "梓涵", "雨涵", "思琪", "佳怡", "婷", "敏", "静", "丹", "雪", "倩", "晓燕", "艳", "玲",
    "丽娟", "诗涵", "可馨", "雨欣", "紫涵", "梦瑶",
];
/// Mobile prefixes of the three carriers (13x/15x/18x).
const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "180", "181", "182", "183", "185", "186", "187",
    "188", "189",
];
const GROUP_NAMES: &[&str] = &[
    "一组", "二组", "三组", "四组", "五组", "六组", "七组", "八组",
];

/// One demo account as the binary prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoLogin {
    pub username: String,
    pub password: String,
    /// The role's Chinese label, e.g. "帮扶干部".
    pub role_label: String,
    pub display_name: String,
    /// What the account is for, e.g. "正县级，清水镇，结对 8 户（上限 8）：桃园村".
    pub note: String,
}

/// A generated county: the seed data for [`Store::load_seed`] and the matching logins.
#[derive(Debug, Clone)]
pub struct DemoCounty {
    /// Users carry an EMPTY `password_hash` until [`hash_demo_passwords`] fills it in.
    pub seed: SeedData,
    /// County admin, then the township supervisors, then the cadres in username order.
    pub logins: Vec<DemoLogin>,
}

/// Why the demo county could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum DemoSeedError {
    #[error("cannot hash the demo password: {0}")]
    Password(#[from] AuthError),
    #[error("cannot store the demo county: {0}")]
    Store(#[from] StoreError),
    #[error("demo generation task failed: {0}")]
    Join(String),
}

/// Generate the demo county for `seed`. Pure and deterministic: the same seed always gives
/// the same county (with the same `rand` version); users come back without password hashes.
pub fn generate_demo_county(seed: u64) -> DemoCounty {
    Generator::new(seed).county()
}

/// The demo logins of the `--demo` county, without generating hashes or touching storage,
/// so the binary can print them on every start (also when the county was seeded earlier).
pub fn demo_logins() -> Vec<DemoLogin> {
    generate_demo_county(DEMO_SEED).logins
}

/// Fill in every user's password hash.
///
/// All demo accounts share [`DEMO_PASSWORD`], so the password is hashed ONCE and the PHC
/// string (salt included) is reused for every user. That is acceptable only because this
/// is a demo with a printed password: identical passwords would otherwise cost identical
/// work ~63 times over (argon2 is slow on purpose, tens of ms each in debug builds), and a
/// shared salt reveals nothing that the printed password does not already reveal. Real
/// accounts get their own salt through [`hash_password`].
pub fn hash_demo_passwords(county: &mut DemoCounty) -> Result<(), AuthError> {
    let shared_hash = hash_password(DEMO_PASSWORD)?;
    for user in &mut county.seed.users {
        user.password_hash.clone_from(&shared_hash);
    }
    Ok(())
}

/// Seed the `--demo` county when the store holds no county yet, and return its logins.
/// Returns `None` when the store already has data: a restart never re-seeds or overwrites
/// (the logins are still available from [`demo_logins`]).
pub async fn seed_demo_if_empty(
    store: &dyn Store,
) -> Result<Option<Vec<DemoLogin>>, DemoSeedError> {
    if !store.is_empty().await? {
        return Ok(None);
    }
    // Generation is quick but argon2 is CPU-bound: keep both off the async workers.
    let county = tokio::task::spawn_blocking(|| {
        let mut county = generate_demo_county(DEMO_SEED);
        hash_demo_passwords(&mut county).map(|()| county)
    })
    .await
    .map_err(|error| DemoSeedError::Join(error.to_string()))??;
    store.load_seed(county.seed.clone()).await?;
    seed_demo_income(store, &county.seed).await?;
    Ok(Some(county.logins))
}

/// A person before they become a [`Member`]: enough to keep the family consistent.
#[derive(Debug, Clone)]
struct PersonPlan {
    relation: Relation,
    sex: Sex,
    /// Age on the reference date.
    age: i32,
    surname: &'static str,
}

/// A cadre before pairing.
#[derive(Debug, Clone)]
struct CadrePlan {
    user: UserRecord,
    /// `None`: a 乡镇驻村干部 taking the remaining households (兜底联系, no quota).
    rank: Option<CadreRank>,
}

/// The seeded random source plus what must stay unique across the county.
struct Generator {
    rng: StdRng,
    used_id_numbers: HashSet<String>,
    used_phones: HashSet<String>,
    used_user_names: HashSet<String>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            used_id_numbers: HashSet::new(),
            used_phones: HashSet::new(),
            used_user_names: HashSet::new(),
        }
    }

    fn county(mut self) -> DemoCounty {
        let mut areas = vec![Area {
            area_id: DEMO_COUNTY_ID.to_owned(),
            name: COUNTY_NAME.to_owned(),
            level: "county".to_owned(),
            parent_id: None,
            centre: Some(wgs84(COUNTY_CENTRE)),
        }];
        let mut users = Vec::new();
        let mut households = Vec::new();
        let mut pairings = Vec::new();
        let mut cadre_logins = Vec::new();
        let mut supervisor_logins = Vec::new();

        let county_admin = self.user(
            DEMO_COUNTY_ADMIN.to_owned(),
            Role::County,
            DEMO_COUNTY_ID,
            None,
        );
        let county_login = login_for(
            &county_admin,
            format!("县级管理员：{COUNTY_NAME}户籍、结对、走访台账与报表"),
        );
        users.push(county_admin);

        let cadres_per_township: usize = TOWNSHIP_RANK_MIX.iter().map(|(_, count)| count).sum();
        for (township_index, township) in TOWNSHIPS.iter().enumerate() {
            let township_id = format!("{ID_REGION_PREFIX}{}000", township.code_suffix);
            areas.push(Area {
                area_id: township_id.clone(),
                name: township.name.to_owned(),
                level: "township".to_owned(),
                parent_id: Some(DEMO_COUNTY_ID.to_owned()),
                centre: Some(wgs84(township.centre)),
            });
            let supervisor = self.user(
                township.supervisor_username.to_owned(),
                Role::Township,
                &township_id,
                None,
            );
            supervisor_logins.push(login_for(
                &supervisor,
                format!(
                    "{}乡镇审核员：审核本镇（乡）走访，查看未走访名单",
                    township.name
                ),
            ));
            users.push(supervisor);

            let mut township_households = Vec::new();
            for village in &township.villages {
                let village_id = format!(
                    "{ID_REGION_PREFIX}{}{}",
                    township.code_suffix, village.code_suffix
                );
                areas.push(Area {
                    area_id: village_id.clone(),
                    name: village.name.to_owned(),
                    level: "village".to_owned(),
                    parent_id: Some(township_id.clone()),
                    centre: Some(wgs84(village.centre)),
                });
                let count = self
                    .rng
                    .random_range(HOUSEHOLDS_PER_VILLAGE.0..=HOUSEHOLDS_PER_VILLAGE.1);
                for sequence in 1..=count {
                    township_households.push(self.household(
                        township,
                        &township_id,
                        village,
                        &village_id,
                        sequence,
                    ));
                }
            }

            let first_cadre_number = township_index * cadres_per_township + 1;
            let cadres = self.township_cadres(&township_id, first_cadre_number);
            let targets = pairing_targets(&cadres, township_households.len());
            let mut next_household = township_households.iter();
            for (cadre, target) in cadres.into_iter().zip(targets) {
                let mut villages: Vec<&str> = Vec::new();
                let mut paired = 0_u32;
                for household in next_household.by_ref().take(target as usize) {
                    pairings.push(Pairing {
                        cadre_user_id: cadre.user.user_id.clone(),
                        household_id: household.household_id.clone(),
                        is_primary: true,
                    });
                    if !villages.contains(&household.village_name.as_str()) {
                        villages.push(&household.village_name);
                    }
                    paired += 1;
                }
                let limit = quota_table()
                    .quota(cadre.rank)
                    .map_or_else(|| "不设上限".to_owned(), |quota| format!("上限 {quota}"));
                let mut note = format!(
                    "{}，{}，结对 {paired} 户（{limit}）：{}",
                    cadre.rank.map_or(BACKSTOP_LABEL, CadreRank::label_zh),
                    township.name,
                    villages.join("、")
                );
                if cadre.user.username == DEMO_TOUR_CADRE {
                    note.push_str("；README 导览使用此账号");
                }
                cadre_logins.push(login_for(&cadre.user, note));
                users.push(cadre.user);
            }
            households.extend(township_households);
        }

        let mut logins = vec![county_login];
        logins.extend(supervisor_logins);
        logins.extend(cadre_logins);
        DemoCounty {
            seed: SeedData {
                areas,
                users,
                households,
                pairings,
            },
            logins,
        }
    }

    /// One township's cadres, numbered from `first_number`. Ranks follow
    /// [`TOWNSHIP_RANK_MIX`] in a seeded order, except that the township's first cadre is
    /// always its 正县级 cadre, so the tour account pairs with the full quota of 8.
    fn township_cadres(&mut self, township_id: &str, first_number: usize) -> Vec<CadrePlan> {
        let mut ranks: Vec<Option<CadreRank>> = TOWNSHIP_RANK_MIX
            .iter()
            .flat_map(|(rank, count)| std::iter::repeat_n(*rank, *count))
            .collect();
        // Fisher–Yates with our own generator, so the order depends only on the seed.
        for index in (1..ranks.len()).rev() {
            let other = self.rng.random_range(0..=index);
            ranks.swap(index, other);
        }
        if let Some(leader) = ranks
            .iter()
            .position(|rank| *rank == Some(CadreRank::CountyLevel))
        {
            ranks.swap(0, leader);
        }
        ranks
            .into_iter()
            .enumerate()
            .map(|(offset, rank)| {
                let username = format!("cadre{:02}", first_number + offset);
                CadrePlan {
                    user: self.user(username, Role::Cadre, township_id, rank),
                    rank,
                }
            })
            .collect()
    }

    fn user(
        &mut self,
        username: String,
        role: Role,
        area_id: &str,
        rank: Option<CadreRank>,
    ) -> UserRecord {
        let user_id = self.uuid();
        let display_name = loop {
            let sex = if self.chance(0.65) {
                Sex::Male
            } else {
                Sex::Female
            };
            let birth_year = self.rng.random_range(1966..=1998);
            let surname = self.pick(SURNAMES);
            let name = format!("{surname}{}", self.given_name(sex, birth_year));
            if self.used_user_names.insert(name.clone()) {
                break name;
            }
        };
        UserRecord {
            user_id,
            username,
            display_name,
            password_hash: String::new(),
            role,
            area_id: area_id.to_owned(),
            phone: self.phone(),
            rank,
        }
    }

    fn household(
        &mut self,
        township: &TownshipSpec,
        township_id: &str,
        village: &VillageSpec,
        village_id: &str,
        sequence: u32,
    ) -> Household {
        let attribute = self.pick_weighted(&[
            (HouseholdAttribute::General, 74),
            (HouseholdAttribute::Dibao, 21),
            (HouseholdAttribute::Tekun, 5),
        ]);
        let plans = self.family(attribute);
        let members: Vec<Member> = {
            let mut used_names = HashSet::new();
            plans
                .iter()
                .map(|plan| self.member(plan, &mut used_names))
                .collect()
        };
        let head_name = members
            .first()
            .map(|head| head.name.clone())
            .unwrap_or_default();
        let main_cause = self.main_cause(attribute, &members, &plans);
        let secondary_causes = self.secondary_causes(main_cause);
        let housing = self.pick_weighted(&[
            (HousingDangerLevel::A, 40),
            (HousingDangerLevel::B, 42),
            (HousingDangerLevel::C, 13),
            (HousingDangerLevel::D, 5),
        ]);
        let measures = self.measures(attribute, housing, &plans);
        let group = self.pick(GROUP_NAMES);
        let house_number = self.rng.random_range(1..=60);
        Household {
            household_id: self.uuid(),
            national_household_number: format!("{village_id}{sequence:04}"),
            head_name,
            township_id: township_id.to_owned(),
            village_id: village_id.to_owned(),
            village_name: village.name.to_owned(),
            address: format!("{}{}{group}{house_number}号", township.name, village.name),
            phone: self.phone(),
            attribute,
            main_cause,
            secondary_causes,
            housing_danger_level: Some(housing),
            location: Some(self.home_location(village.centre)),
            members,
            measures,
            server_seq: 0,
            field_seqs: Default::default(),
        }
    }

    /// The family's shape: head first, then spouse, a parent, children, a daughter-in-law
    /// and grandchildren, at most 6 people. 特困供养 households are one elderly person
    /// without anyone obliged to support them, which is what qualifies them.
    fn family(&mut self, attribute: HouseholdAttribute) -> Vec<PersonPlan> {
        const MAX_MEMBERS: usize = 6;
        let head_surname = self.pick(SURNAMES);
        if attribute == HouseholdAttribute::Tekun {
            let sex = if self.chance(0.7) {
                Sex::Male
            } else {
                Sex::Female
            };
            return vec![PersonPlan {
                relation: Relation::Head,
                sex,
                age: self.rng.random_range(62..=86),
                surname: head_surname,
            }];
        }

        let head_sex = if self.chance(0.86) {
            Sex::Male
        } else {
            Sex::Female
        };
        let head_age = self.rng.random_range(35..=75);
        let mut family = vec![PersonPlan {
            relation: Relation::Head,
            sex: head_sex,
            age: head_age,
            surname: head_surname,
        }];

        // Female heads are mostly widowed or divorced; male heads mostly married.
        let spouse_chance = match (head_sex, head_age) {
            (Sex::Female, _) => 0.15,
            (Sex::Male, age) if age > 65 => 0.65,
            (Sex::Male, _) => 0.85,
        };
        let mut spouse_age = None;
        if self.chance(spouse_chance) {
            let (sex, age) = match head_sex {
                Sex::Male => (Sex::Female, head_age + self.rng.random_range(-6..=2)),
                Sex::Female => (Sex::Male, head_age + self.rng.random_range(-2..=6)),
            };
            let age = age.max(22);
            spouse_age = Some(age);
            family.push(PersonPlan {
                relation: Relation::Spouse,
                sex,
                age,
                surname: self.pick(SURNAMES),
            });
        }

        if head_age <= 58 && self.chance(0.3) {
            let age = (head_age + self.rng.random_range(22..=32)).min(95);
            let sex = if self.chance(0.4) {
                Sex::Male
            } else {
                Sex::Female
            };
            // A father shares the head's surname; a mother kept her own.
            let surname = match sex {
                Sex::Male => head_surname,
                Sex::Female => self.pick(SURNAMES),
            };
            family.push(PersonPlan {
                relation: Relation::Parent,
                sex,
                age,
                surname,
            });
        }

        // Children take the father's surname: the head's when he is the husband, the
        // spouse's when the head is the wife, a late husband's when she heads alone.
        let father_surname = match head_sex {
            Sex::Male => head_surname,
            Sex::Female => family
                .iter()
                .find(|person| person.relation == Relation::Spouse)
                .map(|spouse| spouse.surname)
                .unwrap_or_else(|| self.pick(SURNAMES)),
        };
        let mother_age = match head_sex {
            Sex::Female => head_age,
            Sex::Male => spouse_age.unwrap_or(head_age - 2),
        };
        let children = self.pick_weighted(&[(0_u32, 14), (1, 30), (2, 36), (3, 20)]);
        let mut adult_son: Option<(i32, &'static str)> = None;
        for _ in 0..children {
            if family.len() >= MAX_MEMBERS {
                break;
            }
            let age = mother_age - self.rng.random_range(20..=36);
            if age < 0 {
                continue;
            }
            let (relation, sex) = if self.chance(0.52) {
                (Relation::Son, Sex::Male)
            } else {
                (Relation::Daughter, Sex::Female)
            };
            if relation == Relation::Son && age >= 24 && adult_son.is_none() {
                adult_son = Some((age, father_surname));
            }
            family.push(PersonPlan {
                relation,
                sex,
                age,
                surname: father_surname,
            });
        }

        if let Some((son_age, son_surname)) = adult_son
            && family.len() < MAX_MEMBERS
            && self.chance(0.45)
        {
            let daughter_in_law_age = (son_age + self.rng.random_range(-4..=2)).max(21);
            family.push(PersonPlan {
                relation: Relation::DaughterInLaw,
                sex: Sex::Female,
                age: daughter_in_law_age,
                surname: self.pick(SURNAMES),
            });
            let oldest_possible = (daughter_in_law_age - 20).min(14);
            if oldest_possible >= 0 {
                let grandchildren = self.rng.random_range(0..=2);
                for _ in 0..grandchildren {
                    if family.len() >= MAX_MEMBERS {
                        break;
                    }
                    let (relation, sex) = if self.chance(0.5) {
                        (Relation::Grandson, Sex::Male)
                    } else {
                        (Relation::Granddaughter, Sex::Female)
                    };
                    family.push(PersonPlan {
                        relation,
                        sex,
                        age: self.rng.random_range(0..=oldest_possible),
                        surname: son_surname,
                    });
                }
            }
        }
        family
    }

    fn member(&mut self, plan: &PersonPlan, used_names: &mut HashSet<String>) -> Member {
        let (year, month, day) = self.birth_date(plan.age);
        let name = loop {
            let name = format!("{}{}", plan.surname, self.given_name(plan.sex, year));
            if used_names.insert(name.clone()) {
                break name;
            }
        };
        let id_number = self.id_number(year, month, day, plan.sex);

        let health = match plan.age {
            0..=17 => self.pick_weighted(&[
                (Health::Healthy, 92),
                (Health::ChronicIllness, 4),
                (Health::SeriousIllness, 2),
                (Health::Disabled, 2),
            ]),
            18..=59 => self.pick_weighted(&[
                (Health::Healthy, 78),
                (Health::ChronicIllness, 12),
                (Health::SeriousIllness, 5),
                (Health::Disabled, 5),
            ]),
            _ => self.pick_weighted(&[
                (Health::Healthy, 48),
                (Health::ChronicIllness, 34),
                (Health::SeriousIllness, 10),
                (Health::Disabled, 8),
            ]),
        };
        let (disability, disability_grade) = if health == Health::Disabled {
            let kind = self.pick(&[
                Disability::Physical,
                Disability::Physical,
                Disability::Visual,
                Disability::Hearing,
                Disability::Speech,
                Disability::Intellectual,
                Disability::Mental,
                Disability::Multiple,
            ]);
            (kind, self.rng.random_range(1..=4))
        } else {
            (Disability::None, 0)
        };

        let schooling = match plan.age {
            3..=5 => Schooling::Preschool,
            6..=11 => Schooling::Primary,
            12..=15 => Schooling::JuniorSecondary,
            16..=18 => self.pick_weighted(&[
                (Schooling::SeniorSecondary, 45),
                (Schooling::SecondaryVocational, 30),
                (Schooling::NotInSchool, 25),
            ]),
            19..=22 => self.pick_weighted(&[
                (Schooling::College, 20),
                (Schooling::HigherVocational, 15),
                (Schooling::NotInSchool, 65),
            ]),
            _ => Schooling::NotInSchool,
        };
        let is_student = schooling != Schooling::NotInSchool;

        // 丧失劳动力 is lost through illness or disability; 无劳动力 is the young, the old
        // and students.
        let severely_limited = health == Health::SeriousIllness
            || (health == Health::Disabled && disability_grade <= 2);
        let labour_capacity = if plan.age < 16 || is_student {
            LabourCapacity::None
        } else if severely_limited {
            LabourCapacity::Lost
        } else if plan.age < 60 {
            if self.chance(0.25) {
                LabourCapacity::Skilled
            } else {
                LabourCapacity::Ordinary
            }
        } else if plan.age < 70 && health != Health::ChronicIllness && self.chance(0.55) {
            LabourCapacity::Ordinary
        } else {
            LabourCapacity::None
        };

        let has_medical_insurance = self.chance(0.97);
        let has_serious_illness_insurance = has_medical_insurance && self.chance(0.96);
        let has_pension_insurance = plan.age >= 16 && !is_student && self.chance(0.88);

        Member {
            member_id: self.uuid(),
            name,
            relation: plan.relation,
            sex: plan.sex,
            birth_date: format!("{year:04}-{month:02}-{day:02}"),
            id_number,
            health,
            labour_capacity,
            schooling,
            disability,
            disability_grade,
            has_medical_insurance,
            has_serious_illness_insurance,
            has_pension_insurance,
            removed: false,
        }
    }

    /// The main cause follows the family where it is obvious (a disabled or seriously ill
    /// member, two pupils, no one able to work) and the county's usual mix otherwise.
    fn main_cause(
        &mut self,
        attribute: HouseholdAttribute,
        members: &[Member],
        plans: &[PersonPlan],
    ) -> PovertyCause {
        let has = |health: Health| members.iter().any(|member| member.health == health);
        let pupils = members
            .iter()
            .filter(|member| member.schooling != Schooling::NotInSchool)
            .count();
        let workers = members
            .iter()
            .filter(|member| {
                matches!(
                    member.labour_capacity,
                    LabourCapacity::Ordinary | LabourCapacity::Skilled
                )
            })
            .count();
        if attribute == HouseholdAttribute::Tekun || (workers == 0 && plans.len() <= 2) {
            return self.pick_weighted(&[
                (PovertyCause::LackOfLabour, 60),
                (PovertyCause::Illness, 25),
                (PovertyCause::Disability, 15),
            ]);
        }
        if has(Health::Disabled) && self.chance(0.55) {
            return PovertyCause::Disability;
        }
        if (has(Health::SeriousIllness) || has(Health::ChronicIllness)) && self.chance(0.5) {
            return PovertyCause::Illness;
        }
        if pupils >= 2 && self.chance(0.35) {
            return PovertyCause::Schooling;
        }
        self.pick_weighted(&[
            (PovertyCause::Illness, 18),
            (PovertyCause::LackOfCapital, 20),
            (PovertyCause::LackOfSkills, 16),
            (PovertyCause::LackOfLabour, 8),
            (PovertyCause::Disability, 5),
            (PovertyCause::Schooling, 6),
            (PovertyCause::PoorTransport, 8),
            (PovertyCause::LackOfLand, 5),
            (PovertyCause::LackOfWater, 4),
            (PovertyCause::Disaster, 4),
            (PovertyCause::LackOfMotivation, 6),
        ])
    }

    fn secondary_causes(&mut self, main_cause: PovertyCause) -> Vec<PovertyCause> {
        let wanted = self.pick_weighted(&[(0_usize, 35), (1, 45), (2, 20)]);
        // Only the original national codes 01–11; the version-2 additions are rare enough
        // that a demo need not show them.
        let candidates: Vec<PovertyCause> = PovertyCause::ALL
            .iter()
            .copied()
            .filter(|cause| cause.since_version() == 1 && *cause != main_cause)
            .collect();
        let mut causes = Vec::new();
        while causes.len() < wanted {
            let cause = self.pick(&candidates);
            if !causes.contains(&cause) {
                causes.push(cause);
            }
        }
        causes.sort_by_key(|cause| cause.code());
        causes
    }

    /// 0–2 measures that fit the household: renovation for C/D houses, 低保 for 低保 and
    /// 特困 households, 雨露计划 for vocational students, otherwise income projects.
    fn measures(
        &mut self,
        attribute: HouseholdAttribute,
        housing: HousingDangerLevel,
        plans: &[PersonPlan],
    ) -> Vec<HelpMeasure> {
        let wanted = self.pick_weighted(&[(0_usize, 15), (1, 45), (2, 40)]);
        let mut measures = Vec::new();
        if !housing.is_safe() && measures.len() < wanted {
            let area = self.rng.random_range(60..=110);
            let yuan = if housing == HousingDangerLevel::D {
                35_000
            } else {
                15_000
            };
            measures.push(self.measure(
                MeasureCategory::HousingRenovation,
                match housing {
                    HousingDangerLevel::D => "D级危房改造".to_owned(),
                    _ => "C级危房改造".to_owned(),
                },
                format!("{area}平方米"),
                yuan,
                FundingSource::FiscalSpecial,
            ));
        }
        if attribute != HouseholdAttribute::General && measures.len() < wanted {
            let label = match attribute {
                HouseholdAttribute::Tekun => "特困供养金",
                _ => "低保金",
            };
            let people = plans.len();
            measures.push(self.measure(
                MeasureCategory::Dibao,
                format!("{label}兜底"),
                format!("{people}人"),
                i64::try_from(people).unwrap_or(1) * 4_800,
                FundingSource::FiscalSpecial,
            ));
        }
        let vocational_students = plans.iter().filter(|plan| (16..=20).contains(&plan.age));
        if vocational_students.count() > 0 && measures.len() < wanted && self.chance(0.5) {
            measures.push(self.measure(
                MeasureCategory::YuluPlan,
                "雨露计划职业教育补助".to_owned(),
                "1人".to_owned(),
                3_000,
                FundingSource::FiscalSpecial,
            ));
        }
        while measures.len() < wanted {
            let template = self.pick(INCOME_MEASURES);
            if measures
                .iter()
                .any(|measure| measure.category == template.category)
            {
                // One measure per category is what a plan holds; try another.
                if measures.len() + 1 >= wanted && self.chance(0.5) {
                    break;
                }
                continue;
            }
            let quantity = self
                .rng
                .random_range(template.quantity.0..=template.quantity.1);
            let quantity = quantity - quantity % template.quantity_step;
            let quantity = quantity.max(template.quantity_step);
            measures.push(self.measure(
                template.category,
                format!("{}{quantity}{}", template.verb, template.unit),
                format!("{quantity}{}", template.unit),
                template.yuan_per_unit * i64::from(quantity),
                template.funding,
            ));
        }
        measures
    }

    fn measure(
        &mut self,
        category: MeasureCategory,
        name: String,
        scale: String,
        funding_yuan: i64,
        funding_source: FundingSource,
    ) -> HelpMeasure {
        let status = self.pick_weighted(&[
            (MeasureStatus::InProgress, 50),
            (MeasureStatus::Done, 30),
            (MeasureStatus::Planned, 20),
        ]);
        let deadline = match status {
            MeasureStatus::Done => {
                format!("{REFERENCE_YEAR}-{:02}-30", self.rng.random_range(3..=9))
            }
            _ => format!(
                "{}-{:02}-30",
                REFERENCE_YEAR + 1,
                self.rng.random_range(3..=9)
            ),
        };
        HelpMeasure {
            measure_id: self.uuid(),
            category,
            name,
            scale,
            funding_fen: funding_yuan * 100,
            funding_source: Some(funding_source),
            deadline,
            status,
        }
    }

    /// A point `HOME_DISTANCE_M` from the centre at a random bearing, rounded to 6
    /// decimals (~0.1 m) the way phones report fixes. Small offsets on a sphere are
    /// metres / 111,320 per degree of latitude, scaled by cos(lat) for longitude.
    fn home_location(&mut self, centre: (f64, f64)) -> GeoPoint {
        const METRES_PER_DEGREE: f64 = 111_320.0;
        // Squaring pulls homes toward the centre, as hamlets cluster near the village.
        let spread: f64 = self.rng.random_range(0.0..1.0);
        let distance =
            HOME_DISTANCE_M.0 + (HOME_DISTANCE_M.1 - HOME_DISTANCE_M.0) * spread * spread;
        let bearing: f64 = self.rng.random_range(0.0..std::f64::consts::TAU);
        let lat = centre.0 + distance * bearing.cos() / METRES_PER_DEGREE;
        let lon =
            centre.1 + distance * bearing.sin() / (METRES_PER_DEGREE * centre.0.to_radians().cos());
        wgs84((round6(lat), round6(lon)))
    }

    /// A birth date that makes the person exactly `age` on the reference date.
    fn birth_date(&mut self, age: i32) -> (i32, u8, u8) {
        let month: u8 = self.rng.random_range(1..=12);
        // Day 1–28 exists in every month, so the date is always real.
        let day: u8 = self.rng.random_range(1..=28);
        let birthday_after_reference = (month, day) > REFERENCE_MONTH_DAY;
        let year = REFERENCE_YEAR - age - i32::from(birthday_after_reference);
        (year, month, day)
    }

    /// 18-digit 身份证号: region, birth date, a 3-digit sequence whose last digit is odd
    /// for men and even for women (GB 11643), and the check character. Unique county-wide.
    fn id_number(&mut self, year: i32, month: u8, day: u8, sex: Sex) -> String {
        loop {
            let sequence: u32 = self.rng.random_range(0..=99);
            let sex_digit: u32 = match sex {
                Sex::Male => self.rng.random_range(0..5) * 2 + 1,
                Sex::Female => self.rng.random_range(0..5) * 2,
            };
            let body =
                format!("{ID_REGION_PREFIX}{year:04}{month:02}{day:02}{sequence:02}{sex_digit}");
            let Some(check) = id_number::check_character(&body) else {
                continue;
            };
            let id_number = format!("{body}{check}");
            if self.used_id_numbers.insert(id_number.clone()) {
                return id_number;
            }
        }
    }

    fn phone(&mut self) -> String {
        loop {
            let prefix = self.pick(MOBILE_PREFIXES);
            let subscriber: u32 = self.rng.random_range(0..100_000_000);
            let phone = format!("{prefix}{subscriber:08}");
            if self.used_phones.insert(phone.clone()) {
                return phone;
            }
        }
    }

    fn given_name(&mut self, sex: Sex, birth_year: i32) -> &'static str {
        let older = birth_year < 1985;
        match (sex, older) {
            (Sex::Male, true) => self.pick(MALE_NAMES_OLDER),
            (Sex::Male, false) => self.pick(MALE_NAMES_YOUNGER),
            (Sex::Female, true) => self.pick(FEMALE_NAMES_OLDER),
            (Sex::Female, false) => self.pick(FEMALE_NAMES_YOUNGER),
        }
    }

    /// A random (version 4 layout) UUID drawn from the seeded generator, so ids are stable
    /// across runs with the same seed.
    fn uuid(&mut self) -> String {
        let mut bytes = [0_u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.random_bool(probability)
    }

    /// Uniform choice. Only called with the non-empty constant lists of this module.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    /// Weighted choice. Only called with non-empty lists whose weights sum above zero.
    fn pick_weighted<T: Copy>(&mut self, options: &[(T, u32)]) -> T {
        let total: u32 = options.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.rng.random_range(0..total);
        for (value, weight) in options {
            if roll < *weight {
                return *value;
            }
            roll -= weight;
        }
        options[options.len() - 1].0
    }
}

/// An income measure template: "养羊30只" is verb 养羊, quantity 30, unit 只.
#[derive(Debug, Clone, Copy)]
struct MeasureTemplate {
    category: MeasureCategory,
    verb: &'static str,
    unit: &'static str,
    quantity: (u32, u32),
    quantity_step: u32,
    yuan_per_unit: i64,
    funding: FundingSource,
}

const INCOME_MEASURES: &[MeasureTemplate] = &[
    MeasureTemplate {
        category: MeasureCategory::Industry,
        verb: "养羊",
        unit: "只",
        quantity: (10, 40),
        quantity_step: 5,
        yuan_per_unit: 300,
        funding: FundingSource::FiscalSpecial,
    },
    MeasureTemplate {
        category: MeasureCategory::Industry,
        verb: "养牛",
        unit: "头",
        quantity: (2, 6),
        quantity_step: 1,
        yuan_per_unit: 3_000,
        funding: FundingSource::FiscalSpecial,
    },
    MeasureTemplate {
        category: MeasureCategory::Industry,
        verb: "种植刺梨",
        unit: "亩",
        quantity: (3, 15),
        quantity_step: 1,
        yuan_per_unit: 800,
        funding: FundingSource::Sector,
    },
    MeasureTemplate {
        category: MeasureCategory::Industry,
        verb: "种植茶叶",
        unit: "亩",
        quantity: (2, 10),
        quantity_step: 1,
        yuan_per_unit: 1_000,
        funding: FundingSource::Sector,
    },
    MeasureTemplate {
        category: MeasureCategory::Employment,
        verb: "劳务输出务工",
        unit: "人",
        quantity: (1, 2),
        quantity_step: 1,
        yuan_per_unit: 500,
        funding: FundingSource::FiscalSpecial,
    },
    MeasureTemplate {
        category: MeasureCategory::Employment,
        verb: "公益性岗位(护林员)",
        unit: "人",
        quantity: (1, 1),
        quantity_step: 1,
        yuan_per_unit: 10_000,
        funding: FundingSource::FiscalSpecial,
    },
    MeasureTemplate {
        category: MeasureCategory::Microcredit,
        verb: "扶贫小额信贷",
        unit: "万元",
        quantity: (1, 5),
        quantity_step: 1,
        yuan_per_unit: 10_000,
        funding: FundingSource::Credit,
    },
    MeasureTemplate {
        category: MeasureCategory::AssetIncome,
        verb: "合作社入股分红",
        unit: "股",
        quantity: (1, 3),
        quantity_step: 1,
        yuan_per_unit: 2_000,
        funding: FundingSource::Social,
    },
];

/// How many households each cadre of a township takes under the 8741 scheme [S:L741]: every
/// ranked cadre takes the full quota of the rank (领导带头; the tour cadre, a 正县级, exactly
/// 8), and the 乡镇驻村干部 without a rank share the remaining households evenly (兜底联系).
/// Should a township have fewer households than the ranked quotas plus one per 驻村干部, the
/// spare is taken back one household at a time from the highest quotas first (never below 1,
/// never from the tour cadre). Either way no cadre is over quota.
fn pairing_targets(cadres: &[CadrePlan], household_count: usize) -> Vec<u32> {
    let table = quota_table();
    let mut targets: Vec<u32> = cadres
        .iter()
        .map(|cadre| table.quota(cadre.rank).unwrap_or(1))
        .collect();
    let capacity: usize = targets.iter().map(|target| *target as usize).sum();

    let backstops: Vec<usize> = cadres
        .iter()
        .enumerate()
        .filter(|(_, cadre)| cadre.rank.is_none())
        .map(|(index, _)| index)
        .collect();
    let extra = household_count.saturating_sub(capacity);
    if !backstops.is_empty() {
        let share = extra / backstops.len();
        let remainder = extra % backstops.len();
        for (position, index) in backstops.iter().enumerate() {
            targets[*index] += (share + usize::from(position < remainder)) as u32;
        }
    }

    let mut spare = capacity.saturating_sub(household_count);
    while spare > 0 {
        let largest = cadres
            .iter()
            .enumerate()
            .filter(|(index, cadre)| {
                cadre.rank.is_some()
                    && cadre.user.username != DEMO_TOUR_CADRE
                    && targets[*index] > 1
            })
            .map(|(index, _)| index)
            .max_by_key(|index| (targets[*index], *index));
        let Some(index) = largest else {
            break;
        };
        targets[index] -= 1;
        spare -= 1;
    }
    targets
}

fn login_for(user: &UserRecord, note: String) -> DemoLogin {
    DemoLogin {
        username: user.username.clone(),
        password: DEMO_PASSWORD.to_owned(),
        role_label: user.role.label_zh().to_owned(),
        display_name: user.display_name.clone(),
        note,
    }
}

fn wgs84((lat, lon): (f64, f64)) -> GeoPoint {
    GeoPoint {
        lat,
        lon,
        crs: Crs::Wgs84,
    }
}

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

// ----- demo income registrations (季登记) and thresholds (标准线) -----

/// Reference lines the demo county starts with. The dated national figures are the ones
/// domain.md §1.9 gives with its sources; the county rows for 2025 and 2026 are a DEMO
/// assumption (the sourced 2021 monitoring line carried forward), not an official figure.
/// Real installations set their own lines on the 标准线 page.
pub fn demo_thresholds() -> Vec<IncomeThreshold> {
    let row =
        |year: i32, region: &str, poverty: Option<i64>, monitoring: Option<i64>, note: &str| {
            IncomeThreshold {
                year,
                region: region.to_owned(),
                poverty_line_yuan: poverty,
                monitoring_line_yuan: monitoring,
                source_note: note.to_owned(),
            }
        };
    vec![
        // domain.md §1.9: national 2,300 yuan at 2010 prices [S:L53].
        row(
            2010,
            NATIONAL_REGION,
            Some(2_300),
            None,
            "国家扶贫标准（2010年不变价）",
        ),
        // domain.md §1.9: 2,736 used for the 2014 identification, on 2013 income (马山 audit).
        row(
            2013,
            NATIONAL_REGION,
            Some(2_736),
            None,
            "2014年识别标准：2013年人均纯收入低于2736元",
        ),
        // domain.md §1.9: 2015: 2,855 (360docs).
        row(
            2015,
            NATIONAL_REGION,
            Some(2_855),
            None,
            "2015年国家扶贫标准",
        ),
        // domain.md §1.9: 2020 "≈4,000" (刘永富, quoted).
        row(
            2020,
            NATIONAL_REGION,
            Some(4_000),
            None,
            "约4000元（刘永富）",
        ),
        // domain.md §1.9: monitoring line 2021: 6,000 (靖边, 洪湖).
        row(
            2021,
            NATIONAL_REGION,
            None,
            Some(6_000),
            "防止返贫监测线6000元（靖边、洪湖）",
        ),
        row(
            2025,
            DEMO_COUNTY_ID,
            None,
            Some(6_000),
            "示范数据：沿用2021年监测线，以当年文件为准",
        ),
        row(
            2026,
            DEMO_COUNTY_ID,
            None,
            Some(6_000),
            "示范数据：沿用2021年监测线，以当年文件为准",
        ),
    ]
}

/// Seasonal share of a year's net income per quarter, in per mille (harvest and
/// year-end wages weigh on Q3 and Q4).
const QUARTER_SHARE_PER_MILLE: [i64; 4] = [220, 240, 280, 260];

/// Annual per-capita net income targets of the demo households, in yuan, with weights: most
/// are well above the 6,000 monitoring line, about one in eight falls below 6,600 (line ×
/// 1.1) so the income page has flagged households.
const DEMO_PER_CAPITA_YUAN: &[((i64, i64), u32)] = &[
    ((4_200, 6_500), 12),
    ((6_700, 9_000), 38),
    ((9_000, 14_000), 40),
    ((14_000, 22_000), 10),
];

/// Income registrations of the demo county: all four quarters of 2025 for most households,
/// and 2026's first quarters (Q1–Q3 for most, Q1–Q2 for some) so the projection has work
/// to do. Pure and deterministic (its own seeded generator); households of the README tour
/// cadre are left unregistered so the tour can register income itself.
pub fn demo_income_registrations(seed: &SeedData) -> Vec<IncomeRegistration> {
    let mut rng = StdRng::seed_from_u64(DEMO_SEED ^ 0x1_2025_2026);
    let tour_cadre = seed
        .users
        .iter()
        .find(|user| user.username == DEMO_TOUR_CADRE)
        .map(|user| user.user_id.clone());
    let tour_households: HashSet<&str> = seed
        .pairings
        .iter()
        .filter(|pairing| Some(&pairing.cadre_user_id) == tour_cadre.as_ref())
        .map(|pairing| pairing.household_id.as_str())
        .collect();
    let mut registrations = Vec::new();
    for household in &seed.households {
        if tour_households.contains(household.household_id.as_str()) {
            continue;
        }
        let size = household.current_members().count().max(1) as i64;
        let total_weight: u32 = DEMO_PER_CAPITA_YUAN.iter().map(|(_, weight)| weight).sum();
        let mut roll = rng.random_range(0..total_weight);
        let mut range = DEMO_PER_CAPITA_YUAN[0].0;
        for (candidate, weight) in DEMO_PER_CAPITA_YUAN {
            if roll < *weight {
                range = *candidate;
                break;
            }
            roll -= weight;
        }
        let per_capita_yuan = rng.random_range(range.0..=range.1);
        let quarters_2026 = if rng.random_bool(0.8) { 3 } else { 2 };
        for (year, quarters) in [(2025, 4_u32), (2026, quarters_2026)] {
            if !rng.random_bool(0.9) {
                continue;
            }
            for quarter in 1..=quarters {
                // Up to ±10% around the household's seasonal share.
                let jitter = rng.random_range(900..=1_100_i64);
                let share = QUARTER_SHARE_PER_MILLE[(quarter - 1) as usize];
                let net_fen = per_capita_yuan * size * 100 * share / 1_000 * jitter / 1_000;
                let transfer_fen = net_fen * rng.random_range(15..=35_i64) / 100;
                let property_fen = net_fen * rng.random_range(0..=5_i64) / 100;
                let business_cost_fen = net_fen * rng.random_range(5..=12_i64) / 100;
                let business_gross_fen =
                    net_fen * rng.random_range(10..=30_i64) / 100 + business_cost_fen;
                let wage_fen = (net_fen
                    - transfer_fen
                    - property_fen
                    - (business_gross_fen - business_cost_fen))
                    .max(0);
                let mut bytes = [0_u8; 16];
                rng.fill_bytes(&mut bytes);
                let registration = IncomeRegistration::new(
                    uuid::Builder::from_random_bytes(bytes)
                        .into_uuid()
                        .to_string(),
                    household.household_id.clone(),
                    year,
                    quarter,
                    size as u32,
                    IncomeComponents {
                        wage_fen,
                        business_gross_fen,
                        property_fen,
                        transfer_fen,
                        business_cost_fen,
                    },
                );
                // Every component is non-negative and small, so the formula cannot fail.
                if let Ok(registration) = registration {
                    registrations.push(registration);
                }
            }
        }
    }
    registrations
}

/// Store the demo county's thresholds and income registrations (after its households).
pub async fn seed_demo_income(store: &dyn Store, seed: &SeedData) -> Result<(), DemoSeedError> {
    for threshold in demo_thresholds() {
        store.set_income_threshold(threshold).await?;
    }
    store
        .save_income_registrations(demo_income_registrations(seed))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fieldsync_model::geo::distance_m;
    use fieldsync_model::pairing::QuotaStatus;

    use super::*;

    fn demo() -> DemoCounty {
        generate_demo_county(DEMO_SEED)
    }

    fn assert_same_county(first: &DemoCounty, second: &DemoCounty) {
        assert_eq!(first.seed.areas, second.seed.areas);
        assert_eq!(first.seed.users, second.seed.users);
        assert_eq!(first.seed.households, second.seed.households);
        assert_eq!(first.seed.pairings, second.seed.pairings);
        assert_eq!(first.logins, second.logins);
    }

    #[test]
    fn the_same_seed_gives_the_same_county_and_another_seed_a_different_one() {
        let first = demo();
        assert_same_county(&first, &demo());
        let other = generate_demo_county(DEMO_SEED + 1);
        assert_ne!(first.seed.households, other.seed.households);
        assert_ne!(first.seed.users, other.seed.users);
        assert_eq!(demo_logins(), first.logins);
    }

    #[test]
    fn the_county_has_two_townships_six_villages_and_at_least_300_households() {
        let county = demo();
        let level = |name: &str| {
            county
                .seed
                .areas
                .iter()
                .filter(|area| area.level == name)
                .count()
        };
        assert_eq!(level("county"), 1);
        assert_eq!(level("township"), 2);
        assert_eq!(level("village"), 6);
        assert!(
            county.seed.households.len() >= 300,
            "{}",
            county.seed.households.len()
        );

        let areas: HashMap<&str, &Area> = county
            .seed
            .areas
            .iter()
            .map(|area| (area.area_id.as_str(), area))
            .collect();
        for area in &county.seed.areas {
            assert_eq!(area.area_id.len(), 12);
            assert!(area.area_id.starts_with(ID_REGION_PREFIX));
            if let Some(parent) = &area.parent_id {
                assert!(areas.contains_key(parent.as_str()), "{parent}");
            }
        }
        for household in &county.seed.households {
            let village = areas[household.village_id.as_str()];
            assert_eq!(village.level, "village");
            assert_eq!(village.name, household.village_name);
            assert_eq!(
                village.parent_id.as_deref(),
                Some(household.township_id.as_str())
            );
            assert!(household.address.contains(&household.village_name));
        }
    }

    #[test]
    fn every_id_number_is_valid_unique_and_matches_birth_date_and_sex() {
        let county = demo();
        let mut seen = HashSet::new();
        for member in county
            .seed
            .households
            .iter()
            .flat_map(|household| &household.members)
        {
            assert_eq!(
                id_number::validate(&member.id_number),
                Ok(()),
                "{}",
                member.id_number
            );
            assert!(
                seen.insert(member.id_number.clone()),
                "duplicate {}",
                member.id_number
            );
            assert_eq!(&member.id_number[6..14], member.birth_date.replace('-', ""));
            let sex_digit = member.id_number.as_bytes()[16] - b'0';
            let expected = if sex_digit % 2 == 1 {
                Sex::Male
            } else {
                Sex::Female
            };
            assert_eq!(member.sex, expected, "{}", member.id_number);
        }
    }

    #[test]
    fn every_household_has_exactly_one_primary_cadre_within_quota_and_township() {
        let county = demo();
        let cadres: HashMap<&str, &UserRecord> = county
            .seed
            .users
            .iter()
            .filter(|user| user.role == Role::Cadre)
            .map(|user| (user.user_id.as_str(), user))
            .collect();
        let households: HashMap<&str, &Household> = county
            .seed
            .households
            .iter()
            .map(|household| (household.household_id.as_str(), household))
            .collect();
        let mut primaries: HashMap<&str, u32> = HashMap::new();
        let mut load: HashMap<&str, u32> = HashMap::new();
        for pairing in &county.seed.pairings {
            let cadre = cadres[pairing.cadre_user_id.as_str()];
            let household = households[pairing.household_id.as_str()];
            assert_eq!(
                cadre.area_id, household.township_id,
                "cadre outside township"
            );
            if pairing.is_primary {
                *primaries.entry(&pairing.household_id).or_default() += 1;
            }
            *load.entry(&pairing.cadre_user_id).or_default() += 1;
        }
        for household in &county.seed.households {
            assert_eq!(primaries.get(household.household_id.as_str()), Some(&1));
        }
        // The pairings page (/console/pairings) marks no demo cadre as over quota.
        let table = quota_table();
        for (cadre_id, count) in &load {
            let cadre = cadres[cadre_id];
            let status = QuotaStatus::new(&table, cadre.rank, *count);
            assert!(
                !status.is_over(),
                "{} ({:?}): {count} > {:?}",
                cadre.username,
                cadre.rank,
                status.quota
            );
        }
        // The ranked cadres take their full 8741 quota; the 驻村干部 (no rank) the rest.
        for cadre in cadres.values() {
            if let Some(rank) = cadre.rank {
                assert_eq!(
                    load[cadre.user_id.as_str()],
                    rank.default_pairing_quota(),
                    "{}",
                    cadre.username
                );
            }
        }
        let backstops = cadres.values().filter(|cadre| cadre.rank.is_none()).count();
        assert_eq!(backstops, 16);
        assert!(cadres.len() >= 55 && cadres.len() <= 65, "{}", cadres.len());
        assert!(
            cadres
                .values()
                .all(|cadre| load.contains_key(cadre.user_id.as_str())),
            "every cadre has at least one household"
        );
    }

    #[test]
    fn the_tour_cadre_is_a_county_level_cadre_in_township_one_with_eight_households() {
        let county = demo();
        let Some(tour) = county
            .seed
            .users
            .iter()
            .find(|user| user.username == DEMO_TOUR_CADRE)
        else {
            panic!("no {DEMO_TOUR_CADRE}");
        };
        assert_eq!(tour.role, Role::Cadre);
        assert_eq!(tour.rank, Some(CadreRank::CountyLevel));
        assert_eq!(CadreRank::CountyLevel.default_pairing_quota(), 8);
        assert_eq!(tour.area_id, format!("{ID_REGION_PREFIX}101000"));
        let paired: Vec<&Household> = county
            .seed
            .pairings
            .iter()
            .filter(|pairing| pairing.cadre_user_id == tour.user_id)
            .map(|pairing| {
                assert!(pairing.is_primary);
                county
                    .seed
                    .households
                    .iter()
                    .find(|household| household.household_id == pairing.household_id)
                    .expect("paired household exists")
            })
            .collect();
        assert_eq!(paired.len(), 8);
        assert!(
            paired
                .iter()
                .all(|household| household.village_name == "桃园村")
        );
        let tour_login = county
            .logins
            .iter()
            .find(|login| login.username == DEMO_TOUR_CADRE)
            .expect("tour login");
        assert!(
            tour_login
                .note
                .starts_with("正县级，清水镇，结对 8 户（上限 8）：桃园村；"),
            "{}",
            tour_login.note
        );

        let roles: Vec<(&str, Role, &str)> = county
            .seed
            .users
            .iter()
            .filter(|user| user.role != Role::Cadre)
            .map(|user| (user.username.as_str(), user.role, user.area_id.as_str()))
            .collect();
        assert_eq!(
            roles,
            vec![
                (DEMO_COUNTY_ADMIN, Role::County, DEMO_COUNTY_ID),
                ("township1", Role::Township, "522731101000"),
                ("township2", Role::Township, "522731201000"),
            ]
        );
        let ranks: Vec<CadreRank> = county
            .seed
            .users
            .iter()
            .filter_map(|user| user.rank)
            .collect();
        let county_level = ranks
            .iter()
            .filter(|rank| **rank == CadreRank::CountyLevel)
            .count();
        assert_eq!(county_level, 2, "one 正县级 cadre per township");
        assert_eq!(county.logins.len(), county.seed.users.len());
        assert!(
            county
                .logins
                .iter()
                .all(|login| login.password == DEMO_PASSWORD)
        );
        let usernames: HashSet<&str> = county
            .seed
            .users
            .iter()
            .map(|user| user.username.as_str())
            .collect();
        assert_eq!(usernames.len(), county.seed.users.len());
        assert!(usernames.iter().all(|name| name.is_ascii()));
    }

    /// A township roster in [`TOWNSHIP_RANK_MIX`] order, the tour cadre first.
    fn roster() -> Vec<CadrePlan> {
        TOWNSHIP_RANK_MIX
            .iter()
            .flat_map(|(rank, count)| std::iter::repeat_n(*rank, *count))
            .enumerate()
            .map(|(offset, rank)| CadrePlan {
                user: UserRecord {
                    user_id: format!("u{offset}"),
                    username: format!("cadre{:02}", offset + 1),
                    display_name: String::new(),
                    password_hash: String::new(),
                    role: Role::Cadre,
                    area_id: String::new(),
                    phone: String::new(),
                    rank,
                },
                rank,
            })
            .collect()
    }

    fn assert_targets_fit(cadres: &[CadrePlan], household_count: usize) -> Vec<u32> {
        let targets = pairing_targets(cadres, household_count);
        let table = quota_table();
        assert_eq!(
            targets.iter().map(|target| *target as usize).sum::<usize>(),
            household_count,
            "every household is paired"
        );
        for (cadre, target) in cadres.iter().zip(&targets) {
            assert!(*target >= 1, "{}", cadre.user.username);
            assert!(
                !QuotaStatus::new(&table, cadre.rank, *target).is_over(),
                "{}: {target}",
                cadre.user.username
            );
        }
        assert_eq!(targets[0], 8, "the tour cadre keeps exactly 8");
        targets
    }

    #[test]
    fn every_possible_township_size_fits_the_rank_mix() {
        let table = quota_table();
        let ranked_capacity: u32 = TOWNSHIP_RANK_MIX
            .iter()
            .filter_map(|(rank, count)| table.quota(*rank).map(|quota| quota * *count as u32))
            .sum();
        assert_eq!(ranked_capacity, 8 + 3 * 7 + 8 * 4 + 10);
        let backstops: usize = TOWNSHIP_RANK_MIX
            .iter()
            .filter(|(rank, _)| rank.is_none())
            .map(|(_, count)| *count)
            .sum();
        let smallest = HOUSEHOLDS_PER_VILLAGE.0 as usize * 3;
        assert!(
            ranked_capacity as usize + backstops <= smallest,
            "every ranked cadre takes the full quota and every 驻村干部 at least one"
        );
        let cadres = roster();
        assert_eq!(cadres.len(), 30);
        assert_eq!(cadres[0].rank, Some(CadreRank::CountyLevel));
        for household_count in smallest..=HOUSEHOLDS_PER_VILLAGE.1 as usize * 3 {
            let targets = assert_targets_fit(&cadres, household_count);
            for (cadre, target) in cadres.iter().zip(&targets) {
                if let Some(quota) = table.quota(cadre.rank) {
                    assert_eq!(*target, quota, "{}", cadre.user.username);
                }
            }
        }
    }

    #[test]
    fn a_small_township_takes_spare_quota_back_from_the_highest_quotas_first() {
        let cadres = roster();
        // 59 households against 71 ranked + 8 驻村干部 = 79 places: 20 are taken back, 9
        // from the 副县级 (7 → 4), then 11 from everyone at 4 (副县级 and 科级, 4 → 3); the
        // 一般干部 keep their 1, the 驻村干部 1 each, the tour cadre 8.
        let targets = assert_targets_fit(&cadres, 59);
        for (cadre, target) in cadres.iter().zip(&targets).skip(1) {
            let expected = match cadre.rank {
                Some(CadreRank::DeputyCountyLevel | CadreRank::SectionLevel) => 3,
                Some(CadreRank::General) | None => 1,
                Some(CadreRank::CountyLevel) => 8,
            };
            assert_eq!(*target, expected, "{}", cadre.user.username);
        }
    }

    #[test]
    fn homes_lie_within_five_km_of_their_village_centre() {
        let county = demo();
        let centres: HashMap<&str, GeoPoint> = county
            .seed
            .areas
            .iter()
            .filter_map(|area| area.centre.map(|centre| (area.area_id.as_str(), centre)))
            .collect();
        for household in &county.seed.households {
            let Some(home) = household.location else {
                panic!("{} has no location", household.household_id);
            };
            let centre = centres[household.village_id.as_str()];
            assert_eq!(home.crs, Crs::Wgs84);
            let metres = distance_m(home.lat, home.lon, centre.lat, centre.lon);
            assert!(metres <= 5_000.0, "{metres}");
            assert!(metres >= 250.0, "{metres}");
        }
    }

    #[test]
    fn members_are_consistent_with_their_relation_and_age() {
        let county = demo();
        for household in &county.seed.households {
            let heads: Vec<&Member> = household
                .members
                .iter()
                .filter(|member| member.relation == Relation::Head)
                .collect();
            assert_eq!(heads.len(), 1, "{}", household.household_id);
            assert_eq!(heads[0].name, household.head_name);
            assert!(household.members.len() <= 6);
            let head_sex = heads[0].sex;
            for member in &household.members {
                let expected = match member.relation {
                    Relation::Spouse => Some(if head_sex == Sex::Male {
                        Sex::Female
                    } else {
                        Sex::Male
                    }),
                    Relation::Son | Relation::Grandson => Some(Sex::Male),
                    Relation::Daughter | Relation::DaughterInLaw | Relation::Granddaughter => {
                        Some(Sex::Female)
                    }
                    _ => None,
                };
                if let Some(expected) = expected {
                    assert_eq!(
                        member.sex, expected,
                        "{} {:?}",
                        member.name, member.relation
                    );
                }
                let chars: Vec<char> = member.name.chars().collect();
                assert!((2..=3).contains(&chars.len()), "{}", member.name);
                assert!(
                    chars.iter().all(|c| ('\u{4e00}'..='\u{9fff}').contains(c)),
                    "{}",
                    member.name
                );
                let birth_year: i32 = member.birth_date[..4].parse().unwrap_or(0);
                let age = REFERENCE_YEAR - birth_year;
                if (7..=15).contains(&age) {
                    assert!(
                        matches!(
                            member.schooling,
                            Schooling::Primary | Schooling::JuniorSecondary
                        ),
                        "{age} {:?}",
                        member.schooling
                    );
                }
                if age < 16 {
                    assert_eq!(member.labour_capacity, LabourCapacity::None);
                }
                assert_eq!(
                    member.disability == Disability::None,
                    member.disability_grade == 0
                );
            }
            assert!(!household.secondary_causes.contains(&household.main_cause));
            assert!(household.secondary_causes.len() <= 2);
            assert!(household.measures.len() <= 2);
            assert_eq!(household.phone.len(), 11);
            assert!(household.phone.starts_with('1'));
        }
    }

    #[test]
    fn the_shared_demo_hash_verifies_the_demo_password_for_every_user() {
        let mut county = demo();
        assert!(
            county
                .seed
                .users
                .iter()
                .all(|user| user.password_hash.is_empty())
        );
        hash_demo_passwords(&mut county).unwrap();
        let first = county.seed.users[0].password_hash.clone();
        assert!(
            county
                .seed
                .users
                .iter()
                .all(|user| user.password_hash == first)
        );
        assert!(crate::auth::verify_password(DEMO_PASSWORD, &first));
    }
}
