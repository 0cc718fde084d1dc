//! Personal data sealed at the SQLite boundary: the [`PiiCipher`] is registered on every
//! connection as SQL functions, so each statement that writes a sensitive column seals it
//! and each statement that reads one opens it, and nothing above the store ever sees a
//! sealed value (nor can forget to seal one: there is no other way to the column).
//!
//! | function | use |
//! |---|---|
//! | `pii_seal_card(card)` / `pii_open_card(card)` | household card JSON: `phone` and every member's `id_number` |
//! | `pii_seal_field(field, value, context)` | register values and conflict records: sealed when `field` is sensitive |
//! | `pii_seal(value, context)` / `pii_open(value, context)` | a whole column (users.phone) |
//! | `pii_index(kind, value)` | keyed blind index (`member_id_index`) |
//! | `pii_needs_reseal(value)` / `pii_card_needs_reseal(card)` | plain or sealed with a retired key |
//!
//! The context (associated data) of a value is built from its row's key, by SQL on the
//! read side and by the same expressions on the write side, so a sealed value moved to
//! another row fails to open.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::{Connection, Transaction, params};
use serde_json::Value;

use crate::store::StoreResult;
use crate::store::sealed::{PiiCipher, SealError, card_id_number_context, card_phone_context};

/// Register and household/member fields whose values are sealed (联系电话, 身份证号).
pub(crate) const SENSITIVE_FIELDS: &[&str] = &["phone", "id_number"];

/// Text every seal failure's message starts with, so the store maps it back to
/// [`StoreError::Sealed`] (SQLite carries a function's error as text only).
pub(crate) const SEAL_FAILURE_MARKER: &str = "sealed value in";

/// SQL: the context of a register write's value (its register), over columns named as in
/// `register_writes` and `conflicts`.
pub(crate) const REGISTER_CONTEXT_SQL: &str =
    "'register/' || household_id || '/' || target_key || '/' || field";

/// SQL: the context of a conflict record's values.
pub(crate) const CONFLICT_CONTEXT_SQL: &str = "'conflict/' || conflict_key";

/// SQL: the context of users.phone.
pub(crate) const USER_PHONE_CONTEXT_SQL: &str = "'users.phone/' || user_id";

pub(crate) fn register_context(household_id: &str, target_key: &str, field: &str) -> String {
    format!("register/{household_id}/{target_key}/{field}")
}

pub(crate) fn conflict_context(conflict_key: &str) -> String {
    format!("conflict/{conflict_key}")
}

pub(crate) fn user_phone_context(user_id: &str) -> String {
    format!("users.phone/{user_id}")
}

fn user_error(error: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(error))
}

/// Text arguments; NULL reads as the empty string (columns that allow NULL hold no value).
fn text_argument(context: &Context<'_>, index: usize) -> rusqlite::Result<String> {
    Ok(context.get::<Option<String>>(index)?.unwrap_or_default())
}

/// What to do with each sensitive value of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CardStep {
    /// Seal plain values (every write: the card comes from the domain, always plain).
    Seal,
    Open,
    /// Open (plain or any known key) and seal again with the current key.
    Reseal,
}

/// Apply `step` to the sensitive fields of a card's JSON.
fn transform_card(cipher: &PiiCipher, card: &str, step: CardStep) -> Result<String, CardError> {
    // A card that is not JSON is handed on unchanged: decoding it reports it as corrupt
    // data with its household, which is the truth (no key problem).
    let Ok(mut value) = serde_json::from_str::<Value>(card) else {
        return Ok(card.to_owned());
    };
    let household_id = value
        .get("household_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let transform = |text: &str, context: &str| -> Result<String, SealError> {
        match step {
            CardStep::Seal => Ok(cipher.seal(text, context)),
            CardStep::Open => cipher.open(text, context),
            CardStep::Reseal => Ok(cipher.seal(&cipher.open(text, context)?, context)),
        }
    };
    if let Some(Value::String(phone)) = value.get_mut("phone") {
        *phone = transform(phone, &card_phone_context(&household_id))?;
    }
    if let Some(Value::Array(members)) = value.get_mut("members") {
        for member in members {
            let member_id = member
                .get("member_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(Value::String(id_number)) = member.get_mut("id_number") {
                *id_number = transform(
                    id_number,
                    &card_id_number_context(&household_id, &member_id),
                )?;
            }
        }
    }
    serde_json::to_string(&value).map_err(CardError::Json)
}

/// The sensitive fields of a card as they sit in its JSON text, borrowed where the text
/// has no escapes (a sealed value never has: prefix, key id and base64).
#[derive(serde::Deserialize)]
struct CardSensitiveFields<'a> {
    #[serde(default, borrow)]
    household_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    phone: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    members: Vec<MemberSensitiveFields<'a>>,
}

#[derive(serde::Deserialize)]
struct MemberSensitiveFields<'a> {
    #[serde(default, borrow)]
    member_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    id_number: Option<std::borrow::Cow<'a, str>>,
}

/// Open a card's sealed values in place in its JSON text: the same card as
/// [`transform_card`] with [`CardStep::Open`], without building and writing back a whole
/// JSON tree. Every read of a household opens its card (a review, a pull page, a household
/// page), and the tree's round trip was most of the cost of reading one (issue 11 small-RPC
/// profile). A card of any other shape takes the tree path.
fn open_card(cipher: &PiiCipher, card: &str) -> Result<String, CardError> {
    let Ok(fields) = serde_json::from_str::<CardSensitiveFields<'_>>(card) else {
        return transform_card(cipher, card, CardStep::Open);
    };
    let household_id = fields.household_id.as_deref().unwrap_or_default();
    let sealed_values = fields
        .phone
        .as_deref()
        .map(|phone| (phone, card_phone_context(household_id)))
        .into_iter()
        .chain(fields.members.iter().filter_map(|member| {
            let member_id = member.member_id.as_deref().unwrap_or_default();
            member
                .id_number
                .as_deref()
                .map(|id_number| (id_number, card_id_number_context(household_id, member_id)))
        }))
        .filter(|(value, _)| crate::store::sealed::is_sealed(value));
    let contexts: std::collections::HashMap<&str, String> = sealed_values.collect();
    // One pass over the text: each quoted sealed value of a sensitive field is replaced
    // by its opened JSON string; anything else (another field that merely looks sealed)
    // is copied as it is.
    let quoted_prefix = format!("\"{}", crate::store::sealed::SEALED_PREFIX);
    let mut opened = String::with_capacity(card.len());
    let mut rest = card;
    let mut replaced = 0;
    while let Some(start) = rest.find(&quoted_prefix) {
        let value_start = start + 1;
        let Some(length) = rest[value_start..].find('"') else {
            break;
        };
        let value_end = value_start + length;
        let value = &rest[value_start..value_end];
        opened.push_str(&rest[..start]);
        match contexts.get(value) {
            Some(context) => {
                let plain = cipher.open(value, context)?;
                opened.push_str(&serde_json::to_string(&plain).map_err(CardError::Json)?);
                replaced += 1;
            }
            None => opened.push_str(&rest[start..=value_end]),
        }
        rest = &rest[value_end + 1..];
    }
    opened.push_str(rest);
    // A sealed value not found quoted in the text (escaped, or repeated): the tree path.
    if replaced != contexts.len() {
        return transform_card(cipher, card, CardStep::Open);
    }
    Ok(opened)
}

/// Whether any sensitive field of a card is plain or sealed with a retired key.
fn card_needs_reseal(cipher: &PiiCipher, card: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(card) else {
        return false;
    };
    let phone_stale = value
        .get("phone")
        .and_then(Value::as_str)
        .is_some_and(|phone| cipher.needs_reseal(phone));
    let member_stale = value
        .get("members")
        .and_then(Value::as_array)
        .is_some_and(|members| {
            members.iter().any(|member| {
                member
                    .get("id_number")
                    .and_then(Value::as_str)
                    .is_some_and(|id_number| cipher.needs_reseal(id_number))
            })
        });
    phone_stale || member_stale
}

#[derive(Debug, thiserror::Error)]
enum CardError {
    #[error("household card cannot be written back: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Register the `pii_*` functions on `connection`.
pub(crate) fn register_functions(connection: &Connection, cipher: &PiiCipher) -> StoreResult<()> {
    let deterministic = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    // Sealing draws a random nonce: never deterministic, so SQLite never reuses a result.
    let random = FunctionFlags::SQLITE_UTF8;

    for (name, step, flags) in [
        ("pii_seal_card", CardStep::Seal, random),
        ("pii_open_card", CardStep::Open, deterministic),
        ("pii_reseal_card", CardStep::Reseal, random),
    ] {
        let c = cipher.clone();
        connection.create_scalar_function(name, 1, flags, move |context| {
            let card = text_argument(context, 0)?;
            match step {
                CardStep::Open => open_card(&c, &card),
                CardStep::Seal | CardStep::Reseal => transform_card(&c, &card, step),
            }
            .map_err(user_error)
        })?;
    }
    // Writes seal what the domain hands over as it is (even text that looks sealed: it
    // is a value like any other and opens back to itself).
    let c = cipher.clone();
    connection.create_scalar_function("pii_seal_field", 3, random, move |context| {
        let field = text_argument(context, 0)?;
        let value = text_argument(context, 1)?;
        if !SENSITIVE_FIELDS.contains(&field.as_str()) {
            return Ok(value);
        }
        Ok(c.seal(&value, &text_argument(context, 2)?))
    })?;
    let c = cipher.clone();
    connection.create_scalar_function("pii_seal", 2, random, move |context| {
        Ok(c.seal(&text_argument(context, 0)?, &text_argument(context, 1)?))
    })?;
    // Rotation and migration: open with any known key (or plain), seal with the current.
    let c = cipher.clone();
    connection.create_scalar_function("pii_reseal", 2, random, move |context| {
        let place = text_argument(context, 1)?;
        let plain = c
            .open(&text_argument(context, 0)?, &place)
            .map_err(user_error)?;
        Ok(c.seal(&plain, &place))
    })?;
    let c = cipher.clone();
    connection.create_scalar_function("pii_open", 2, deterministic, move |context| {
        c.open(&text_argument(context, 0)?, &text_argument(context, 1)?)
            .map_err(user_error)
    })?;
    let c = cipher.clone();
    connection.create_scalar_function("pii_index", 2, deterministic, move |context| {
        Ok(c.blind_index(&text_argument(context, 0)?, &text_argument(context, 1)?))
    })?;
    let c = cipher.clone();
    connection.create_scalar_function("pii_needs_reseal", 1, deterministic, move |context| {
        Ok(c.needs_reseal(&text_argument(context, 0)?))
    })?;
    let c = cipher.clone();
    connection.create_scalar_function(
        "pii_card_needs_reseal",
        1,
        deterministic,
        move |context| Ok(card_needs_reseal(&c, &text_argument(context, 0)?)),
    )?;
    Ok(())
}

/// Blind-index kind of member ID numbers.
pub(crate) const ID_NUMBER_INDEX: &str = "id_number";

/// Rebuild the blind index rows of one household from its card (plain values), after the
/// card was saved: current members with an ID number, upper-cased like the import compares.
pub(crate) fn refresh_id_index(
    transaction: &Transaction<'_>,
    household: &fieldsync_model::household::Household,
) -> StoreResult<()> {
    transaction.execute(
        "DELETE FROM member_id_index WHERE household_id = ?1",
        params![household.household_id],
    )?;
    let mut insert = transaction.prepare_cached(
        "INSERT OR REPLACE INTO member_id_index (household_id, member_id, blind_index)
         VALUES (?1, ?2, pii_index(?3, ?4))",
    )?;
    for member in household.current_members() {
        if member.id_number.is_empty() {
            continue;
        }
        insert.execute(params![
            household.household_id,
            member.member_id,
            ID_NUMBER_INDEX,
            member.id_number.to_ascii_uppercase()
        ])?;
    }
    Ok(())
}

/// Households (other than `except_household_id`) with a current member holding
/// `id_number`, found through the blind index.
pub(crate) fn households_holding_id_number(
    connection: &Connection,
    id_number: &str,
    except_household_id: &str,
) -> StoreResult<Vec<String>> {
    let mut statement = connection.prepare_cached(
        "SELECT DISTINCT household_id FROM member_id_index
         WHERE blind_index = pii_index(?1, ?2) AND household_id <> ?3
         ORDER BY household_id",
    )?;
    let rows = statement.query_map(
        params![
            ID_NUMBER_INDEX,
            id_number.to_ascii_uppercase(),
            except_household_id
        ],
        |row| row.get::<_, String>(0),
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Seal every plain value and reseal every value sealed with a retired key, in the
/// caller's transaction; fill the blind index for households it has not seen. Returns how
/// many rows were rewritten. Used by migration 18 (plain data written before encryption at
/// rest) and by `fieldsync-server keys rotate-pii`.
pub(crate) fn reseal_all(transaction: &Transaction<'_>) -> StoreResult<u64> {
    let mut rewritten = 0u64;
    rewritten += transaction.execute(
        "UPDATE households SET card = pii_reseal_card(card) WHERE pii_card_needs_reseal(card)",
        [],
    )? as u64;
    rewritten += transaction.execute(
        &format!(
            "UPDATE register_writes
                SET value_json = pii_reseal(value_json, {REGISTER_CONTEXT_SQL})
              WHERE field IN ('phone', 'id_number') AND pii_needs_reseal(value_json)"
        ),
        [],
    )? as u64;
    for column in ["first_json", "second_json", "resolution_json"] {
        rewritten += transaction.execute(
            &format!(
                "UPDATE conflicts
                    SET {column} = pii_reseal({column}, {CONFLICT_CONTEXT_SQL})
                  WHERE field IN ('phone', 'id_number') AND {column} IS NOT NULL
                    AND pii_needs_reseal({column})"
            ),
            [],
        )? as u64;
    }
    rewritten += transaction.execute(
        &format!(
            "UPDATE users SET phone = pii_reseal(phone, {USER_PHONE_CONTEXT_SQL})
              WHERE pii_needs_reseal(phone)"
        ),
        [],
    )? as u64;
    // Cadre ID numbers (migration 0022); the column exists from then on, and reseal_all
    // runs only at migration 0018 (before it) or on a current schema (key rotation).
    let has_user_id_numbers: bool = transaction.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('users') WHERE name = 'id_number'",
        [],
        |row| row.get(0),
    )?;
    if has_user_id_numbers {
        rewritten += transaction.execute(
            &format!(
                "UPDATE users SET id_number = pii_reseal(id_number, {})
                  WHERE pii_needs_reseal(id_number)",
                crate::store::accounts::sqlite::USER_ID_NUMBER_CONTEXT_SQL
            ),
            [],
        )? as u64;
    }
    // Import jobs (migration 0028): their previews and plans quote personal data. The
    // table exists from then on; reseal_all also runs at migration 0018, before it.
    if table_exists(transaction, "import_jobs")? {
        for (column, context) in crate::store::jobs::SEALED_IMPORT_JOB_COLUMNS {
            rewritten += transaction.execute(
                &format!(
                    "UPDATE import_jobs SET {column} = pii_reseal({column}, {context})
                      WHERE {column} IS NOT NULL AND pii_needs_reseal({column})"
                ),
                [],
            )? as u64;
        }
    }
    // Households without index rows (written before the index existed).
    let missing: Vec<String> = transaction
        .prepare(
            "SELECT pii_open_card(card) FROM households h
              WHERE NOT EXISTS (SELECT 1 FROM member_id_index i
                                WHERE i.household_id = h.household_id)",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    for card in missing {
        // A card that does not decode is reported as corrupt when read; it cannot hold an
        // index entry, and must not stop the rest of the database from being sealed.
        if let Ok(household) = serde_json::from_str::<fieldsync_model::household::Household>(&card)
        {
            refresh_id_index(transaction, &household)?;
        }
    }
    Ok(rewritten)
}

fn table_exists(connection: &Connection, table: &str) -> StoreResult<bool> {
    Ok(connection.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get(0),
    )?)
}

/// Values still plain or sealed with a key other than the current one (0 after rotation).
pub(crate) fn stale_value_count(connection: &Connection) -> StoreResult<u64> {
    let count: i64 = connection.query_row(
        "SELECT (SELECT COUNT(*) FROM households WHERE pii_card_needs_reseal(card))
              + (SELECT COUNT(*) FROM register_writes
                  WHERE field IN ('phone', 'id_number') AND pii_needs_reseal(value_json))
              + (SELECT COUNT(*) FROM conflicts
                  WHERE field IN ('phone', 'id_number')
                    AND (pii_needs_reseal(first_json) OR pii_needs_reseal(second_json)
                         OR (resolution_json IS NOT NULL AND pii_needs_reseal(resolution_json))))
              + (SELECT COUNT(*) FROM users WHERE pii_needs_reseal(phone))
              + (SELECT COUNT(*) FROM users WHERE pii_needs_reseal(id_number))
              + (SELECT COUNT(*) FROM import_jobs
                  WHERE pii_needs_reseal(view_json)
                     OR (plan_json IS NOT NULL AND pii_needs_reseal(plan_json)))",
        [],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    /// Opening in place gives the card the tree path gives, for sealed, plain, missing,
    /// escaped and odd-shaped fields, and a tampered value fails both ways.
    #[test]
    fn opening_in_place_gives_the_same_card_as_the_tree_path() {
        let cipher = PiiCipher::for_tests();
        let plain_cards = [
            r#"{"household_id":"h1","phone":"13800138000","members":[{"member_id":"m1","id_number":"11010519491231002X","name":"王\"小\"明"},{"member_id":"m2","id_number":""}],"note":"enc:v1:not a field"}"#,
            r#"{"household_id":"h2","members":[]}"#,
            r#"{"household_id":"h3","phone":null,"members":[{"member_id":"m1"}]}"#,
            r#"{"household_id":"h4","phone":"a\/b","members":"not a list"}"#,
            r#"not json at all"#,
        ];
        for plain in plain_cards {
            let sealed = transform_card(&cipher, plain, CardStep::Seal).expect("seal");
            let by_tree = transform_card(&cipher, &sealed, CardStep::Open).expect("tree");
            let in_place = open_card(&cipher, &sealed).expect("in place");
            if plain.starts_with('{') {
                assert_eq!(tree(&in_place), tree(&by_tree), "{plain}");
                assert_eq!(tree(&in_place), tree(plain), "{plain}");
            } else {
                assert_eq!(in_place, by_tree);
            }
            // A card stored before sealing existed opens to itself.
            assert_eq!(
                tree_or_text(&open_card(&cipher, plain).expect("plain")),
                tree_or_text(plain)
            );
        }
        // A sealed value moved to another household fails to open, as on the tree path.
        let sealed = transform_card(&cipher, plain_cards[0], CardStep::Seal).expect("seal");
        let moved = sealed.replace("\"h1\"", "\"h9\"");
        assert!(open_card(&cipher, &moved).is_err());
        assert!(transform_card(&cipher, &moved, CardStep::Open).is_err());
    }

    fn tree_or_text(text: &str) -> Result<Value, String> {
        serde_json::from_str(text).map_err(|_| text.to_owned())
    }
}
