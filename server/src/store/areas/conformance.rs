//! Conformance checks for [`AreasStore`] (行政区划): the county's areas with their village
//! attributes, the one-transaction apply of an area import with its run, and the
//! all-or-nothing refusal. Each check takes a fresh, empty store that implements both
//! [`Store`] (to seed the county) and [`AreasStore`]; every backend runs every check once
//! (SQLite: `sqlite.rs` next to this file).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fieldsync_model::areas::{AreaEntry, AreaImportPlan, AreaLevel, VillageAttributes};
use fieldsync_model::codes::{Crs, Role};
use fieldsync_model::household::GeoPoint;

use crate::store::areas::{AreaImportApply, AreaImportRun, AreasStore};
use crate::store::conformance::{
    COUNTY, TOWNSHIP_ONE, TOWNSHIP_TWO, VILLAGE_ONE_A, VISIT_TIME, household, new_id, same_card,
    seeded, user,
};
use crate::store::{Area, SeedData, Store, StoreError, UserRecord};

/// The county every check imports into (a real 12-digit code).
pub const AREA_COUNTY: &str = "522731000000";
const TOWNSHIP: &str = "522731101000";
const VILLAGE: &str = "522731101201";
/// Another county on the same server, whose areas must never show up.
const OTHER_COUNTY: &str = "522732000000";

fn seed_area(area_id: &str, name: &str, level: &str, parent_id: Option<&str>) -> Area {
    Area {
        area_id: area_id.into(),
        name: name.into(),
        level: level.into(),
        parent_id: parent_id.map(str::to_owned),
        centre: None,
    }
}

/// The county with one township and one village, a neighbouring county with a township,
/// and the county's administrator.
async fn seeded_county<S: Store + AreasStore>(store: &S) -> UserRecord {
    let admin = user("areas-admin", "区划管理员", Role::County, AREA_COUNTY);
    store
        .load_seed(SeedData {
            areas: vec![
                seed_area(AREA_COUNTY, "示范县", "county", None),
                seed_area(TOWNSHIP, "城关镇", "township", Some(AREA_COUNTY)),
                seed_area(VILLAGE, "新寨村", "village", Some(TOWNSHIP)),
                seed_area(OTHER_COUNTY, "邻县", "county", None),
                seed_area("522732101000", "邻镇", "township", Some(OTHER_COUNTY)),
            ],
            users: vec![admin.clone()],
            ..SeedData::default()
        })
        .await
        .expect("seed");
    admin
}

fn entry(area_id: &str, name: &str, level: AreaLevel, parent_id: Option<&str>) -> AreaEntry {
    AreaEntry {
        area_id: area_id.into(),
        name: name.into(),
        level,
        parent_id: parent_id.map(str::to_owned),
        centre: None,
        attributes: VillageAttributes::default(),
    }
}

fn run_of(admin: &UserRecord, plan: &AreaImportPlan) -> AreaImportRun {
    AreaImportRun {
        run_id: new_id(),
        county_id: AREA_COUNTY.into(),
        file_name: "行政区划.xlsx".into(),
        file_sha256: "cd".repeat(32),
        file_bytes: 4096,
        data_rows: 4,
        areas_created: plan.new_areas.len() as u64,
        areas_changed: plan.updated_areas.len() as u64,
        fields_changed: plan.changes.len() as u64,
        areas_renamed: plan.renamed_count() as u64,
        areas_missing: plan.missing.len() as u64,
        unchanged_rows: plan.unchanged_rows,
        applied_by_user_id: admin.user_id.clone(),
        applied_by_name: String::new(),
        applied_at: VISIT_TIME,
    }
}

fn apply_of(admin: &UserRecord, plan: AreaImportPlan) -> AreaImportApply {
    AreaImportApply {
        run: run_of(admin, &plan),
        plan,
        applied_items: Arc::new(AtomicU64::new(0)),
    }
}

fn ids(areas: &[AreaEntry]) -> Vec<&str> {
    areas.iter().map(|area| area.area_id.as_str()).collect()
}

pub async fn county_areas_lists_the_county_townships_and_villages_in_code_order<
    S: Store + AreasStore,
>(
    store: &S,
) {
    seeded_county(store).await;
    let areas = store.county_areas(AREA_COUNTY).await.expect("areas");
    assert_eq!(ids(&areas), [AREA_COUNTY, TOWNSHIP, VILLAGE]);
    assert_eq!(areas[0].level, AreaLevel::County);
    assert_eq!(areas[1].level, AreaLevel::Township);
    assert_eq!(areas[2].level, AreaLevel::Village);
    assert_eq!(areas[2].parent_id.as_deref(), Some(TOWNSHIP));
    assert_eq!(
        areas[2].attributes,
        VillageAttributes::default(),
        "a seeded village has no attributes yet"
    );
    assert!(
        store
            .area_import_runs(AREA_COUNTY, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

pub async fn an_area_import_inserts_updates_and_keeps_its_run<S: Store + AreasStore>(store: &S) {
    let admin = seeded_county(store).await;
    let new_township = "522731102000";
    let new_village = "522731102201";
    let mut village = entry(
        new_village,
        "河东村",
        AreaLevel::Village,
        Some(new_township),
    );
    village.centre = Some(GeoPoint {
        lat: 26.41,
        lon: 107.47,
        crs: Crs::Gcj02,
    });
    village.attributes.is_poor_village = Some(true);
    village.attributes.exit_year = Some(2019);
    village.attributes.collective_income_yuan = Some(125_000);
    let mut renamed = entry(VILLAGE, "新寨社区", AreaLevel::Village, Some(TOWNSHIP));
    renamed.attributes.broadband = Some(false);
    let plan = AreaImportPlan {
        new_areas: vec![
            entry(
                new_township,
                "河东乡",
                AreaLevel::Township,
                Some(AREA_COUNTY),
            ),
            village.clone(),
        ],
        updated_areas: vec![renamed.clone()],
        ..AreaImportPlan::default()
    };
    let apply = apply_of(&admin, plan);
    let applied_items = Arc::clone(&apply.applied_items);
    let run = store.apply_area_import(apply).await.expect("apply");
    assert_eq!(applied_items.load(Ordering::Relaxed), 3);
    assert_eq!(run.applied_by_name, "区划管理员");
    assert_eq!(run.areas_created, 2);

    let areas = store.county_areas(AREA_COUNTY).await.expect("areas");
    assert_eq!(
        ids(&areas),
        [AREA_COUNTY, TOWNSHIP, VILLAGE, new_township, new_village]
    );
    assert_eq!(areas[2], renamed);
    assert_eq!(areas[4], village, "centre and attributes read back exactly");

    // Imported areas are ordinary areas: the roster import's snapshot sees them.
    let roster = store.county_roster(AREA_COUNTY).await.expect("roster");
    assert!(
        roster
            .villages
            .iter()
            .any(|area| area.area_id == new_village && area.name == "河东村")
    );
    assert!(roster.townships.iter().any(|area| area.name == "河东乡"));

    let runs = store.area_import_runs(AREA_COUNTY, 10).await.expect("runs");
    assert_eq!(runs, vec![run]);
    assert!(
        store
            .area_import_runs(OTHER_COUNTY, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

pub async fn an_area_import_that_fails_stores_nothing<S: Store + AreasStore>(store: &S) {
    let admin = seeded_county(store).await;
    let before = store.county_areas(AREA_COUNTY).await.expect("areas");

    // The second new area exists by now: the first must not stay behind.
    let plan = AreaImportPlan {
        new_areas: vec![
            entry(
                "522731102000",
                "河东乡",
                AreaLevel::Township,
                Some(AREA_COUNTY),
            ),
            entry(VILLAGE, "新寨村", AreaLevel::Village, Some(TOWNSHIP)),
        ],
        updated_areas: vec![entry(VILLAGE, "改名村", AreaLevel::Village, Some(TOWNSHIP))],
        ..AreaImportPlan::default()
    };
    let refused = store.apply_area_import(apply_of(&admin, plan)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    // A village whose township is neither stored nor written first.
    let plan = AreaImportPlan {
        new_areas: vec![entry(
            "522731109201",
            "孤村",
            AreaLevel::Village,
            Some("522731109000"),
        )],
        ..AreaImportPlan::default()
    };
    let refused = store.apply_area_import(apply_of(&admin, plan)).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidValue { .. })),
        "{refused:?}"
    );

    // An area of another county.
    let plan = AreaImportPlan {
        new_areas: vec![entry(
            "522732101201",
            "邻村",
            AreaLevel::Village,
            Some("522732101000"),
        )],
        ..AreaImportPlan::default()
    };
    let refused = store.apply_area_import(apply_of(&admin, plan)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    assert_eq!(
        store.county_areas(AREA_COUNTY).await.expect("areas"),
        before
    );
    assert!(
        store
            .area_import_runs(AREA_COUNTY, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

pub async fn an_unknown_county_is_not_found<S: Store + AreasStore>(store: &S) {
    let missing = store.county_areas("522799000000").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub async fn renaming_a_village_renames_it_on_its_households_cards<S: Store + AreasStore>(
    store: &S,
) {
    let admin = seeded_county(store).await;
    let mut card = household("王大山", TOWNSHIP, VILLAGE, 26.4);
    card.village_name = "新寨村".into();
    store
        .load_seed(SeedData {
            households: vec![card.clone()],
            ..SeedData::default()
        })
        .await
        .expect("household");
    let before = store.county_roster(AREA_COUNTY).await.expect("roster");
    let seq_before = before.households[0].server_seq;

    let plan = AreaImportPlan {
        updated_areas: vec![entry(
            VILLAGE,
            "新寨社区",
            AreaLevel::Village,
            Some(TOWNSHIP),
        )],
        ..AreaImportPlan::default()
    };
    store
        .apply_area_import(apply_of(&admin, plan))
        .await
        .expect("apply");
    let after = store.county_roster(AREA_COUNTY).await.expect("roster");
    let renamed = &after.households[0];
    assert_eq!(renamed.village_name, "新寨社区");
    assert!(
        renamed.server_seq > seq_before,
        "the card is logged again, so phones pull the new name"
    );
    assert_eq!(
        renamed.members, card.members,
        "nothing else on the card changes"
    );

    // The same name again re-sends nothing.
    let plan = AreaImportPlan {
        updated_areas: vec![entry(
            VILLAGE,
            "新寨社区",
            AreaLevel::Village,
            Some(TOWNSHIP),
        )],
        ..AreaImportPlan::default()
    };
    store
        .apply_area_import(apply_of(&admin, plan))
        .await
        .expect("apply");
    let again = store.county_roster(AREA_COUNTY).await.expect("roster");
    assert_eq!(again.households[0].server_seq, renamed.server_seq);
}

/// Seeding fills an empty store; households, areas and users read back as loaded.
pub async fn seed_and_read_back(store: &dyn Store) {
    assert!(store.is_empty().await.expect("is_empty"));
    let fixture = seeded(store).await;
    assert!(!store.is_empty().await.expect("is_empty"));

    let wang = store
        .get_household(&fixture.wang.household_id)
        .await
        .expect("get household")
        .expect("wang exists");
    assert!(same_card(&wang, &fixture.wang), "{wang:?}");
    assert!(
        wang.server_seq > 0,
        "a seeded household has a server sequence"
    );
    assert_eq!(
        store.get_household("no-such-household").await.expect("get"),
        None
    );

    let roots = store.list_areas(None).await.expect("list roots");
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0], fixture.seed.areas[0]);
    let townships = store
        .list_areas(Some(COUNTY))
        .await
        .expect("list townships");
    let township_ids: Vec<&str> = townships.iter().map(|area| area.area_id.as_str()).collect();
    assert_eq!(township_ids, vec![TOWNSHIP_ONE, TOWNSHIP_TWO]);
    let villages = store
        .list_areas(Some(TOWNSHIP_ONE))
        .await
        .expect("list villages");
    assert_eq!(villages.len(), 2);
    let village = store
        .get_area(VILLAGE_ONE_A)
        .await
        .expect("get area")
        .expect("village exists");
    assert_eq!(village, fixture.seed.areas[3]);
    assert_eq!(store.get_area("nowhere").await.expect("get area"), None);

    let cadre = store
        .find_user_by_username("cadre_a")
        .await
        .expect("find user")
        .expect("cadre_a exists");
    assert_eq!(cadre, fixture.cadre_a);
    assert_eq!(
        store.find_user_by_username("nobody").await.expect("find"),
        None
    );

    assert!(
        store
            .is_paired(&fixture.cadre_a.user_id, &fixture.wang.household_id)
            .await
            .expect("is_paired")
    );
    assert!(
        !store
            .is_paired(&fixture.cadre_a.user_id, &fixture.li.household_id)
            .await
            .expect("is_paired")
    );
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! areas_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            areas,
            [
                seed_and_read_back,
                county_areas_lists_the_county_townships_and_villages_in_code_order,
                an_area_import_inserts_updates_and_keeps_its_run,
                an_area_import_that_fails_stores_nothing,
                an_unknown_county_is_not_found,
                renaming_a_village_renames_it_on_its_households_cards,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use areas_conformance_tests;
