//! Conformance checks for [`Store`] implementations. Each check takes a fresh, empty store
//! as `&dyn Store`, seeds what it needs and asserts the behaviour the rest of the server
//! relies on, so SQLite today and PostgreSQL later are held to exactly the same contract
//! (DESIGN §3: "one conformance test suite runs against both"). Each implementation's test
//! module runs every check once against its own backend.
//!
//! Times are whole seconds so every backend can store them exactly.

// The registration macro in sqlite.rs takes plain names, so the checks are re-exported.

use fieldsync_model::codes::{
    Crs, Disability, Health, HouseholdAttribute, LabourCapacity, LocationProvider, PhotoSubject,
    PovertyCause, Relation, Role, Schooling, Sex, VisitExceptionReason, VisitMode, VisitType,
};
use fieldsync_model::household::{GeoPoint, Household, Member};
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_model::review::{Decision, DecisionRequest, ReturnReason};
use fieldsync_model::sync::{MutationOutcome, MutationPayload, RejectCode};
use fieldsync_model::visit::{GpsFix, PhotoRecord, Visit, WellbeingCheck};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::{
    Area, Pairing, Principal, PushAction, PushBatch, PushEntry, PushResult, SeedData, Store,
    StoredDecision, UploadRecord, UserRecord,
};
use super::{CaptureTime, PhotoMeta};

// Monthly ledger (月台账) checks live in their own file; re-exported so the backends'
// `conformance_tests!` lists name them like every other check.
// Roster import (花名册导入) checks, re-exported for the same reason.
// Ledger export and audit log checks, and pairings management checks (same reason).
// Area import (行政区划导入) checks of the separate `AreasStore` trait; each backend's
// `areas_conformance_tests!` list names them by path, so they are not re-exported.
// Review loop checks: queue filters and counts, revisions, photo history (same reason).
// Household search (农户检索) checks, re-exported for the `conformance_tests!` list.
use fieldsync_model::hlc::Hlc;
use fieldsync_model::register::{FieldEdit, FieldTarget};
use serde_json::Value;

/// One `#[tokio::test]` per named check of `crate::store::<area>::conformance`, each on the
/// fresh store that `$fresh_store()` returns with the guard keeping its files alive. Each
/// area's own macro (e.g. `ledger_conformance_tests!`) lists its checks through this one,
/// so a backend registers a whole area with one line.
#[cfg(test)]
macro_rules! checks_as_tests {
    // A backend whose fresh store is async and may be absent (PostgreSQL without a test
    // server: the check prints that it was skipped and passes).
    (async $fresh_store:path, $area:ident, [$($check:ident),+ $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(store) = $fresh_store(stringify!($check)).await else {
                    return;
                };
                $crate::store::$area::conformance::$check(&store).await;
            }
        )+
    };
    ($fresh_store:path, $area:ident, [$($check:ident),+ $(,)?]) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (_guard, store) = $fresh_store();
                $crate::store::$area::conformance::$check(&store).await;
            }
        )+
    };
}
#[cfg(test)]
pub(crate) use checks_as_tests;

// ----- fixture -----

/// When the fixture's visits happen: 10 March 2026, 10:00 Beijing time.
pub const VISIT_TIME: OffsetDateTime = datetime!(2026-03-10 02:00 UTC);
/// The business month of [`VISIT_TIME`].
pub const VISIT_MONTH: &str = "2026-03";

pub const COUNTY: &str = "county-1";
pub const TOWNSHIP_ONE: &str = "township-1";
pub const TOWNSHIP_TWO: &str = "township-2";
pub const VILLAGE_ONE_A: &str = "village-1a";
pub const VILLAGE_ONE_B: &str = "village-1b";
pub const VILLAGE_TWO_A: &str = "village-2a";

/// A small county: two townships, three villages, two cadres, two supervisors and an admin.
///
/// | household | village | township | paired with |
/// |---|---|---|---|
/// | `wang`  (王大山) | 1a | 1 | cadre A (primary) |
/// | `zhao`  (赵春花) | 1b | 1 | cadre A |
/// | `li`    (李小梅) | 1a | 1 | cadre B |
/// | `chen`  (陈建国) | 2a | 2 | nobody |
#[derive(Debug, Clone)]
pub struct Fixture {
    pub seed: SeedData,
    pub cadre_a: UserRecord,
    pub cadre_b: UserRecord,
    pub supervisor_one: UserRecord,
    pub supervisor_two: UserRecord,
    pub admin: UserRecord,
    pub wang: Household,
    pub zhao: Household,
    pub li: Household,
    pub chen: Household,
}

/// A fresh UUIDv7 as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn area(area_id: &str, name: &str, level: &str, parent_id: Option<&str>, lat: f64) -> Area {
    Area {
        area_id: area_id.into(),
        name: name.into(),
        level: level.into(),
        parent_id: parent_id.map(str::to_owned),
        centre: Some(GeoPoint {
            lat,
            lon: 110.0,
            crs: Crs::Wgs84,
        }),
    }
}

pub fn user(username: &str, display_name: &str, role: Role, area_id: &str) -> UserRecord {
    UserRecord {
        user_id: new_id(),
        username: username.into(),
        display_name: display_name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        role,
        area_id: area_id.into(),
        phone: "13800000000".into(),
        rank: (role == Role::Cadre).then_some(fieldsync_model::codes::CadreRank::General),
    }
}

/// A household with one member (the head) living at `lat`, 110.0 (WGS-84).
pub fn household(head_name: &str, township_id: &str, village_id: &str, lat: f64) -> Household {
    Household {
        household_id: new_id(),
        national_household_number: "4212230010010001".into(),
        head_name: head_name.into(),
        township_id: township_id.into(),
        village_id: village_id.into(),
        village_name: format!("{village_id} 村"),
        address: "三组12号".into(),
        phone: "13900000000".into(),
        attribute: HouseholdAttribute::General,
        main_cause: PovertyCause::Illness,
        secondary_causes: vec![PovertyCause::LackOfSkills],
        housing_danger_level: None,
        location: Some(GeoPoint {
            lat,
            lon: 110.0,
            crs: Crs::Wgs84,
        }),
        members: vec![Member {
            member_id: new_id(),
            name: head_name.into(),
            relation: Relation::Head,
            sex: Sex::Male,
            birth_date: "1949-12-31".into(),
            id_number: "11010519491231002X".into(),
            health: Health::Healthy,
            labour_capacity: LabourCapacity::Ordinary,
            schooling: Schooling::NotInSchool,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: true,
            has_serious_illness_insurance: true,
            has_pension_insurance: false,
            removed: false,
        }],
        measures: Vec::new(),
        server_seq: 0,
        field_seqs: Default::default(),
    }
}

/// Build the fixture county (not yet loaded).
pub fn fixture() -> Fixture {
    let areas = vec![
        area(COUNTY, "英山县", "county", None, 30.7),
        area(TOWNSHIP_ONE, "温泉镇", "township", Some(COUNTY), 30.7),
        area(TOWNSHIP_TWO, "石头咀镇", "township", Some(COUNTY), 30.8),
        area(
            VILLAGE_ONE_A,
            "东冲村",
            "village",
            Some(TOWNSHIP_ONE),
            30.71,
        ),
        area(
            VILLAGE_ONE_B,
            "西河村",
            "village",
            Some(TOWNSHIP_ONE),
            30.72,
        ),
        area(
            VILLAGE_TWO_A,
            "南岭村",
            "village",
            Some(TOWNSHIP_TWO),
            30.81,
        ),
    ];
    let cadre_a = user("cadre_a", "张干部", Role::Cadre, TOWNSHIP_ONE);
    let cadre_b = user("cadre_b", "刘干部", Role::Cadre, TOWNSHIP_ONE);
    let supervisor_one = user("super_one", "周审核", Role::Township, TOWNSHIP_ONE);
    let supervisor_two = user("super_two", "吴审核", Role::Township, TOWNSHIP_TWO);
    let admin = user("admin", "县管理员", Role::County, COUNTY);
    let wang = household("王大山", TOWNSHIP_ONE, VILLAGE_ONE_A, 30.711);
    let zhao = household("赵春花", TOWNSHIP_ONE, VILLAGE_ONE_B, 30.721);
    let li = household("李小梅", TOWNSHIP_ONE, VILLAGE_ONE_A, 30.712);
    let chen = household("陈建国", TOWNSHIP_TWO, VILLAGE_TWO_A, 30.811);
    let pairing = |cadre: &UserRecord, household: &Household, is_primary: bool| Pairing {
        cadre_user_id: cadre.user_id.clone(),
        household_id: household.household_id.clone(),
        is_primary,
    };
    let pairings = vec![
        pairing(&cadre_a, &wang, true),
        pairing(&cadre_a, &zhao, false),
        pairing(&cadre_b, &li, true),
    ];
    Fixture {
        seed: SeedData {
            areas,
            users: vec![
                cadre_a.clone(),
                cadre_b.clone(),
                supervisor_one.clone(),
                supervisor_two.clone(),
                admin.clone(),
            ],
            households: vec![wang.clone(), zhao.clone(), li.clone(), chen.clone()],
            pairings,
        },
        cadre_a,
        cadre_b,
        supervisor_one,
        supervisor_two,
        admin,
        wang,
        zhao,
        li,
        chen,
    }
}

/// Build the fixture and load it into `store`.
pub async fn seeded(store: &dyn Store) -> Fixture {
    let fixture = fixture();
    store
        .load_seed(fixture.seed.clone())
        .await
        .expect("load the fixture seed");
    fixture
}

/// Insist that every entry of a pushed batch was applied (the outcomes are printed if not).
pub fn assert_all_applied(result: &PushResult) {
    assert!(
        result
            .outcomes
            .iter()
            .all(|(_, outcome)| *outcome == MutationOutcome::Applied),
        "{result:?}"
    );
}

/// The principal of `user` on `device_id`.
pub fn principal(user: &UserRecord, device_id: &str) -> Principal {
    Principal {
        user_id: user.user_id.clone(),
        display_name: user.display_name.clone(),
        role: user.role,
        area_id: user.area_id.clone(),
        device_id: device_id.into(),
    }
}

/// A valid first-revision visit to `household` at `checkin`, with a GPS fix ~111 m north of
/// the household's location.
pub fn visit(household: &Household, mode: VisitMode, checkin: OffsetDateTime) -> Visit {
    let checkout = checkin + Duration::minutes(40);
    Visit {
        visit_id: new_id(),
        revision: 1,
        supersedes_revision: 0,
        household_id: household.household_id.clone(),
        mode,
        exception_reason: (mode != VisitMode::InPerson)
            .then_some(VisitExceptionReason::WorkingAway),
        visit_type: VisitType::Routine,
        checkin_at: checkin,
        checkout_at: checkout,
        observed_situation: "家中生产生活正常，养猪两头，长势良好".into(),
        plan_progress: "产业帮扶资金已到位".into(),
        problems: String::new(),
        actions: "讲解医保报销政策".into(),
        needs: String::new(),
        policies_explained: vec!["医疗保障".into()],
        wellbeing: WellbeingCheck::default(),
        proposed_changes: Vec::new(),
        photo_ids: Vec::new(),
        gps: household.location.map(|home| GpsFix {
            lat: home.lat + 0.001,
            lon: home.lon,
            crs: home.crs,
            accuracy_m: 12.0,
            provider: Some(LocationProvider::Gps),
            is_mock: false,
            fix_time: Some(checkin),
        }),
        recorded_at_device: checkout,
    }
}

/// The next revision of `previous`, correcting it.
pub fn revise(previous: &Visit) -> Visit {
    Visit {
        revision: previous.revision + 1,
        supersedes_revision: previous.revision,
        observed_situation: format!("{}（补充：已核实住房情况）", previous.observed_situation),
        ..previous.clone()
    }
}

/// Photo metadata for `visit_id` with a SHA-256 derived from the photo id.
pub fn photo(visit_id: &str) -> PhotoRecord {
    let photo_id = new_id();
    PhotoRecord {
        sha256: hex::encode(Sha256::digest(photo_id.as_bytes())),
        photo_id,
        visit_id: visit_id.into(),
        size_bytes: 245_000,
        mime_type: "image/jpeg".into(),
        subject: Some(PhotoSubject::WithHead),
        captured_at_device: Some(VISIT_TIME),
        in_app_camera: true,
    }
}

pub fn income(household: &Household, year: i32, quarter: u32) -> IncomeRegistration {
    let components = IncomeComponents {
        wage_fen: 300_000,
        business_gross_fen: 100_000,
        property_fen: 0,
        transfer_fen: 90_000,
        business_cost_fen: 40_000,
    };
    IncomeRegistration::new(
        new_id(),
        household.household_id.clone(),
        year,
        quarter,
        3,
        components,
    )
    .expect("valid income registration")
}

pub fn apply(seq: u64, payload: MutationPayload) -> PushEntry {
    PushEntry {
        seq,
        mutation_id: new_id(),
        hlc: seq,
        action: PushAction::Apply(payload),
    }
}

/// A batch from `user` on `device_id` with a fresh batch id and a fingerprint derived from it.
pub fn batch(user: &UserRecord, device_id: &str, entries: Vec<PushEntry>) -> PushBatch {
    let batch_id = new_id();
    PushBatch {
        device_id: device_id.into(),
        user_id: user.user_id.clone(),
        fingerprint: hex::encode(Sha256::digest(batch_id.as_bytes())),
        batch_id,
        entries,
        received_at: VISIT_TIME + Duration::hours(3),
    }
}

/// Push one visit as its own batch and insist it was applied.
pub async fn push_visit(
    store: &dyn Store,
    user: &UserRecord,
    device_id: &str,
    seq: u64,
    visit: &Visit,
) {
    let result = store
        .apply_push(batch(
            user,
            device_id,
            vec![apply(seq, MutationPayload::SubmitVisit(visit.clone()))],
        ))
        .await
        .expect("push a visit");
    assert_eq!(result.outcomes, vec![(seq, MutationOutcome::Applied)]);
}

pub fn decision(visit: &Visit, decision: Decision, reviewer: &UserRecord) -> StoredDecision {
    StoredDecision {
        request: DecisionRequest {
            visit_id: visit.visit_id.clone(),
            revision: visit.revision,
            content_hash: visit.content_hash(),
            decision,
            reasons: match decision {
                Decision::Approve => Vec::new(),
                Decision::Return => vec![ReturnReason {
                    code: "photo_unclear".into(),
                    field: "photo_ids".into(),
                }],
            },
            note: match decision {
                Decision::Approve => String::new(),
                Decision::Return => "请补拍户主合影".into(),
            },
            deadline: match decision {
                Decision::Approve => String::new(),
                Decision::Return => "2026-03-20".into(),
            },
        },
        reviewer_user_id: reviewer.user_id.clone(),
        decided_at: VISIT_TIME + Duration::days(1),
    }
}

pub fn rejected_code(outcome: &MutationOutcome) -> Option<RejectCode> {
    match outcome {
        MutationOutcome::Rejected { code, .. } => Some(*code),
        _ => None,
    }
}

pub fn same_card(stored: &Household, original: &Household) -> bool {
    Household {
        server_seq: original.server_seq,
        field_seqs: original.field_seqs.clone(),
        ..stored.clone()
    } == *original
}

// ----- checks -----

// ----- field registers and conflicts -----

/// An edit of `field` of the household itself.
pub fn household_edit(
    household: &Household,
    field: &str,
    value: Value,
    base_seq: i64,
) -> MutationPayload {
    MutationPayload::EditField(FieldEdit {
        household_id: household.household_id.clone(),
        target: FieldTarget::Household,
        field: field.into(),
        value,
        base_seq,
    })
}

/// Push one mutation with an explicit HLC (milliseconds, counter 0) as its own batch.
pub async fn push_at(
    store: &dyn Store,
    user: &UserRecord,
    device_id: &str,
    seq: u64,
    millis: u64,
    payload: MutationPayload,
) -> MutationOutcome {
    let entry = PushEntry {
        seq,
        mutation_id: new_id(),
        hlc: Hlc::from_parts(millis, 0).as_u64(),
        action: PushAction::Apply(payload),
    };
    let result = store
        .apply_push(batch(user, device_id, vec![entry]))
        .await
        .expect("push");
    assert_eq!(result.outcomes.len(), 1);
    result.outcomes[0].1.clone()
}

pub async fn card(store: &dyn Store, household: &Household) -> Household {
    store
        .get_household(&household.household_id)
        .await
        .expect("read card")
        .expect("household exists")
}

// ----- photo metadata and evidence inputs -----

pub fn meta(phash: u64, exif_time: Option<CaptureTime>) -> PhotoMeta {
    PhotoMeta {
        mime_type: "image/jpeg".into(),
        width: 640,
        height: 480,
        exif_time,
        exif_gps: Some((43.467_157, 11.885_395)),
        gps_time: Some(datetime!(2008-10-23 14:27:07 UTC)),
        make: Some("NIKON".into()),
        model: Some("COOLPIX P6000".into()),
        orientation: Some(1),
        phash,
        exif_damaged: false,
    }
}

/// Complete an upload of `sha256` so its blob row exists.
pub async fn store_blob(store: &dyn Store, user: &UserRecord, sha256: &str) {
    let upload = store
        .start_upload(UploadRecord {
            upload_id: new_id(),
            sha256: sha256.into(),
            size_bytes: 245_000,
            mime_type: "image/jpeg".into(),
            committed_offset: 0,
            complete: false,
            user_id: user.user_id.clone(),
            last_activity_at: VISIT_TIME,
        })
        .await
        .expect("start upload");
    store
        .complete_upload(&upload.upload_id, VISIT_TIME)
        .await
        .expect("complete upload");
}
