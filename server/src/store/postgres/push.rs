//! Pushes (上传批次) on PostgreSQL: a batch applied in one transaction with the same
//! outcomes as SQLite, made safe for several replicas writing at once.
//!
//! - A device's pushes take that device's advisory lock first, so a batch retried on a second
//!   replica while the first is still applying it waits, then finds the first's cached result
//!   (`push_batches`) instead of applying it twice.
//! - A push locks the rows of every household it names, in id order, before it takes any
//!   scope counter (`change_log.rs`): household rows first, then counters, everywhere, so
//!   writers never wait on each other in a circle, and a household's change sequences follow
//!   its commit order.
//! - The primary keys of `applied_mutations`, `push_batches` and `visits` are the last line:
//!   a race they catch fails the transaction, which is retried whole and then sees the
//!   winner's rows ([`super::PostgresStore::write`]).

use super::PreparedOnce;
use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::codes::ReviewState;
use fieldsync_model::geo::distance_between;
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::{GeoPoint, Household, Member, field_seq_key};
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::register::{
    FieldEdit, FieldTarget, RegisterWrite, Stamp, apply_value, merge, validate_edit,
};
use fieldsync_model::sync::{MutationOutcome, MutationPayload, RejectCode};
use fieldsync_model::visit::{PhotoRecord, Visit};

use super::change_log::{ChangeEntry, log_entry};
use super::households::{load_household, refresh_household_indexes, sealed_card_json};
use super::{CHANGE_KIND_VISIT_STATUS, PostgresStore, WriteError, encode_json, to_millis};
use crate::store::evidence_rows::split_instant;
use crate::store::push_record::{
    decode_push_result, encode_push_result, not_the_author, outcome_name, rejected,
};
use crate::store::sealed::PiiCipher;
use crate::store::{PushAction, PushBatch, PushEntry, PushResult, StoreError, StoreResult};

/// Fields whose register values are sealed (联系电话, 身份证号), as in SQLite.
const SENSITIVE_FIELDS: &[&str] = &["phone", "id_number"];

pub(super) fn to_db_integer(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::InvalidValue {
        field: what.to_owned(),
        message: format!("{value} is too large (at most {})", i64::MAX),
    })
}

/// Households' township and location as read earlier in the same push.
pub(super) type HouseholdPlaces = HashMap<String, Option<(String, Option<GeoPoint>)>>;

/// A household's township and registered location, without opening its sealed fields.
pub(super) async fn household_place(
    client: &impl GenericClient,
    places: &mut HouseholdPlaces,
    household_id: &str,
) -> Result<Option<(String, Option<GeoPoint>)>, WriteError> {
    if let Some(place) = places.get(household_id) {
        return Ok(place.clone());
    }
    let statement = client
        .prepare_cached(
            "SELECT township_id, (card::json -> 'location')::TEXT AS location FROM households
              WHERE household_id = $1",
        )
        .await?;
    let place = match client.query_opt(&statement, &[&household_id]).await? {
        None => None,
        Some(row) => {
            let location: Option<String> = row.try_get("location")?;
            let location = match location.as_deref() {
                None | Some("null") => None,
                Some(text) => Some(serde_json::from_str::<GeoPoint>(text).map_err(|error| {
                    StoreError::Corrupt(format!("household {household_id} location: {error}"))
                })?),
            };
            Some((row.try_get("township_id")?, location))
        }
    };
    places.insert(household_id.to_owned(), place.clone());
    Ok(place)
}

/// Apply one batch inside `transaction` (the caller commits).
pub(super) async fn apply_push_in(
    client: &impl GenericClient,
    pii: &PiiCipher,
    batch: &PushBatch,
) -> Result<PushResult, WriteError> {
    // One device's pushes one at a time, across replicas (see the module comment).
    client
        .execute_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("push/{}", batch.device_id)],
        )
        .await?;
    let cached = client
        .query_opt_cached(
            "SELECT fingerprint, result FROM push_batches WHERE batch_id = $1",
            &[&batch.batch_id],
        )
        .await?;
    if let Some(cached) = cached {
        let fingerprint: String = cached.try_get("fingerprint")?;
        if fingerprint == batch.fingerprint {
            return Ok(decode_push_result(cached.try_get("result")?)?);
        }
        return Err(StoreError::BatchReused(batch.batch_id.clone()).into());
    }

    lock_households_of(client, batch).await?;
    let received_at = to_millis(batch.received_at)?;
    let mut places = HouseholdPlaces::new();
    let mut outcomes = Vec::with_capacity(batch.entries.len());
    let mut highest_seq: i64 = 0;
    let already_applied = client
        .prepare_cached("SELECT 1 FROM applied_mutations WHERE device_id = $1 AND seq = $2")
        .await?;
    let record_applied = client
        .prepare_cached(
            "INSERT INTO applied_mutations (device_id, seq, mutation_id, batch_id, outcome)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    for entry in &batch.entries {
        let seq = to_db_integer(entry.seq, "seq")?;
        highest_seq = highest_seq.max(seq);
        if client
            .query_opt(&already_applied, &[&batch.device_id, &seq])
            .await?
            .is_some()
        {
            outcomes.push((entry.seq, MutationOutcome::Duplicate));
            continue;
        }
        let outcome = apply_entry(client, pii, batch, entry, received_at, &mut places).await?;
        client
            .execute(
                &record_applied,
                &[
                    &batch.device_id,
                    &seq,
                    &entry.mutation_id,
                    &batch.batch_id,
                    &outcome_name(&outcome),
                ],
            )
            .await?;
        outcomes.push((entry.seq, outcome));
    }

    let last_processed_seq: i64 = client
        .query_one_cached(
            "INSERT INTO devices (device_id, user_id, last_processed_seq, last_seen_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (device_id) DO UPDATE SET
                 user_id = excluded.user_id,
                 last_processed_seq = GREATEST(devices.last_processed_seq,
                                               excluded.last_processed_seq),
                 last_seen_at = excluded.last_seen_at
             RETURNING last_processed_seq",
            &[&batch.device_id, &batch.user_id, &highest_seq, &received_at],
        )
        .await?
        .try_get(0)?;
    let result = PushResult {
        outcomes,
        last_processed_seq: u64::try_from(last_processed_seq)
            .map_err(|_| StoreError::Corrupt(format!("last processed seq {last_processed_seq}")))?,
    };
    client
        .execute_cached(
            "INSERT INTO push_batches (batch_id, device_id, fingerprint, result, received_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &batch.batch_id,
                &batch.device_id,
                &batch.fingerprint,
                &encode_push_result(&result)?,
                &received_at,
            ],
        )
        .await?;
    Ok(result)
}

/// Lock every household the batch names, in id order, before any scope counter is taken.
/// Every writer takes household rows before counters and households in id order, so two
/// pushes (on one replica or two) never wait on each other in a circle.
async fn lock_households_of(
    client: &impl GenericClient,
    batch: &PushBatch,
) -> Result<(), WriteError> {
    let mut household_ids: Vec<&str> = batch
        .entries
        .iter()
        .filter_map(|entry| match &entry.action {
            PushAction::Apply(MutationPayload::SubmitVisit(visit)) => {
                Some(visit.household_id.as_str())
            }
            PushAction::Apply(MutationPayload::RegisterIncome(registration)) => {
                Some(registration.household_id.as_str())
            }
            PushAction::Apply(MutationPayload::EditField(edit)) => Some(edit.household_id.as_str()),
            PushAction::Apply(MutationPayload::AddMember { household_id, .. }) => {
                Some(household_id.as_str())
            }
            PushAction::Apply(MutationPayload::AddPhoto(_)) | PushAction::Reject { .. } => None,
        })
        .collect();
    household_ids.sort_unstable();
    household_ids.dedup();
    if household_ids.is_empty() {
        return Ok(());
    }
    client
        .query_cached(
            "SELECT household_id FROM households WHERE household_id = ANY($1)
              ORDER BY household_id FOR UPDATE",
            &[&household_ids],
        )
        .await?;
    Ok(())
}

async fn apply_entry(
    client: &impl GenericClient,
    pii: &PiiCipher,
    batch: &PushBatch,
    entry: &PushEntry,
    received_at: i64,
    places: &mut HouseholdPlaces,
) -> Result<MutationOutcome, WriteError> {
    // A mutation other than a visit or a photo may change a household card (its location
    // among them): later visits of the push read their household's place afresh.
    let may_change_a_household = matches!(
        &entry.action,
        PushAction::Apply(payload)
            if !matches!(payload, MutationPayload::SubmitVisit(_) | MutationPayload::AddPhoto(_))
    );
    if may_change_a_household {
        places.clear();
    }
    match &entry.action {
        PushAction::Reject { code, message } => Ok(rejected(*code, message.clone())),
        PushAction::Apply(MutationPayload::SubmitVisit(visit)) => {
            submit_visit(client, batch, visit, received_at, places).await
        }
        PushAction::Apply(MutationPayload::AddPhoto(photo)) => add_photo(client, photo).await,
        PushAction::Apply(MutationPayload::RegisterIncome(registration)) => {
            register_income(client, pii, registration).await
        }
        PushAction::Apply(MutationPayload::EditField(edit)) => {
            edit_field(client, pii, batch, entry.hlc, edit, received_at).await
        }
        PushAction::Apply(MutationPayload::AddMember {
            household_id,
            member,
        }) => add_member(client, pii, household_id, member).await,
    }
}

async fn submit_visit(
    client: &impl GenericClient,
    batch: &PushBatch,
    visit: &Visit,
    received_at: i64,
    places: &mut HouseholdPlaces,
) -> Result<MutationOutcome, WriteError> {
    let (body, content_hash) = visit.canonical_json_and_hash().map_err(|error| {
        StoreError::database_caused_by(format!("cannot encode record: {error}"), error)
    })?;
    let stored_revisions: Vec<(i32, String, String, String, String)> = client
        .query_cached(
            "SELECT revision, household_id, content_hash, state, author_user_id FROM visits
              WHERE visit_id = $1 ORDER BY revision",
            &[&visit.visit_id],
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("revision")?,
                row.try_get("household_id")?,
                row.try_get("content_hash")?,
                row.try_get("state")?,
                row.try_get("author_user_id")?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    // The first revision's author owns the visit (checked in the push's transaction).
    if let Some((.., first_author)) = stored_revisions.first()
        && *first_author != batch.user_id
    {
        let (code, message) = not_the_author(&visit.visit_id);
        return Ok(rejected(code, message));
    }
    let revision = i32::try_from(visit.revision).map_err(|_| StoreError::InvalidValue {
        field: "revision".into(),
        message: format!("{} is too large", visit.revision),
    })?;
    if let Some((_, _, stored_hash, ..)) = stored_revisions
        .iter()
        .find(|(stored, ..)| *stored == revision)
    {
        return Ok(if *stored_hash == content_hash {
            MutationOutcome::Duplicate
        } else {
            rejected(
                RejectCode::IdReused,
                format!(
                    "visit {} revision {} was already stored with different content",
                    visit.visit_id, visit.revision
                ),
            )
        });
    }
    // A visit belongs to one household for life.
    if let Some((_, other, ..)) = stored_revisions
        .iter()
        .find(|(_, household_id, ..)| *household_id != visit.household_id)
    {
        return Ok(rejected(
            RejectCode::IdReused,
            format!(
                "visit {} belongs to household {other}, not {}",
                visit.visit_id, visit.household_id
            ),
        ));
    }
    if let Some((highest, ..)) = stored_revisions.last()
        && *highest > revision
    {
        return Ok(rejected(
            RejectCode::StaleRevision,
            format!(
                "visit {} already has revision {highest}, newer than {}",
                visit.visit_id, visit.revision
            ),
        ));
    }
    let Some((township_id, household_location)) =
        household_place(client, places, &visit.household_id).await?
    else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {} is unknown", visit.household_id),
        ));
    };
    // Older revisions still open are replaced by this one; an approved revision stays.
    let open_states = [
        ReviewState::Submitted.as_str(),
        ReviewState::Returned.as_str(),
    ];
    for (older, ..) in stored_revisions.iter().filter(|(older, _, _, state, _)| {
        *older < revision && open_states.contains(&state.as_str())
    }) {
        client
            .execute_cached(
                "UPDATE visits SET state = $3 WHERE visit_id = $1 AND revision = $2",
                &[&visit.visit_id, older, &ReviewState::Superseded.as_str()],
            )
            .await?;
        log_entry(
            client,
            &ChangeEntry {
                scope_id: &township_id,
                household_id: &visit.household_id,
                kind: CHANGE_KIND_VISIT_STATUS,
                entity_id: &visit.visit_id,
                revision: *older,
                addressed_to: None,
                logged_at: 0,
            },
        )
        .await?;
    }
    let distance_m = match (&household_location, &visit.gps) {
        (Some(home), Some(fix)) => distance_between(
            home,
            &GeoPoint {
                lat: fix.lat,
                lon: fix.lon,
                crs: fix.crs,
            },
        ),
        _ => None,
    };
    let (checkin_at_ms, checkin_sub_ms_ns) = split_instant(visit.checkin_at)?;
    let (checkout_at_ms, checkout_sub_ms_ns) = split_instant(visit.checkout_at)?;
    let (checkin_sub_ms_ns, checkout_sub_ms_ns) = (
        i32::try_from(checkin_sub_ms_ns).unwrap_or_default(),
        i32::try_from(checkout_sub_ms_ns).unwrap_or_default(),
    );
    let gps = visit.gps.as_ref();
    let insert = client
        .prepare_cached(
            "INSERT INTO visits (visit_id, revision, household_id, author_user_id, device_id,
                                 body, content_hash, state, mode, business_month, submitted_at,
                                 distance_m, checkin_at_ms, checkin_sub_ms_ns, checkout_at_ms,
                                 checkout_sub_ms_ns, gps_lat, gps_lon, gps_crs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, $19)",
        )
        .await?;
    client
        .execute(
            &insert,
            &[
                &visit.visit_id,
                &revision,
                &visit.household_id,
                &batch.user_id,
                &batch.device_id,
                &body,
                &content_hash,
                &ReviewState::Submitted.as_str(),
                &visit.mode.code(),
                &visit.business_month(),
                &received_at,
                &distance_m,
                &checkin_at_ms,
                &checkin_sub_ms_ns,
                &checkout_at_ms,
                &checkout_sub_ms_ns,
                &gps.map(|fix| fix.lat),
                &gps.map(|fix| fix.lon),
                &gps.map(|fix| fix.crs.code()),
            ],
        )
        .await?;
    log_entry(
        client,
        &ChangeEntry {
            scope_id: &township_id,
            household_id: &visit.household_id,
            kind: CHANGE_KIND_VISIT_STATUS,
            entity_id: &visit.visit_id,
            revision,
            addressed_to: None,
            logged_at: 0,
        },
    )
    .await?;
    Ok(MutationOutcome::Applied)
}

/// Insert-if-absent for append-only records keyed by a client id: the same content is a
/// `Duplicate` (a retry), different content an `IdReused` rejection; `None` means new.
async fn outcome_if_stored<T: serde::de::DeserializeOwned + PartialEq>(
    client: &impl GenericClient,
    select_body_sql: &str,
    id: &str,
    candidate: &T,
    what: &'static str,
) -> Result<Option<MutationOutcome>, WriteError> {
    let Some(row) = client.query_opt(select_body_sql, &[&id]).await? else {
        return Ok(None);
    };
    let body: String = row.try_get(0)?;
    let stored: T = serde_json::from_str(&body)
        .map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))?;
    Ok(Some(if &stored == candidate {
        MutationOutcome::Duplicate
    } else {
        rejected(
            RejectCode::IdReused,
            format!("{what} {id} was already stored with different content"),
        )
    }))
}

async fn add_photo(
    client: &impl GenericClient,
    photo: &PhotoRecord,
) -> Result<MutationOutcome, WriteError> {
    if let Some(outcome) = outcome_if_stored(
        client,
        "SELECT body FROM photos WHERE photo_id = $1",
        &photo.photo_id,
        photo,
        "photo",
    )
    .await?
    {
        return Ok(outcome);
    }
    let visit_known = client
        .query_opt_cached(
            "SELECT 1 FROM visits WHERE visit_id = $1 LIMIT 1",
            &[&photo.visit_id],
        )
        .await?
        .is_some();
    if !visit_known {
        return Ok(rejected(
            RejectCode::UnknownVisit,
            format!(
                "photo {} names unknown visit {}",
                photo.photo_id, photo.visit_id
            ),
        ));
    }
    client
        .execute_cached(
            "INSERT INTO photos (photo_id, visit_id, sha256, body) VALUES ($1, $2, $3, $4)",
            &[
                &photo.photo_id,
                &photo.visit_id,
                &photo.sha256,
                &encode_json(photo)?,
            ],
        )
        .await?;
    Ok(MutationOutcome::Applied)
}

async fn register_income(
    client: &impl GenericClient,
    pii: &PiiCipher,
    registration: &IncomeRegistration,
) -> Result<MutationOutcome, WriteError> {
    if let Some(outcome) = outcome_if_stored(
        client,
        "SELECT body FROM income_registrations WHERE registration_id = $1",
        &registration.registration_id,
        registration,
        "income registration",
    )
    .await?
    {
        return Ok(outcome);
    }
    let Some(mut card) = load_household(client, pii, &registration.household_id, true).await?
    else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {} is unknown", registration.household_id),
        ));
    };
    client
        .execute_cached(
            "INSERT INTO income_registrations (registration_id, household_id, year, quarter,
                                               body)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &registration.registration_id,
                &registration.household_id,
                &registration.year,
                &i32::try_from(registration.quarter).map_err(|_| StoreError::InvalidValue {
                    field: "quarter".into(),
                    message: format!("{} is out of range", registration.quarter),
                })?,
                &encode_json(registration)?,
            ],
        )
        .await?;
    // Every phone in scope pulls the household again with its registrations.
    resend_household(client, pii, &mut card).await?;
    Ok(MutationOutcome::Applied)
}

/// Log a change of the (locked) household and save the card with its new sequence.
pub(super) async fn resend_household(
    client: &impl GenericClient,
    pii: &PiiCipher,
    card: &mut Household,
) -> Result<(), WriteError> {
    let seq = log_entry(
        client,
        &ChangeEntry::of_household(&card.township_id, &card.household_id),
    )
    .await?;
    save_household(client, pii, card, seq).await
}

/// Store the card with its new server sequence `seq` (the change log's `seq` of the change,
/// taken while the household row is locked: a household's sequences follow its commits).
pub(super) async fn save_household(
    client: &impl GenericClient,
    pii: &PiiCipher,
    card: &mut Household,
    seq: i64,
) -> Result<(), WriteError> {
    card.server_seq = seq;
    client
        .execute_cached(
            "UPDATE households SET card = $2, head_name = $3, server_seq = $4
              WHERE household_id = $1",
            &[
                &card.household_id,
                &sealed_card_json(pii, card)?,
                &card.head_name,
                &seq,
            ],
        )
        .await?;
    refresh_household_indexes(client, pii, card).await
}

fn register_context(household_id: &str, target_key: &str, field: &str) -> String {
    format!("register/{household_id}/{target_key}/{field}")
}

fn conflict_context(conflict_key: &str) -> String {
    format!("conflict/{conflict_key}")
}

/// Whether values of `field` are sealed (联系电话, 身份证号).
pub(super) fn is_sensitive(field: &str) -> bool {
    SENSITIVE_FIELDS.contains(&field)
}

/// A register value or conflict record as stored: sealed when its field is sensitive.
fn seal_field(pii: &PiiCipher, field: &str, value: &str, context: &str) -> String {
    if is_sensitive(field) {
        pii.seal(value, context)
    } else {
        value.to_owned()
    }
}

/// Every write of one register, in the order the server applied them.
pub(super) async fn register_history(
    client: &impl GenericClient,
    pii: &PiiCipher,
    household_id: &str,
    target_key: &str,
    field: &str,
) -> StoreResult<Vec<RegisterWrite>> {
    let context = register_context(household_id, target_key, field);
    let rows = client
        .query_cached(
            "SELECT value_json, hlc, device_id, author_user_id, base_seq, server_seq
               FROM register_writes
              WHERE household_id = $1 AND target_key = $2 AND field = $3
              ORDER BY server_seq, hlc, device_id",
            &[&household_id, &target_key, &field],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let value_json: String = row.try_get("value_json")?;
            let value_json = pii
                .open(&value_json, &context)
                .map_err(|error| StoreError::Sealed(error.to_string()))?;
            let hlc: i64 = row.try_get("hlc")?;
            Ok(RegisterWrite {
                value: serde_json::from_str(&value_json)
                    .map_err(|error| StoreError::Corrupt(format!("register value: {error}")))?,
                stamp: Stamp {
                    hlc: Hlc::from_u64(
                        u64::try_from(hlc)
                            .map_err(|_| StoreError::Corrupt(format!("hlc {hlc}")))?,
                    ),
                    device_id: row.try_get("device_id")?,
                },
                author_user_id: row.try_get("author_user_id")?,
                base_seq: row.try_get("base_seq")?,
                server_seq: row.try_get("server_seq")?,
            })
        })
        .collect()
}

/// What storing one register write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RegisterOutcome {
    Duplicate,
    Written { conflicts: usize },
}

/// One register write against the locked `card`: merge it into the register's history,
/// store it at the household's next change sequence, show it on the card if it wins,
/// record conflicts for the township, and save the card.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_register(
    client: &impl GenericClient,
    pii: &PiiCipher,
    card: &mut Household,
    target: &FieldTarget,
    field: &str,
    value: &serde_json::Value,
    stamp: Stamp,
    author_user_id: &str,
    base_seq: i64,
    created_at: i64,
) -> Result<RegisterOutcome, WriteError> {
    let target_key = target.as_key();
    let hlc = to_db_integer(stamp.hlc.as_u64(), "hlc")?;
    let stored = client
        .query_opt_cached(
            "SELECT 1 FROM register_writes
              WHERE household_id = $1 AND target_key = $2 AND field = $3 AND hlc = $4
                AND device_id = $5",
            &[
                &card.household_id,
                &target_key,
                &field,
                &hlc,
                &stamp.device_id,
            ],
        )
        .await?
        .is_some();
    if stored {
        return Ok(RegisterOutcome::Duplicate);
    }
    let history = register_history(client, pii, &card.household_id, &target_key, field).await?;
    // The write takes the household's next change sequence, so a phone quoting it as
    // base_seq provably saw this write and everything before it.
    let seq = log_entry(
        client,
        &ChangeEntry::of_household(&card.township_id, &card.household_id),
    )
    .await?;
    let incoming = RegisterWrite {
        value: value.clone(),
        stamp,
        author_user_id: author_user_id.to_owned(),
        base_seq,
        server_seq: seq,
    };
    let outcome = merge(&card.household_id, target, field, &history, &incoming);
    client
        .execute_cached(
            "INSERT INTO register_writes (household_id, target_key, field, value_json, hlc,
                                          device_id, author_user_id, base_seq, server_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &card.household_id,
                &target_key,
                &field,
                &seal_field(
                    pii,
                    field,
                    &encode_json(&incoming.value)?,
                    &register_context(&card.household_id, &target_key, field),
                ),
                &hlc,
                &incoming.stamp.device_id,
                &incoming.author_user_id,
                &base_seq,
                &seq,
            ],
        )
        .await?;
    if outcome.incoming_wins {
        apply_value(card, target, field, value).map_err(|invalid| StoreError::InvalidValue {
            field: invalid.field.to_owned(),
            message: invalid.message,
        })?;
    }
    // Even a losing write moves the field's sequence.
    card.field_seqs.insert(field_seq_key(target, field), seq);
    for pair in &outcome.conflicts {
        let key = pair.key();
        let context = conflict_context(&key);
        client
            .execute_cached(
                "INSERT INTO conflicts (conflict_key, household_id, township_id, target_key,
                                        field, first_json, second_json, created_at,
                                        first_author_user_id, second_author_user_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (conflict_key) DO NOTHING",
                &[
                    &key,
                    &card.household_id,
                    &card.township_id,
                    &target_key,
                    &field,
                    &seal_field(pii, field, &encode_json(&pair.first)?, &context),
                    &seal_field(pii, field, &encode_json(&pair.second)?, &context),
                    &created_at,
                    &pair.first.author_user_id,
                    &pair.second.author_user_id,
                ],
            )
            .await?;
    }
    save_household(client, pii, card, seq).await?;
    Ok(RegisterOutcome::Written {
        conflicts: outcome.conflicts.len(),
    })
}

async fn edit_field(
    client: &impl GenericClient,
    pii: &PiiCipher,
    batch: &PushBatch,
    hlc: u64,
    edit: &FieldEdit,
    received_at: i64,
) -> Result<MutationOutcome, WriteError> {
    let Some(mut card) = load_household(client, pii, &edit.household_id, true).await? else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {} is unknown", edit.household_id),
        ));
    };
    if let Err(invalid) = validate_edit(&card, edit) {
        return Ok(rejected(
            RejectCode::InvalidRecord,
            format!("{} {}: {invalid}", edit.target.as_key(), edit.field),
        ));
    }
    let stamp = Stamp {
        hlc: Hlc::from_u64(hlc),
        device_id: batch.device_id.clone(),
    };
    Ok(
        match write_register(
            client,
            pii,
            &mut card,
            &edit.target,
            &edit.field,
            &edit.value,
            stamp,
            &batch.user_id,
            edit.base_seq,
            received_at,
        )
        .await?
        {
            RegisterOutcome::Duplicate => MutationOutcome::Duplicate,
            RegisterOutcome::Written { conflicts: 0 } => MutationOutcome::Applied,
            RegisterOutcome::Written { .. } => MutationOutcome::ConflictRecorded,
        },
    )
}

/// Add-wins member rows: a new id is appended; an id already on the card keeps its row.
pub(super) async fn add_member(
    client: &impl GenericClient,
    pii: &PiiCipher,
    household_id: &str,
    member: &Member,
) -> Result<MutationOutcome, WriteError> {
    let Some(mut card) = load_household(client, pii, household_id, true).await? else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {household_id} is unknown"),
        ));
    };
    if let Some(existing) = card
        .members
        .iter()
        .find(|existing| existing.member_id == member.member_id)
    {
        return Ok(if existing == member {
            MutationOutcome::Duplicate
        } else {
            MutationOutcome::Applied
        });
    }
    if member.member_id.trim().is_empty() {
        return Ok(rejected(
            RejectCode::InvalidRecord,
            "member_id: is required",
        ));
    }
    if member.name.trim().is_empty() {
        return Ok(rejected(RejectCode::InvalidRecord, "name: is required"));
    }
    if !member.id_number.is_empty()
        && let Err(error) = fieldsync_model::id_number::validate(&member.id_number)
    {
        return Ok(rejected(
            RejectCode::InvalidRecord,
            format!("id_number: {error}"),
        ));
    }
    card.members.push(member.clone());
    resend_household(client, pii, &mut card).await?;
    Ok(MutationOutcome::Applied)
}

impl PostgresStore {
    /// Apply a batch atomically (see the module comment for what keeps replicas apart).
    pub async fn apply_push(&self, batch: PushBatch) -> StoreResult<PushResult> {
        let batch = &batch;
        write_transaction!(self, |transaction| {
            apply_push_in(transaction, self.pii(), batch).await
        })
    }
}
