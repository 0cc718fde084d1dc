//! A county big enough for a load test: the demo county (its areas, staff, cadres and
//! households stay, so the demo logins keep working) plus `cadres` load-test cadres, each
//! the 第一帮扶责任人 of `households_per_cadre` households of its own.
//!
//! The households are clones of the demo county's, renamed and given fresh ids, household
//! numbers and ID numbers (valid check characters), so pulls carry realistic records. The
//! data is written through the server library's own store (`open_state` on the data and
//! key folders, then `Store::load_seed`), so sealing, keys and schema are exactly the
//! server's; no SQL here.
//!
//! Every load-test cadre shares one password, hashed ONCE on the server's own password pool
//! with the server's default argon2id parameters (or the ones asked for); the PHC string (salt included) is reused
//! for every user. Hashing 1,000 passwords would cost minutes for nothing a benchmark needs,
//! and the login work per request is the same: each login still verifies one full argon2id
//! hash at the configured parameters.

use std::path::PathBuf;

use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::id_number;
use fieldsync_server::demo::{DEMO_SEED, generate_demo_county, hash_demo_passwords};
use fieldsync_server::password_pool::PasswordPool;
use fieldsync_server::settings::{LoginSettings, Secret, Settings};
use fieldsync_server::store::{Pairing, SeedData, UserRecord};

/// The password every load-test cadre shares (a benchmark account, never a real one).
pub const LOAD_PASSWORD: &str = "fieldsync-load";
/// Load-test usernames are this prefix plus a 5-digit index from 0: `loadcadre00000`.
pub const LOAD_USERNAME_PREFIX: &str = "loadcadre";

/// The username of load-test cadre `index`.
pub fn load_username(index: usize) -> String {
    format!("{LOAD_USERNAME_PREFIX}{index:05}")
}

/// What to seed and where.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub data_dir: PathBuf,
    /// The server's key folder; `None` means the server's default, `<data_dir>-keys`.
    pub key_dir: Option<PathBuf>,
    /// The server's PostgreSQL database (`database_url`); `None` seeds the SQLite file in
    /// `data_dir`.
    pub database_url: Option<String>,
    pub cadres: usize,
    pub households_per_cadre: usize,
    /// The argon2id parameters of the load-test cadres' shared hash (the login benchmark
    /// compares the current defaults with the earlier ones); the server's defaults normally.
    pub password_hashing: LoginSettings,
}

impl SeedOptions {
    /// `cadres` cadres of `households_per_cadre` households in `data_dir`, keys in the
    /// server's default key folder, passwords hashed at the server's default parameters.
    pub fn new(data_dir: PathBuf, cadres: usize, households_per_cadre: usize) -> Self {
        Self {
            data_dir,
            key_dir: None,
            database_url: None,
            cadres,
            households_per_cadre,
            password_hashing: LoginSettings::default(),
        }
    }
}

/// What was seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSummary {
    pub cadres: usize,
    pub households: usize,
    pub first_username: String,
    pub last_username: String,
}

/// Why a county could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("数据目录已有数据，不能再次灌入 (the data folder already holds a county): {0}")]
    NotEmpty(PathBuf),
    #[error("至少需要 1 名干部、每人至少 1 户 (need at least one cadre and one household each)")]
    Empty,
    #[error("cannot open the server storage: {0}")]
    Open(#[from] fieldsync_server::ServerError),
    #[error("cannot store the county: {0}")]
    Store(#[from] fieldsync_server::store::StoreError),
    #[error("cannot hash the load-test password: {0}")]
    Password(String),
}

/// Seed the county described by `options` into an EMPTY data folder.
pub async fn seed_county(options: &SeedOptions) -> Result<SeedSummary, SeedError> {
    if options.cadres == 0 || options.households_per_cadre == 0 {
        return Err(SeedError::Empty);
    }
    let settings = Settings {
        data_dir: options.data_dir.clone(),
        key_dir: options.key_dir.clone(),
        database_url: Secret(options.database_url.clone().unwrap_or_default()),
        ..Settings::default()
    };
    let state = fieldsync_server::open_state(settings).await?;
    if !state.store.is_empty().await? {
        return Err(SeedError::NotEmpty(options.data_dir.clone()));
    }
    let password_hash = hash_load_password(&options.password_hashing).await?;
    let seed = build_seed(options.cadres, options.households_per_cadre, &password_hash)?;
    let households = seed.households.len();
    state.store.load_seed(seed).await?;
    Ok(SeedSummary {
        cadres: options.cadres,
        households,
        first_username: load_username(0),
        last_username: load_username(options.cadres - 1),
    })
}

/// [`LOAD_PASSWORD`] hashed once on the server's pool with the given parameters.
async fn hash_load_password(hashing: &LoginSettings) -> Result<String, SeedError> {
    let pool = PasswordPool::start(&LoginSettings {
        hashing_threads: 1,
        ..hashing.clone()
    })
    .map_err(|error| SeedError::Password(error.to_string()))?;
    pool.hash(LOAD_PASSWORD)
        .await
        .map_err(|error| SeedError::Password(error.to_string()))
}

/// The demo county plus the load-test cadres and their households (pure apart from the
/// demo accounts' one password hash).
fn build_seed(
    cadres: usize,
    households_per_cadre: usize,
    password_hash: &str,
) -> Result<SeedData, SeedError> {
    let mut county = generate_demo_county(DEMO_SEED);
    hash_demo_passwords(&mut county).map_err(|error| SeedError::Password(error.to_string()))?;
    let mut seed = county.seed;
    let templates: Vec<Household> = seed.households.clone();
    let mut serial: u64 = 0;
    for cadre_index in 0..cadres {
        // Consecutive templates per cadre, so a cadre's households share a village or two,
        // as a real pairing list does.
        let first_template = (cadre_index * households_per_cadre) % templates.len();
        let township_id = templates[first_template].township_id.clone();
        let cadre = UserRecord {
            user_id: format!("load-cadre-{cadre_index:05}"),
            username: load_username(cadre_index),
            display_name: format!("压测干部{cadre_index:05}"),
            password_hash: password_hash.to_owned(),
            role: Role::Cadre,
            area_id: township_id.clone(),
            phone: format!("139{:08}", cadre_index),
            rank: None,
        };
        let mut taken = 0;
        let mut template_index = first_template;
        while taken < households_per_cadre {
            let template = &templates[template_index % templates.len()];
            template_index += 1;
            // A cadre works in one township: skip templates of the other one.
            if template.township_id != township_id {
                continue;
            }
            let household = clone_household(template, cadre_index, serial);
            serial += 1;
            taken += 1;
            seed.pairings.push(Pairing {
                cadre_user_id: cadre.user_id.clone(),
                household_id: household.household_id.clone(),
                is_primary: true,
            });
            seed.households.push(household);
        }
        seed.users.push(cadre);
    }
    Ok(seed)
}

/// A copy of `template` with fresh ids, household number, head name and ID numbers.
fn clone_household(template: &Household, cadre_index: usize, serial: u64) -> Household {
    let mut household = template.clone();
    household.household_id = format!("load-{serial:07}");
    household.national_household_number = format!("{:018}", 530_000_000_000u64 + serial);
    household.head_name = format!("{}{cadre_index}", template.head_name);
    household.server_seq = 0;
    household.field_seqs.clear();
    for (member_index, member) in household.members.iter_mut().enumerate() {
        member.member_id = format!("load-{serial:07}-{member_index}");
        if member.id_number.len() == 18 {
            // Keep region and birth date (they must match the member), vary the sequence
            // digits deterministically and recompute the check character.
            let sequence = (serial * 7 + member_index as u64) % 1000;
            let body = format!("{}{sequence:03}", &member.id_number[..14]);
            if let Some(check) = id_number::check_character(&body) {
                member.id_number = format!("{body}{check}");
            }
        }
    }
    for (measure_index, measure) in household.measures.iter_mut().enumerate() {
        measure.measure_id = format!("load-{serial:07}-m{measure_index}");
    }
    household
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_load_cadre_gets_its_own_households_in_its_own_township() {
        let seed = build_seed(25, 4, "$argon2id$placeholder").expect("seed");
        let demo = generate_demo_county(DEMO_SEED).seed;
        assert_eq!(seed.households.len(), demo.households.len() + 25 * 4);
        let mut household_ids: Vec<&str> = seed
            .households
            .iter()
            .map(|household| household.household_id.as_str())
            .collect();
        household_ids.sort_unstable();
        household_ids.dedup();
        assert_eq!(household_ids.len(), seed.households.len(), "ids are unique");
        for cadre_index in [0, 13, 24] {
            let cadre = seed
                .users
                .iter()
                .find(|user| user.username == load_username(cadre_index))
                .expect("cadre seeded");
            let own: Vec<&Pairing> = seed
                .pairings
                .iter()
                .filter(|pairing| pairing.cadre_user_id == cadre.user_id)
                .collect();
            assert_eq!(own.len(), 4);
            for pairing in own {
                let household = seed
                    .households
                    .iter()
                    .find(|household| household.household_id == pairing.household_id)
                    .expect("paired household exists");
                assert_eq!(household.township_id, cadre.area_id);
                for member in &household.members {
                    if member.id_number.len() == 18 {
                        assert!(
                            id_number::validate(&member.id_number).is_ok(),
                            "{} stays a valid ID number",
                            member.id_number
                        );
                    }
                }
            }
        }
    }
}
