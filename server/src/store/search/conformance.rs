//! Conformance checks for [`SearchStore`] (农户检索): what a query finds, in which order,
//! only inside the caller's area, and that a card write updates the index in the same
//! transaction. Every backend runs every check once (SQLite: the `conformance_tests!` list in
//! `store/sqlite.rs`).

use fieldsync_model::codes::Relation;
use fieldsync_model::household::{Household, Member};
use fieldsync_model::id_number::check_character;
use fieldsync_model::register::{FieldEdit, FieldTarget};
use fieldsync_model::sync::{MutationOutcome, MutationPayload};

use crate::store::conformance::{
    COUNTY, TOWNSHIP_ONE, TOWNSHIP_TWO, apply, batch, fixture, new_id,
};
use crate::store::search::{HouseholdQuery, SEARCH_LIMIT};
use crate::store::{LedgerArea, Store};

/// A valid 18-character ID number from its first 17 digits.
fn id_number(body: &str) -> String {
    format!("{body}{}", check_character(body).expect("17 digits"))
}

/// A second member of `household`.
fn member(household: &Household, name: &str, id_number: &str) -> Member {
    Member {
        member_id: new_id(),
        name: name.into(),
        relation: Relation::Son,
        id_number: id_number.into(),
        ..household.members[0].clone()
    }
}

async fn found(store: &dyn Store, area: &LedgerArea, text: &str) -> Vec<String> {
    let query = HouseholdQuery::parse(text).expect("a query");
    store
        .search_households(area, &query, SEARCH_LIMIT)
        .await
        .expect("search")
        .into_iter()
        .map(|household| household.head_name)
        .collect()
}

/// Households are found by the head's or a member's name (any part, or the 拼音 initials),
/// by 户编号 digits, by the last 4–6 characters of an ID number or the whole number; heads
/// first; never outside the area; and an edited card is found by its new name at once.
pub async fn households_are_found_by_name_number_and_id_digits_within_the_area(store: &dyn Store) {
    let mut fixture = fixture();
    let ids = [
        id_number("42112219500101001"),
        id_number("42112219520202005"),
        id_number("42112219600303003"),
        id_number("42112219700404004"),
    ];
    for (index, household) in [
        &mut fixture.wang,
        &mut fixture.zhao,
        &mut fixture.li,
        &mut fixture.chen,
    ]
    .into_iter()
    .enumerate()
    {
        household.national_household_number = format!("42122300100{index}{index}77{index}");
        household.members[0].id_number = ids[index].clone();
    }
    // 王小明 lives with 王大山; a removed member is never found; 李小梅 shares the last four
    // characters of 王小明's number but not the fifth-last.
    let xiaoming_id = format!("42112220100509{}", &ids[2][14..]);
    let xiaoming = member(&fixture.wang, "王小明", &xiaoming_id);
    let mut gone = member(&fixture.wang, "刘已故", &id_number("42112219300101009"));
    gone.removed = true;
    fixture.wang.members.extend([xiaoming, gone]);
    fixture.seed.households = vec![
        fixture.wang.clone(),
        fixture.zhao.clone(),
        fixture.li.clone(),
        fixture.chen.clone(),
    ];
    store.load_seed(fixture.seed.clone()).await.expect("seed");
    let township = LedgerArea::Township(TOWNSHIP_ONE.into());
    let other_township = LedgerArea::Township(TOWNSHIP_TWO.into());
    let county = LedgerArea::County(COUNTY.into());

    // Names: whole, any part, initials; the head before a household that only has a member.
    assert_eq!(found(store, &township, "王大山").await, ["王大山"]);
    assert_eq!(found(store, &township, "大山").await, ["王大山"]);
    assert_eq!(found(store, &township, "小明").await, ["王大山"]);
    assert_eq!(
        found(store, &township, "小").await,
        ["李小梅", "王大山"],
        "李小梅 is a head; 王大山's household only has a 小 among its members"
    );
    assert_eq!(found(store, &township, "wds").await, ["王大山"]);
    assert_eq!(found(store, &township, "WXM").await, ["王大山"]);
    assert!(
        found(store, &township, "已故").await.is_empty(),
        "removed members are not found"
    );
    // Scope: 陈建国 lives in township two.
    assert!(found(store, &township, "陈建国").await.is_empty());
    assert!(found(store, &township, "cjg").await.is_empty());
    assert_eq!(found(store, &other_township, "陈建国").await, ["陈建国"]);
    assert!(found(store, &other_township, "王大山").await.is_empty());
    assert_eq!(found(store, &county, "建国").await, ["陈建国"]);

    // 户编号 digits anywhere in the number.
    assert_eq!(found(store, &township, "0077").await, ["王大山"]);
    assert_eq!(found(store, &township, "1177").await, ["赵春花"]);
    assert_eq!(found(store, &county, "3377").await, ["陈建国"]);
    assert!(found(store, &township, "3377").await.is_empty());

    // The last four characters find both 李小梅 and 王小明's household; the fifth-last tells
    // them apart; the whole number goes through the blind index.
    let tail4 = &ids[2][14..];
    let mut both = found(store, &township, tail4).await;
    both.sort();
    assert_eq!(both, ["李小梅", "王大山"], "tail {tail4}");
    assert_eq!(found(store, &township, &ids[2][13..]).await, ["李小梅"]);
    assert_eq!(
        found(store, &township, &xiaoming_id[13..]).await,
        ["王大山"]
    );
    assert_eq!(found(store, &township, &ids[1]).await, ["赵春花"]);
    assert_eq!(found(store, &township, &xiaoming_id).await, ["王大山"]);
    assert!(
        found(store, &township, &ids[3]).await.is_empty(),
        "out of scope"
    );
    assert_eq!(found(store, &county, &ids[3]).await, ["陈建国"]);

    // The matched households come back as plain cards (the caller masks them).
    let query = HouseholdQuery::parse(tail4).expect("query");
    let cards = store
        .search_households(&township, &query, 1)
        .await
        .expect("search");
    assert_eq!(cards.len(), 1, "the limit holds");
    assert!(
        cards[0]
            .members
            .iter()
            .any(|member| member.id_number.ends_with(tail4)),
        "the card's ID numbers are opened"
    );

    // A renamed member is found by the new name at once, and no longer by the old one.
    let xiaoming_member_id = fixture.wang.members[1].member_id.clone();
    let rename = MutationPayload::EditField(FieldEdit {
        household_id: fixture.wang.household_id.clone(),
        target: FieldTarget::Member(xiaoming_member_id),
        field: "name".into(),
        value: serde_json::json!("王晓明"),
        base_seq: 0,
    });
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "search-device",
            vec![apply(1, rename)],
        ))
        .await
        .expect("push");
    assert_eq!(result.outcomes[0].1, MutationOutcome::Applied);
    assert_eq!(found(store, &township, "晓明").await, ["王大山"]);
    assert!(found(store, &township, "小明").await.is_empty());
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! search_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            search,
            [households_are_found_by_name_number_and_id_digits_within_the_area,]
        );
    };
}
#[cfg(test)]
pub(crate) use search_conformance_tests;
