//! SQLite side of Push (issue 15 §1: the sync area's SQL next to its area): one write
//! transaction per batch applies each mutation in order (a visit, a photo record, a field
//! edit, a member, an income registration), each with its own outcome, under the device's
//! `(device_id, seq)` dedupe; the shared register, change-log and conflict helpers it uses
//! stay in `sqlite.rs`, where the roster import and the review use them too.

use std::collections::HashMap;

use fieldsync_model::CodeList;
use fieldsync_model::codes::ReviewState;
use fieldsync_model::geo::distance_between;
use fieldsync_model::household::GeoPoint;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::sync::{MutationOutcome, MutationPayload, RejectCode};
use fieldsync_model::visit::{PhotoRecord, Visit};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{
    CHANGE_KIND_VISIT_STATUS, add_member, decode_json, edit_field, encode_json, evidence,
    from_sql_unsigned, household_exists, household_place, households, log_change, to_millis,
    to_sql_integer,
};
use crate::store::push_record::{
    decode_push_result, encode_push_result, not_the_author, outcome_name, rejected,
};
use crate::store::{PushAction, PushBatch, PushEntry, PushResult, StoreError, StoreResult};

/// `flags_follow`: the same transaction computes the evidence flags of the visits this
/// stores (`apply_push_with_flags`), which are then stored with none rather than "not yet
/// evaluated", so a visit without flags (most) is written once (sqlite/evidence.rs
/// `flag_work_in_savepoint` puts back "not evaluated" for one the work did not reach).
pub(in crate::store) fn apply_push_in(
    transaction: &Transaction<'_>,
    batch: &PushBatch,
    flags_follow: bool,
) -> StoreResult<PushResult> {
    let cached: Option<(String, String)> = transaction
        .query_row(
            "SELECT fingerprint, result FROM push_batches WHERE batch_id = ?1",
            params![batch.batch_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((fingerprint, result)) = cached {
        if fingerprint == batch.fingerprint {
            return decode_push_result(&result);
        }
        return Err(StoreError::BatchReused(batch.batch_id.clone()));
    }

    let received_at = to_millis(batch.received_at)?;
    let mut places = HouseholdPlaces::new();
    let mut outcomes = Vec::with_capacity(batch.entries.len());
    let mut highest_seq: i64 = 0;
    for entry in &batch.entries {
        let seq = to_sql_integer(entry.seq, "seq")?;
        highest_seq = highest_seq.max(seq);
        let already_processed = transaction
            .prepare_cached("SELECT 1 FROM applied_mutations WHERE device_id = ?1 AND seq = ?2")?
            .query_row(params![batch.device_id, seq], |_| Ok(()))
            .optional()?
            .is_some();
        if already_processed {
            outcomes.push((entry.seq, MutationOutcome::Duplicate));
            continue;
        }
        let outcome = apply_entry(
            transaction,
            batch,
            entry,
            received_at,
            flags_follow,
            &mut places,
        )?;
        transaction
            .prepare_cached(
                "INSERT INTO applied_mutations (device_id, seq, mutation_id, batch_id, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                batch.device_id,
                seq,
                entry.mutation_id,
                batch.batch_id,
                outcome_name(&outcome)
            ])?;
        outcomes.push((entry.seq, outcome));
    }

    transaction.execute(
        "INSERT INTO devices (device_id, user_id, last_processed_seq, last_seen_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id) DO UPDATE SET
             user_id = excluded.user_id,
             last_processed_seq = max(last_processed_seq, excluded.last_processed_seq),
             last_seen_at = excluded.last_seen_at",
        params![batch.device_id, batch.user_id, highest_seq, received_at],
    )?;
    let last_processed_seq: i64 = transaction.query_row(
        "SELECT last_processed_seq FROM devices WHERE device_id = ?1",
        params![batch.device_id],
        |row| row.get(0),
    )?;
    let result = PushResult {
        outcomes,
        last_processed_seq: from_sql_unsigned(last_processed_seq, "last processed seq")?,
    };
    transaction.execute(
        "INSERT INTO push_batches (batch_id, device_id, fingerprint, result, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            batch.batch_id,
            batch.device_id,
            batch.fingerprint,
            encode_push_result(&result)?,
            received_at
        ],
    )?;
    Ok(result)
}

/// Households' township and location as read earlier in the same push: a batch of 100
/// visits names a cadre's dozen households again and again.
type HouseholdPlaces = HashMap<String, Option<(String, Option<GeoPoint>)>>;

/// A household's place, read once per push while no other mutation of the push has
/// changed a household (see [`apply_entry`]).
fn cached_household_place(
    transaction: &Transaction<'_>,
    places: &mut HouseholdPlaces,
    household_id: &str,
) -> StoreResult<Option<(String, Option<GeoPoint>)>> {
    if let Some(place) = places.get(household_id) {
        return Ok(place.clone());
    }
    let place = household_place(transaction, household_id)?;
    places.insert(household_id.to_owned(), place.clone());
    Ok(place)
}

fn apply_entry(
    transaction: &Transaction<'_>,
    batch: &PushBatch,
    entry: &PushEntry,
    received_at: i64,
    flags_follow: bool,
    places: &mut HouseholdPlaces,
) -> StoreResult<MutationOutcome> {
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
            submit_visit(transaction, batch, visit, received_at, flags_follow, places)
        }
        PushAction::Apply(MutationPayload::AddPhoto(photo)) => add_photo(transaction, photo),
        PushAction::Apply(MutationPayload::RegisterIncome(registration)) => {
            register_income(transaction, registration)
        }
        PushAction::Apply(MutationPayload::EditField(edit)) => {
            edit_field(transaction, batch, entry.hlc, edit, received_at)
        }
        PushAction::Apply(MutationPayload::AddMember {
            household_id,
            member,
        }) => add_member(transaction, household_id, member),
    }
}

fn submit_visit(
    transaction: &Transaction<'_>,
    batch: &PushBatch,
    visit: &Visit,
    received_at: i64,
    flags_follow: bool,
    places: &mut HouseholdPlaces,
) -> StoreResult<MutationOutcome> {
    // The body is the very text the content hash is taken of: one serialisation.
    let (body, content_hash) = visit.canonical_json_and_hash().map_err(|error| {
        StoreError::database_caused_by(format!("cannot encode record: {error}"), error)
    })?;
    // Every stored revision of this visit id in one index probe (a visit has a handful at
    // most): the duplicate, id-collision, stale-revision and superseded checks below all
    // read this list instead of probing the table four times per pushed visit.
    let stored_revisions: Vec<(u32, String, String, String, String)> = {
        let mut statement = transaction.prepare_cached(
            "SELECT revision, household_id, content_hash, state, author_user_id FROM visits
             WHERE visit_id = ?1 ORDER BY revision",
        )?;
        let rows = statement.query_map(params![visit.visit_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    // The first revision's author owns the visit (checked here, in the push's transaction,
    // so no concurrent push can slip a revision in between).
    if let Some((.., first_author)) = stored_revisions.first()
        && *first_author != batch.user_id
    {
        let (code, message) = not_the_author(&visit.visit_id);
        return Ok(rejected(code, message));
    }
    if let Some((_, _, stored_hash, ..)) = stored_revisions
        .iter()
        .find(|(revision, ..)| *revision == visit.revision)
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
    // A visit belongs to one household for life; a revision naming another household is an
    // id collision, not a correction.
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
        && *highest > visit.revision
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
        cached_household_place(transaction, places, &visit.household_id)?
    else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {} is unknown", visit.household_id),
        ));
    };

    // Older revisions still open (submitted, or returned for correction) are replaced by
    // this one; an approved revision stays approved as the record of what was accepted.
    let open_states = [
        ReviewState::Submitted.as_str(),
        ReviewState::Returned.as_str(),
    ];
    let superseded: Vec<u32> = stored_revisions
        .iter()
        .filter(|(revision, _, _, state, _)| {
            *revision < visit.revision && open_states.contains(&state.as_str())
        })
        .map(|(revision, ..)| *revision)
        .collect();
    for revision in &superseded {
        transaction.execute(
            "UPDATE visits SET state = ?3 WHERE visit_id = ?1 AND revision = ?2",
            params![visit.visit_id, revision, ReviewState::Superseded.as_str()],
        )?;
        log_change(
            transaction,
            &township_id,
            &visit.household_id,
            CHANGE_KIND_VISIT_STATUS,
            &visit.visit_id,
            *revision,
        )?;
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
    let columns = evidence::evidence_columns(visit)?;
    // The newest revision is the only one without a newer sibling, which is what the
    // evidence window query (sqlite/evidence.rs) reads as "latest".
    transaction
        .prepare_cached(
            "INSERT INTO visits (visit_id, revision, household_id, author_user_id, device_id, body,
                             content_hash, state, mode, business_month, submitted_at, distance_m,
                             checkin_at_ms, checkin_sub_ms_ns, checkout_at_ms, checkout_sub_ms_ns,
                             gps_lat, gps_lon, gps_crs, evidence_flags)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20)",
        )?
        .execute(params![
            visit.visit_id,
            visit.revision,
            visit.household_id,
            batch.user_id,
            batch.device_id,
            body,
            content_hash,
            ReviewState::Submitted.as_str(),
            visit.mode.code(),
            visit.business_month(),
            received_at,
            distance_m,
            columns.checkin_at_ms,
            columns.checkin_sub_ms_ns,
            columns.checkout_at_ms,
            columns.checkout_sub_ms_ns,
            columns.gps.map(|gps| gps.0),
            columns.gps.map(|gps| gps.1),
            columns.gps.map(|gps| gps.2),
            flags_follow.then_some("[]"),
        ])?;
    log_change(
        transaction,
        &township_id,
        &visit.household_id,
        CHANGE_KIND_VISIT_STATUS,
        &visit.visit_id,
        visit.revision,
    )?;
    Ok(MutationOutcome::Applied)
}

/// Insert-if-absent for append-only records keyed by a client id: when `select_body_sql`
/// finds a stored record, the same content is a `Duplicate` (a retry) and different content
/// is an `IdReused` rejection; `None` means the id is new.
fn outcome_if_stored<T: serde::de::DeserializeOwned + PartialEq>(
    transaction: &Transaction<'_>,
    select_body_sql: &str,
    id: &str,
    candidate: &T,
    what: &'static str,
) -> StoreResult<Option<MutationOutcome>> {
    let stored: Option<String> = transaction
        .query_row(select_body_sql, params![id], |row| row.get(0))
        .optional()?;
    let Some(body) = stored else {
        return Ok(None);
    };
    let stored: T = decode_json(&body, what)?;
    Ok(Some(if &stored == candidate {
        MutationOutcome::Duplicate
    } else {
        rejected(
            RejectCode::IdReused,
            format!("{what} {id} was already stored with different content"),
        )
    }))
}

fn add_photo(transaction: &Transaction<'_>, photo: &PhotoRecord) -> StoreResult<MutationOutcome> {
    if let Some(outcome) = outcome_if_stored(
        transaction,
        "SELECT body FROM photos WHERE photo_id = ?1",
        &photo.photo_id,
        photo,
        "photo",
    )? {
        return Ok(outcome);
    }
    let visit_known = transaction
        .query_row(
            "SELECT 1 FROM visits WHERE visit_id = ?1 LIMIT 1",
            params![photo.visit_id],
            |_| Ok(()),
        )
        .optional()?
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
    transaction.execute(
        "INSERT INTO photos (photo_id, visit_id, sha256, body) VALUES (?1, ?2, ?3, ?4)",
        params![
            photo.photo_id,
            photo.visit_id,
            photo.sha256,
            encode_json(photo)?
        ],
    )?;
    Ok(MutationOutcome::Applied)
}

fn register_income(
    transaction: &Transaction<'_>,
    registration: &IncomeRegistration,
) -> StoreResult<MutationOutcome> {
    if let Some(outcome) = outcome_if_stored(
        transaction,
        "SELECT body FROM income_registrations WHERE registration_id = ?1",
        &registration.registration_id,
        registration,
        "income registration",
    )? {
        return Ok(outcome);
    }
    if !household_exists(transaction, &registration.household_id)? {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {} is unknown", registration.household_id),
        ));
    }
    households::insert_income_registration(transaction, registration)?;
    Ok(MutationOutcome::Applied)
}
