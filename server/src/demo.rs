//! The demo county behind `fieldsync-server --demo`: one county with 2 townships, 6 villages,
//! about 320 registered households (members, ID numbers, locations, help measures), about
//! 60 cadres paired by the 8741 quotas, 2 township supervisors and a county administrator.
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
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::auth::{AuthError, hash_password};
use crate::store::{Area, Pairing, SeedData, Store, StoreError, UserRecord};

/// Seed used by `--demo`. Fixed, so every installation gets the same county and the README
/// can name households and accounts.
pub const DEMO_SEED: u64 = 20_261_129;
/// The one password every demo account shares. Demo only: it is printed on the console.
pub const DEMO_PASSWORD: &str = "fieldsync-demo";
/// 12-digit statistical area code of the demo county.
pub const DEMO_COUNTY_ID: &str = "522731000000";
/// The cadre the README tour logs in as: a 一般干部 in 清水镇 with exactly 8 households.
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

/// Cadre ranks of one township's roster before shuffling. Capacity per township is
/// 1·1 + 2·4 + 9·7 + 18·8 = 216 households, above the 3 × 56 = 168 a township can have.
const TOWNSHIP_RANK_MIX: [(CadreRank, usize); 4] = [
    (CadreRank::CountyLevel, 1),
    (CadreRank::DeputyCountyLevel, 2),
    (CadreRank::SectionLevel, 9),
    (CadreRank::General, 18),
];

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
    /// What the account is for, e.g. "一般干部，清水镇，结对 8 户：桃园村".
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
    store.load_seed(county.seed).await?;
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
    rank: CadreRank,
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
                let mut note = format!(
                    "{}，{}，结对 {paired} 户（上限 {}）：{}",
                    cadre.rank.label_zh(),
                    township.name,
                    cadre.rank.default_pairing_quota(),
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
    /// always a 一般干部 so the tour account has the full quota of 8.
    fn township_cadres(&mut self, township_id: &str, first_number: usize) -> Vec<CadrePlan> {
        let mut ranks: Vec<CadreRank> = TOWNSHIP_RANK_MIX
            .iter()
            .flat_map(|(rank, count)| std::iter::repeat_n(*rank, *count))
            .collect();
        // Fisher–Yates with our own generator, so the order depends only on the seed.
        for index in (1..ranks.len()).rev() {
            let other = self.rng.random_range(0..=index);
            ranks.swap(index, other);
        }
        if let Some(general) = ranks.iter().position(|rank| *rank == CadreRank::General) {
            ranks.swap(0, general);
        }
        ranks
            .into_iter()
            .enumerate()
            .map(|(offset, rank)| {
                let username = format!("cadre{:02}", first_number + offset);
                CadrePlan {
                    user: self.user(username, Role::Cadre, township_id, Some(rank)),
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

/// How many households each cadre of a township takes. Everyone starts at the 8741 quota;
/// the spare capacity is then taken back one household at a time from the 一般干部 and 科级
/// cadres (never below 1, never from the tour cadre), so county leaders keep their full
/// quota (领导带头), the tour cadre keeps exactly 8, and the rest share the load evenly.
fn pairing_targets(cadres: &[CadrePlan], household_count: usize) -> Vec<u32> {
    let mut targets: Vec<u32> = cadres
        .iter()
        .map(|cadre| cadre.rank.default_pairing_quota())
        .collect();
    let capacity: usize = targets.iter().map(|target| *target as usize).sum();
    let mut spare = capacity.saturating_sub(household_count);
    let reducible: Vec<usize> = cadres
        .iter()
        .enumerate()
        .filter(|(_, cadre)| {
            matches!(cadre.rank, CadreRank::General | CadreRank::SectionLevel)
                && cadre.user.username != DEMO_TOUR_CADRE
        })
        .map(|(index, _)| index)
        .rev()
        .collect();
    while spare > 0 {
        let mut reduced_any = false;
        for index in &reducible {
            if spare == 0 {
                break;
            }
            if let Some(target) = targets.get_mut(*index)
                && *target > 1
            {
                *target -= 1;
                spare -= 1;
                reduced_any = true;
            }
        }
        if !reduced_any {
            break;
        }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fieldsync_model::geo::distance_m;

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
        for (cadre_id, count) in &load {
            let rank = cadres[cadre_id].rank.unwrap_or(CadreRank::CountyLevel);
            assert!(
                *count <= rank.default_pairing_quota(),
                "{cadre_id}: {count}"
            );
        }
        assert!(cadres.len() >= 55 && cadres.len() <= 65, "{}", cadres.len());
        assert!(
            cadres
                .values()
                .all(|cadre| load.contains_key(cadre.user_id.as_str())),
            "every cadre has at least one household"
        );
    }

    #[test]
    fn the_tour_cadre_is_a_general_cadre_in_township_one_with_eight_households() {
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
        assert_eq!(tour.rank, Some(CadreRank::General));
        assert_eq!(tour.area_id, format!("{ID_REGION_PREFIX}101000"));
        let paired = county
            .seed
            .pairings
            .iter()
            .filter(|pairing| pairing.cadre_user_id == tour.user_id)
            .count();
        assert_eq!(paired, 8);

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
        assert!((1..=2).contains(&county_level));
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

    #[test]
    fn the_largest_possible_township_fits_the_rank_mix() {
        let capacity: u32 = TOWNSHIP_RANK_MIX
            .iter()
            .map(|(rank, count)| rank.default_pairing_quota() * *count as u32)
            .sum();
        let largest = HOUSEHOLDS_PER_VILLAGE.1 * 3;
        assert!(capacity >= largest, "{capacity} < {largest}");
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
