//! Household cards (户卡) on PostgreSQL: sealed on the way in and opened on the way out in
//! Rust (SQLite does the same inside SQL functions), with the same contexts, so a value
//! sealed by either backend opens on the other. Every card write also rewrites the
//! household's blind ID index and search document in the same transaction.

use super::PreparedOnce;
use deadpool_postgres::GenericClient;
use fieldsync_model::household::Household;

use super::WriteError;
use super::change_log::{ChangeEntry, log_entry};
use crate::store::sealed::PiiCipher;
use crate::store::search::SearchDocument;
use crate::store::{StoreError, StoreResult};

/// Blind-index kind of member ID numbers (the same kind as SQLite's, so indexes agree).
pub(super) const ID_NUMBER_INDEX: &str = "id_number";

fn card_phone_context(household_id: &str) -> String {
    format!("households.phone/{household_id}")
}

fn card_id_number_context(household_id: &str, member_id: &str) -> String {
    format!("households.id_number/{household_id}/{member_id}")
}

/// The card as stored: phone and every member's ID number sealed.
pub(super) fn sealed_card_json(pii: &PiiCipher, household: &Household) -> StoreResult<String> {
    let mut card = household.clone();
    card.phone = pii.seal(&card.phone, &card_phone_context(&card.household_id));
    for member in &mut card.members {
        member.id_number = pii.seal(
            &member.id_number,
            &card_id_number_context(&card.household_id, &member.member_id),
        );
    }
    serde_json::to_string(&card).map_err(|error| {
        StoreError::database_caused_by(format!("cannot encode household card: {error}"), error)
    })
}

/// A stored card opened; `server_seq` is the column's, which every logged change updates.
pub(super) fn open_card(pii: &PiiCipher, card: &str, server_seq: i64) -> StoreResult<Household> {
    let mut household: Household = serde_json::from_str(card)
        .map_err(|error| StoreError::Corrupt(format!("household card: {error}")))?;
    let sealed_error =
        |error: crate::store::sealed::SealError| StoreError::Sealed(error.to_string());
    household.phone = pii
        .open(
            &household.phone,
            &card_phone_context(&household.household_id),
        )
        .map_err(sealed_error)?;
    for member in &mut household.members {
        member.id_number = pii
            .open(
                &member.id_number,
                &card_id_number_context(&household.household_id, &member.member_id),
            )
            .map_err(sealed_error)?;
    }
    household.server_seq = server_seq;
    Ok(household)
}

/// One stored household, opened; `lock` takes its row until the transaction ends (every
/// change of a household takes its sequences after this lock).
pub(super) async fn load_household(
    client: &impl GenericClient,
    pii: &PiiCipher,
    household_id: &str,
    lock: bool,
) -> StoreResult<Option<Household>> {
    let sql = if lock {
        "SELECT card, server_seq FROM households WHERE household_id = $1 FOR UPDATE"
    } else {
        "SELECT card, server_seq FROM households WHERE household_id = $1"
    };
    let statement = client.prepare_cached(sql).await?;
    client
        .query_opt(&statement, &[&household_id])
        .await?
        .map(|row| open_card(pii, row.try_get("card")?, row.try_get("server_seq")?))
        .transpose()
}

/// Store a new household and log it for pull (seed and roster import): logging first gives
/// it its `server_seq`, so the stored card and the column agree from the start.
pub(super) async fn insert_household(
    client: &impl GenericClient,
    pii: &PiiCipher,
    household: &Household,
) -> Result<(), WriteError> {
    let seq = log_entry(
        client,
        &ChangeEntry::of_household(&household.township_id, &household.household_id),
    )
    .await?;
    let mut card = household.clone();
    card.server_seq = seq;
    client
        .execute_cached(
            "INSERT INTO households (household_id, township_id, village_id, head_name, card,
                                     server_seq)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &card.household_id,
                &card.township_id,
                &card.village_id,
                &card.head_name,
                &sealed_card_json(pii, &card)?,
                &seq,
            ],
        )
        .await?;
    refresh_household_indexes(client, pii, &card).await
}

/// Rewrite the household's blind ID index and search document from its plain card.
pub(super) async fn refresh_household_indexes(
    client: &impl GenericClient,
    pii: &PiiCipher,
    household: &Household,
) -> Result<(), WriteError> {
    client
        .execute_cached(
            "DELETE FROM member_id_index WHERE household_id = $1",
            &[&household.household_id],
        )
        .await?;
    for member in household.current_members() {
        if member.id_number.is_empty() {
            continue;
        }
        let blind_index = pii.blind_index(ID_NUMBER_INDEX, &member.id_number.to_ascii_uppercase());
        client
            .execute_cached(
                "INSERT INTO member_id_index (household_id, member_id, blind_index)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (household_id, member_id) DO UPDATE SET
                     blind_index = excluded.blind_index",
                &[&household.household_id, &member.member_id, &blind_index],
            )
            .await?;
    }
    let document = SearchDocument::of(household);
    client
        .execute_cached(
            "INSERT INTO household_search (household_id, head, members, initials, number,
                                           id_tails)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (household_id) DO UPDATE SET
                 head = excluded.head, members = excluded.members,
                 initials = excluded.initials, number = excluded.number,
                 id_tails = excluded.id_tails",
            &[
                &household.household_id,
                &document.head,
                &document.members,
                &document.initials,
                &document.number,
                &document.id_tails,
            ],
        )
        .await?;
    Ok(())
}
