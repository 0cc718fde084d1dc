//! Big counties for benchmarks: the demo county's households and cadres cloned until the
//! register holds a given number of households, every clone valid (fresh ids, household
//! numbers and ID-number checksums) and paired with a cloned cadre, as
//! [`SeedData`] ready for `Store::load_seed`. Deterministic: a fixed-seed generator.
//!
//! Used by the console-page, pull-scale and small-RPC benchmarks; one place, so every
//! benchmark's county is built the same way.

use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::id_number;
use fieldsync_server::demo::{DEMO_SEED, generate_demo_county, hash_demo_passwords};
use fieldsync_server::store::{Pairing, SeedData, UserRecord};

/// A small deterministic generator (benchmarks must not depend on `rand`'s stream).
#[derive(Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A cloned county, with who is who in it.
#[derive(Debug)]
pub struct ScaledCounty {
    /// Areas, users (passwords hashed: every account logs in with `DEMO_PASSWORD`),
    /// households and primary pairings.
    pub seed: SeedData,
    /// Every cloned cadre, with the households they are primary for (the last round's may
    /// have none).
    pub cadres: Vec<(UserRecord, Vec<Household>)>,
    /// The first township's supervisor (role Township).
    pub supervisor: UserRecord,
    /// The county admin (role County).
    pub county_admin: UserRecord,
}

/// The whole demo county (both townships) cloned until it holds `households` households.
pub fn scaled_county(households: usize) -> ScaledCounty {
    scaled(households, Cloned::WholeCounty)
}

/// The demo county's first township cloned until it alone holds `households` households;
/// the other townships keep their supervisors but no households.
pub fn scaled_township(households: usize) -> ScaledCounty {
    scaled(households, Cloned::FirstTownship)
}

/// Which households of the demo county are the templates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cloned {
    WholeCounty,
    FirstTownship,
}

fn scaled(wanted: usize, cloned: Cloned) -> ScaledCounty {
    let mut county = generate_demo_county(DEMO_SEED);
    hash_demo_passwords(&mut county).expect("hash the demo passwords");
    let seed = county.seed;
    let user_with_role = |role: Role| {
        seed.users
            .iter()
            .find(|user| user.role == role)
            .unwrap_or_else(|| panic!("the demo county has a {role:?} user"))
            .clone()
    };
    let supervisor = user_with_role(Role::Township);
    let county_admin = user_with_role(Role::County);
    let cloned_township =
        |township_id: &str| cloned == Cloned::WholeCounty || township_id == supervisor.area_id;
    let template_households: Vec<Household> = seed
        .households
        .iter()
        .filter(|household| cloned_township(&household.township_id))
        .cloned()
        .collect();
    let template_cadres: Vec<UserRecord> = seed
        .users
        .iter()
        .filter(|user| user.role == Role::Cadre && cloned_township(&user.area_id))
        .cloned()
        .collect();
    let primary_of = |household_id: &str| {
        seed.pairings
            .iter()
            .find(|pairing| pairing.is_primary && pairing.household_id == household_id)
            .map(|pairing| pairing.cadre_user_id.clone())
    };
    let mut users: Vec<UserRecord> = seed
        .users
        .iter()
        .filter(|user| user.role != Role::Cadre || !cloned_township(&user.area_id))
        .cloned()
        .collect();
    let mut households = Vec::with_capacity(wanted);
    let mut pairings = Vec::with_capacity(wanted);
    let mut cadres: Vec<(UserRecord, Vec<Household>)> = Vec::new();
    let mut random = SplitMix(20_261_129);
    let mut round = 0usize;
    'fill: loop {
        let round_cadres: Vec<UserRecord> = template_cadres
            .iter()
            .map(|cadre| UserRecord {
                user_id: format!("{}-{round}", cadre.user_id),
                username: format!("{}-{round}", cadre.username),
                display_name: format!("{}{round}", cadre.display_name),
                ..cadre.clone()
            })
            .collect();
        let start = cadres.len();
        for cadre in &round_cadres {
            cadres.push((cadre.clone(), Vec::new()));
        }
        users.extend(round_cadres);
        for template in &template_households {
            if households.len() == wanted {
                break 'fill;
            }
            let serial = households.len();
            let mut household = template.clone();
            household.household_id = format!("{}-{round}", template.household_id);
            household.national_household_number =
                format!("{:018}", 520_000_000_000u64 + serial as u64);
            household.head_name = format!("{}{}", template.head_name, round);
            for member in &mut household.members {
                member.member_id = format!("{}-{round}", member.member_id);
                if member.id_number.len() == 18 {
                    // Keep the region and birth date; vary the sequence digits; re-derive
                    // the checksum so every ID stays valid.
                    let body = format!(
                        "{}{:03}",
                        &member.id_number[..14],
                        (random.next_u64() % 1000) as u32
                    );
                    if let Some(check) = id_number::check_character(&body) {
                        member.id_number = format!("{body}{check}");
                    }
                }
            }
            if let Some(location) = household.location.as_mut() {
                location.lat += (random.next_u64() % 2_000) as f64 / 1e6 - 0.001;
                location.lon += (random.next_u64() % 2_000) as f64 / 1e6 - 0.001;
            }
            let Some(template_primary) = primary_of(&template.household_id) else {
                continue;
            };
            let index = template_cadres
                .iter()
                .position(|cadre| cadre.user_id == template_primary)
                .expect("the primary cadre is one of the cloned cadres");
            let (cadre, own) = &mut cadres[start + index];
            pairings.push(Pairing {
                cadre_user_id: cadre.user_id.clone(),
                household_id: household.household_id.clone(),
                is_primary: true,
            });
            own.push(household.clone());
            households.push(household);
        }
        round += 1;
    }
    ScaledCounty {
        seed: SeedData {
            areas: seed.areas.clone(),
            users,
            households,
            pairings,
        },
        cadres,
        supervisor,
        county_admin,
    }
}

/// Where a benchmark server keeps its SQLite file and blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `/dev/shm` when there is one (fsync there is free): for benchmarks of reads and of
    /// the link, not of the disk.
    Memory,
    /// The temp dir on disk: every durable write pays its real fsync.
    Disk,
}

/// A real server on a loopback port (0) over a scaled county. Dropping it stops the server
/// and deletes its folders.
#[derive(Debug)]
pub struct ScaledServer {
    pub url: String,
    pub state: fieldsync_server::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _root: tempfile::TempDir,
}

/// Store `seed` through the store API and serve it.
pub async fn serve_scaled(seed: SeedData, storage: Storage) -> ScaledServer {
    let root = if storage == Storage::Memory && std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").expect("shm dir")
    } else {
        tempfile::tempdir().expect("temp dir")
    };
    let settings = fieldsync_server::settings::Settings {
        data_dir: root.path().join("data"),
        key_dir: Some(root.path().join("keys")),
        listen_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        // Benchmarks may run several servers: no /metrics on the fixed port.
        metrics: fieldsync_server::settings::MetricsSettings {
            enabled: false,
            ..Default::default()
        },
        ..fieldsync_server::settings::Settings::default()
    };
    let state = fieldsync_server::AppState::open(settings).expect("open the server state");
    state.store.load_seed(seed).await.expect("seed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(fieldsync_server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    ScaledServer {
        url: format!("http://{address}"),
        state,
        stop: Some(stop),
        _root: root,
    }
}

impl ScaledServer {
    /// A new gRPC channel (one HTTP/2 connection) to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// Log in over gRPC with the demo password from a new install (a fresh device id); the
    /// bearer token.
    pub async fn login(&self, username: &str) -> String {
        let mut auth = fieldsync_proto::v1::auth_client::AuthClient::new(self.channel().await);
        auth.login(fieldsync_proto::v1::LoginRequest {
            username: username.into(),
            password: crate::DEMO_PASSWORD.into(),
            device_id: uuid::Uuid::now_v7().to_string(),
            device_name: "bench".into(),
            client: Some(crate::client_info()),
            wants_refresh_token: false,
        })
        .await
        .expect("login")
        .into_inner()
        .token
    }
}

impl Drop for ScaledServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
