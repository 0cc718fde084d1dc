//! Household cards (户卡) on PostgreSQL: sealed on the way in and opened on the way out in
//! Rust (SQLite does the same inside SQL functions), with the same contexts, so a value
//! sealed by either backend opens on the other. Every card write also rewrites the
//! household's blind ID index and search document in the same transaction.

use super::PreparedOnce;
use deadpool_postgres::GenericClient;
use fieldsync_model::household::Household;

use super::WriteError;
use super::change_log::{ChangeEntry, log_entry};
use crate::store::StoreResult;
use crate::store::sealed::PiiCipher;
pub(super) use crate::store::sealed::{open_card, sealed_card_json};
use crate::store::search::SearchDocument;

/// Blind-index kind of member ID numbers (the same kind as SQLite's, so indexes agree).
pub(super) const ID_NUMBER_INDEX: &str = "id_number";

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
