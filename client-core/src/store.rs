//! The phone's local SQLite database: the replica of the user's scope, the user's own
//! visits, photos and pending uploads, and the outbox. All SQL of the client core lives
//! here. Every local change and its outbox entries are written in ONE transaction, with the
//! outbox `seq` allocated from `meta.next_seq` inside that transaction, so seqs are gap-free
//! and an outbox entry exists if and only if its change does.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use fieldsync_model::household::Household;
use fieldsync_model::register::PendingConflict;
use fieldsync_model::review::VisitStatus;
use fieldsync_model::visit::{PhotoRecord, Visit};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::edits::{self, AddMemberPayload, CardEdit, PendingEdit};
use crate::error::{ClientError, ClientResult};
use crate::hlc;
use crate::income::{IncomeState, LocalIncome};
use crate::records::{
    Heartbeat, MutationKind, OutboxEntry, PulledPage, PushAck, PushOutcome, VisitState,
};
use crate::sealed::PhoneKey;
use crate::sync::{LocalState, OpenBatch, StatusDecision, UploadState, decide_status_update};
use fieldsync_model::hlc::Hlc;
use fieldsync_model::income::IncomeRegistration;

/// Schema migrations; `PRAGMA user_version` is the number applied. Append, never edit.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE households (
        household_id TEXT PRIMARY KEY,
        head_name    TEXT NOT NULL,
        village_name TEXT NOT NULL,
        body         TEXT NOT NULL
    );
    CREATE TABLE visits (
        visit_id     TEXT PRIMARY KEY,
        household_id TEXT NOT NULL,
        revision     INTEGER NOT NULL,
        -- JSON of the latest local revision; NULL for visits known only from a pull.
        body         TEXT,
        mode         INTEGER,
        checkin_at   TEXT,
        state        TEXT NOT NULL,
        -- JSON of the latest VisitStatus pulled from the server.
        status       TEXT,
        -- JSON {code, message} when the server refused the visit permanently.
        rejection    TEXT,
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX visits_by_household ON visits (household_id);
    CREATE TABLE photos (
        photo_id   TEXT PRIMARY KEY,
        visit_id   TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        body       TEXT NOT NULL,
        -- pending | accepted | rejected: the AddPhoto mutation's fate.
        push_state TEXT NOT NULL DEFAULT 'pending'
    );
    CREATE INDEX photos_by_sha256 ON photos (sha256);
    CREATE TABLE uploads (
        sha256           TEXT PRIMARY KEY,
        size_bytes       INTEGER NOT NULL,
        mime_type        TEXT NOT NULL,
        local_path       TEXT NOT NULL,
        upload_id        TEXT,
        committed_offset INTEGER NOT NULL DEFAULT 0,
        done             INTEGER NOT NULL DEFAULT 0,
        created_seq      INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY,
        mutation_id TEXT NOT NULL UNIQUE,
        hlc         INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        subject_id  TEXT NOT NULL,
        payload     TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX outbox_by_subject ON outbox (subject_id);
    CREATE TABLE push_batches (
        batch_id     TEXT PRIMARY KEY,
        first_seq    INTEGER NOT NULL,
        last_seq     INTEGER NOT NULL,
        created_at   TEXT NOT NULL,
        -- 0 while the batch may still be retried; 1 once a PushResponse covered it or it
        -- was abandoned because its entries changed.
        closed       INTEGER NOT NULL DEFAULT 0,
        receipt      TEXT,
        closed_at    TEXT
    );
    "#,
    // 2: household edits, hand-over, wedged items, heartbeats.
    r#"
    -- The household an entry concerns, so a reassignment can flag its drafts and a pull can
    -- rebase its pending card edits.
    ALTER TABLE outbox ADD COLUMN household_id TEXT;
    -- 1: the household was reassigned away; kept for hand-over (需移交), never pushed.
    ALTER TABLE outbox ADD COLUMN handover INTEGER NOT NULL DEFAULT 0;
    -- Failed push attempts of the batch carrying this entry, with the latest error.
    ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN last_error TEXT;
    ALTER TABLE outbox ADD COLUMN failing_since TEXT;
    UPDATE outbox SET household_id = json_extract(payload, '$.household_id')
     WHERE kind IN ('submit_visit', 'register_income');
    UPDATE outbox SET household_id =
        (SELECT v.household_id FROM photos p JOIN visits v ON v.visit_id = p.visit_id
          WHERE p.photo_id = outbox.subject_id)
     WHERE kind = 'add_photo';
    CREATE INDEX outbox_by_household ON outbox (household_id);
    -- The heartbeat taken when the batch was opened, re-sent unchanged with every retry.
    ALTER TABLE push_batches ADD COLUMN heartbeat TEXT;
    -- Mutations the server refused permanently, for the status screen.
    CREATE TABLE rejections (
        seq          INTEGER PRIMARY KEY,
        kind         TEXT NOT NULL,
        subject_id   TEXT NOT NULL,
        household_id TEXT,
        code         TEXT NOT NULL,
        message      TEXT NOT NULL,
        rejected_at  TEXT NOT NULL
    );
    "#,
    // 3: quarterly income registrations (季登记) made on this phone, kept after the push so
    // the cadre can still see what was registered and whether the server took it.
    r#"
    CREATE TABLE income_registrations (
        registration_id TEXT PRIMARY KEY,
        household_id    TEXT NOT NULL,
        year            INTEGER NOT NULL,
        quarter         INTEGER NOT NULL,
        -- JSON of the model's IncomeRegistration, exactly as queued.
        body            TEXT NOT NULL,
        -- unsent | sent | rejected (IncomeState).
        state           TEXT NOT NULL,
        -- JSON {code, message} when the server refused it.
        rejection       TEXT,
        recorded_at     TEXT NOT NULL
    );
    CREATE INDEX income_by_household ON income_registrations (household_id, year, quarter);
    "#,
    // 4: the 季度收入登记 in force on the server for the households on this phone, by any
    // device (the second helper's phone, this cadre's previous phone), from pull. The cursor
    // is dropped so the next pull downloads the scope again with them (the outbox stays).
    r#"
    CREATE TABLE server_income (
        registration_id TEXT PRIMARY KEY,
        household_id    TEXT NOT NULL,
        year            INTEGER NOT NULL,
        quarter         INTEGER NOT NULL,
        -- JSON of the model's IncomeRegistration as the server sent it.
        body            TEXT NOT NULL
    );
    CREATE INDEX server_income_by_household ON server_income (household_id, year, quarter);
    DELETE FROM meta WHERE key = 'cursor';
    "#,
    // 5 (pii_at_rest): ID numbers and phone numbers sealed at rest (sealed.rs). Values
    // stored before are sealed here with the phone's key; the pii_* functions are registered
    // on the connection before migrations run. (Version number: see the merge note in
    // docs/security.md "pii-rest" if another branch also added a version 5.)
    r#"
    UPDATE households SET body = pii_seal_plain_card(body);
    UPDATE outbox SET payload = pii_seal_payload(kind, payload, 'outbox/' || mutation_id);
    "#,
];

/// Failed push attempts after which an outbox entry is shown as stuck (卡住).
pub const WEDGED_AFTER_ATTEMPTS: u64 = 3;

/// Meta keys, so a typo is a compile error.
pub mod meta_key {
    pub const DEVICE_ID: &str = "device_id";
    pub const TOKEN: &str = "token";
    /// The refresh token (empty or absent for servers that issue one long-lived token).
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// Set (to the reason's wire value) when the server ended this device's session.
    pub const SIGNED_OUT: &str = "signed_out";
    pub const USER_ID: &str = "user_id";
    pub const USERNAME: &str = "username";
    pub const DISPLAY_NAME: &str = "display_name";
    pub const ROLE: &str = "role";
    pub const AREA_ID: &str = "area_id";
    /// "true" while the user's password is a one-time password (until changed here).
    pub const MUST_CHANGE_PASSWORD: &str = "must_change_password";
    pub const SERVER_URL: &str = "server_url";
    /// The extra CA file trusted for `https://` (empty: system roots only), kept with the
    /// server URL.
    pub const CA_FILE: &str = "ca_file";
    /// "true" when plain `http://` beyond loopback was explicitly allowed.
    pub const ALLOW_INSECURE_HTTP: &str = "allow_insecure_http";
    pub const CURSOR: &str = "cursor";
    pub const NEXT_SEQ: &str = "next_seq";
    pub const HLC: &str = "hlc";
    pub const LAST_SYNC_AT: &str = "last_sync_at";
    pub const LAST_ERROR: &str = "last_error";
    pub const LAST_RECEIPT: &str = "last_receipt";
    /// The server's time (unix ms) when it last refused this phone's clock; present until
    /// the outbox has been re-stamped after the clock was corrected.
    pub const CLOCK_REFUSED_SERVER_MS: &str = "clock_refused_server_ms";
    /// When the next automatic sync may run (RFC 3339), after a failure.
    pub const NEXT_ATTEMPT_AT: &str = "next_attempt_at";
    /// Syncs that failed in a row since the last success.
    pub const CONSECUTIVE_FAILURES: &str = "consecutive_failures";
    /// The phone's model as the app reported it (`Client::set_device_model`).
    pub const DEVICE_MODEL: &str = "device_model";
    /// JSON list of the user's edits waiting in open conflicts, as the last checkpoint said.
    pub const PENDING_CONFLICTS: &str = "pending_conflicts";
}

/// A photo to store with a visit revision.
#[derive(Debug, Clone)]
pub struct PhotoWrite {
    pub record: PhotoRecord,
    /// Where the copied original lives inside the data dir.
    pub local_path: PathBuf,
}

/// One visit revision with its new photos, written atomically with its outbox entries.
#[derive(Debug, Clone)]
pub struct VisitWrite {
    pub visit: Visit,
    /// For a correction: the revision the phone last knew, checked so two concurrent fixes
    /// cannot both become revision N+1. `None` for a new visit.
    pub expected_previous_revision: Option<u32>,
    pub photos: Vec<PhotoWrite>,
    pub now: OffsetDateTime,
}

/// One local visit as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitRow {
    pub visit_id: String,
    pub household_id: String,
    pub revision: u32,
    pub body: Option<Visit>,
    pub state: VisitState,
    pub status: Option<VisitStatus>,
    /// (code, message) when the server refused the visit.
    pub rejection: Option<(String, String)>,
    /// Outbox entries (the visit itself or its photos) not yet accepted by the server.
    pub pending_mutations: u64,
    pub head_name: Option<String>,
}

/// A pending upload as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub sha256: String,
    pub size_bytes: u64,
    pub mime_type: String,
    pub local_path: PathBuf,
    pub upload_id: Option<String>,
    pub committed_offset: u64,
    pub done: bool,
}

/// What a push acknowledgement changed locally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckSummary {
    pub removed_from_outbox: u64,
    /// Applied mutations, including those also recorded as a conflict.
    pub applied: u64,
    /// Applied mutations the server also recorded as a conflict (`CONFLICT_RECORDED`).
    pub conflicts_recorded: u64,
    pub duplicates: u64,
    pub rejected: Vec<RejectedMutation>,
}

/// A mutation the server refused permanently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedMutation {
    pub seq: u64,
    pub kind: MutationKind,
    pub subject_id: String,
    pub code: String,
    pub message: String,
}

/// One outbox entry as the status screen shows it (hand-over or stuck).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxNote {
    pub seq: u64,
    pub kind: MutationKind,
    pub subject_id: String,
    pub household_id: String,
    pub attempts: u64,
    pub last_error: Option<String>,
    pub failing_since: Option<OffsetDateTime>,
    pub saved_at: Option<OffsetDateTime>,
}

/// A permanent refusal kept for the status screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRejection {
    pub seq: u64,
    pub kind: MutationKind,
    pub subject_id: String,
    pub household_id: String,
    pub code: String,
    pub message: String,
    pub rejected_at: Option<OffsetDateTime>,
}

/// One checkpoint of a pull, ready to apply.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint<'a> {
    pub pages: &'a [PulledPage],
    pub cursor: &'a str,
    pub server_time: Option<OffsetDateTime>,
    pub server_hlc: u64,
    /// The pull started from an empty cursor: the pages are the whole scope.
    pub replace_replica: bool,
    /// The user's edits waiting in open conflicts: replaces the list the phone held.
    pub pending_conflicts: &'a [PendingConflict],
    pub now: OffsetDateTime,
}

/// What a pull changed locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullSummary {
    pub households: u64,
    pub removed_households: u64,
    pub visit_statuses: u64,
}

/// The local database. One connection behind a mutex: the phone has one writer, and every
/// operation is short, so a pool would only add lock contention inside SQLite.
#[derive(Debug)]
pub struct Store {
    connection: Mutex<Connection>,
    path: PathBuf,
}

fn format_time(instant: OffsetDateTime) -> String {
    instant
        .format(&Rfc3339)
        .unwrap_or_else(|_| instant.unix_timestamp().to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> ClientResult<String> {
    serde_json::to_string(value).map_err(ClientError::corrupt)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> ClientResult<T> {
    serde_json::from_str(text).map_err(|error| ClientError::corrupt(format!("{what}: {error}")))
}

/// SQLite integers are i64; seqs, sizes and offsets are u64 and never exceed i64::MAX.
fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store {
    /// Open (creating when absent) the database at `path`, set WAL and FULL sync, and apply
    /// pending migrations. Reopening an up-to-date database changes nothing.
    /// Open with the default key: `pii.key` in the database's folder, created on first
    /// open (see [`PhoneKey`] for the app's own key).
    pub fn open(path: &Path) -> ClientResult<Self> {
        let folder = path.parent().unwrap_or_else(|| Path::new("."));
        Self::open_with_key(path, &PhoneKey::load_or_create(folder)?)
    }

    /// Open with the personal-data key the app supplies (Android Keystore / iOS Keychain).
    pub fn open_with_key(path: &Path, key: &PhoneKey) -> ClientResult<Self> {
        let mut connection = Connection::open(path)?;
        crate::sealed::register_functions(&connection, key)?;
        // WAL lets a reader (the UI) run while sync writes; FULL makes a commit survive a
        // power cut, which matters because the outbox is the only copy of a visit.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Two CLI invocations may overlap; wait for the other writer instead of failing.
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut connection)?;
        Ok(Self {
            connection: Mutex::new(connection),
            path: path.to_owned(),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written transaction (SQLite
        // rolls it back), so a poisoned mutex is still safe to use.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The applied schema version.
    pub fn schema_version(&self) -> ClientResult<u32> {
        let connection = self.lock();
        Ok(connection.query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    // ---- meta ----

    /// Read one meta value.
    pub fn meta_get(&self, key: &str) -> ClientResult<Option<String>> {
        let connection = self.lock();
        meta_get(&connection, key)
    }

    /// The user's edits waiting in open conflicts, as the last pull's checkpoint said.
    pub fn pending_conflicts(&self) -> ClientResult<Vec<PendingConflict>> {
        match self.meta_get(meta_key::PENDING_CONFLICTS)? {
            Some(text) => from_json(&text, "pending conflicts"),
            None => Ok(Vec::new()),
        }
    }

    /// Write one meta value.
    pub fn meta_set(&self, key: &str, value: &str) -> ClientResult<()> {
        let connection = self.lock();
        meta_set(&connection, key, value)
    }

    /// Remove one meta value.
    /// Forget the session's tokens in one transaction (logout, or the server ended it), and
    /// note why when the server ended it. User, outbox and local records stay: only a
    /// different user's login purges them.
    pub fn end_local_session(&self, signed_out: Option<&str>) -> ClientResult<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for key in [
            meta_key::TOKEN,
            meta_key::REFRESH_TOKEN,
            meta_key::SIGNED_OUT,
        ] {
            transaction.execute("DELETE FROM meta WHERE key = ?1", [key])?;
        }
        if let Some(reason) = signed_out {
            meta_set(&transaction, meta_key::SIGNED_OUT, reason)?;
        }
        transaction.commit()?;
        Ok(())
    }

    pub fn meta_delete(&self, key: &str) -> ClientResult<()> {
        let connection = self.lock();
        connection.execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// The install's device id, generated once and kept for the life of the install.
    pub fn ensure_device_id(&self, generate: impl FnOnce() -> String) -> ClientResult<String> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(existing) = meta_get(&transaction, meta_key::DEVICE_ID)? {
            return Ok(existing);
        }
        let device_id = generate();
        meta_set(&transaction, meta_key::DEVICE_ID, &device_id)?;
        transaction.commit()?;
        Ok(device_id)
    }

    /// Store a login. When another user logs in on this phone, the previous user's replica
    /// and cursor are dropped so one cadre never sees another's households.
    pub fn save_login(&self, entries: &[(&str, &str)], user_changed: bool) -> ClientResult<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if user_changed {
            drop_replica(&transaction)?;
            transaction.execute("DELETE FROM visits", [])?;
            transaction.execute("DELETE FROM income_registrations", [])?;
            // The new user's households have not been pulled yet (see
            // `Client::households_synced`).
            for key in [meta_key::CURSOR, meta_key::LAST_SYNC_AT] {
                transaction.execute("DELETE FROM meta WHERE key = ?1", [key])?;
            }
        }
        for (key, value) in entries {
            meta_set(&transaction, key, value)?;
        }
        transaction.commit()?;
        Ok(())
    }

    // ---- local changes ----

    /// Write one visit revision, its photos, their uploads and the outbox entries
    /// (SubmitVisit, then one AddPhoto per new photo) in ONE transaction. Returns the seqs.
    pub fn record_visit_revision(&self, write: &VisitWrite) -> ClientResult<Vec<u64>> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let visit = &write.visit;
        let now_text = format_time(write.now);
        let body = to_json(visit)?;
        match write.expected_previous_revision {
            None => {
                transaction.execute(
                    "INSERT INTO visits (visit_id, household_id, revision, body, mode, checkin_at,
                                         state, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        visit.visit_id,
                        visit.household_id,
                        visit.revision,
                        body,
                        fieldsync_model::CodeList::code(visit.mode),
                        format_time(visit.checkin_at),
                        VisitState::Unsent.as_str(),
                        now_text,
                    ],
                )?;
            }
            Some(previous) => {
                let changed = transaction.execute(
                    "UPDATE visits SET revision = ?2, body = ?3, mode = ?4, checkin_at = ?5,
                                       state = ?6, rejection = NULL, updated_at = ?7
                     WHERE visit_id = ?1 AND revision = ?8",
                    params![
                        visit.visit_id,
                        visit.revision,
                        body,
                        fieldsync_model::CodeList::code(visit.mode),
                        format_time(visit.checkin_at),
                        VisitState::Unsent.as_str(),
                        now_text,
                        previous,
                    ],
                )?;
                if changed != 1 {
                    return Err(ClientError::NotAllowed(format!(
                        "visit {} is no longer at revision {previous}",
                        visit.visit_id
                    )));
                }
            }
        }
        let mut seqs = Vec::with_capacity(1 + write.photos.len());
        seqs.push(append_outbox(
            &transaction,
            MutationKind::SubmitVisit,
            &visit.visit_id,
            Some(&visit.household_id),
            &body,
            write.now,
        )?);
        for photo in &write.photos {
            let record = &photo.record;
            let photo_body = to_json(record)?;
            transaction.execute(
                "INSERT INTO photos (photo_id, visit_id, revision, sha256, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.photo_id,
                    record.visit_id,
                    visit.revision,
                    record.sha256,
                    photo_body
                ],
            )?;
            let seq = append_outbox(
                &transaction,
                MutationKind::AddPhoto,
                &record.photo_id,
                Some(&visit.household_id),
                &photo_body,
                write.now,
            )?;
            // Content-addressed: the same picture attached twice is uploaded once.
            transaction.execute(
                "INSERT OR IGNORE INTO uploads (sha256, size_bytes, mime_type, local_path,
                                                created_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.sha256,
                    to_sql_int(record.size_bytes),
                    record.mime_type,
                    photo.local_path.to_string_lossy(),
                    to_sql_int(seq),
                ],
            )?;
            seqs.push(seq);
        }
        transaction.commit()?;
        Ok(seqs)
    }

    /// Validate and apply one card edit to the local household and write its outbox
    /// entry (with the `base_seq` the card showed) in ONE transaction. Returns the seq.
    pub fn write_card_edit(
        &self,
        household_id: &str,
        edit: CardEdit,
        now: OffsetDateTime,
    ) -> ClientResult<u64> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let body: Option<String> = transaction
            .query_row(
                "SELECT pii_open_card(body) FROM households WHERE household_id = ?1",
                [household_id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(body) = body else {
            return Err(ClientError::NotFound(format!(
                "household {household_id} (sync first to download your households)"
            )));
        };
        let mut card: Household = from_json(&body, "household body")?;
        let (kind, payload) = match edits::apply_new_edit(&mut card, edit)? {
            PendingEdit::Field(field_edit) => (MutationKind::EditField, to_json(&field_edit)?),
            PendingEdit::AddMember(member) => (
                MutationKind::AddMember,
                to_json(&AddMemberPayload {
                    household_id: household_id.to_owned(),
                    member,
                })?,
            ),
        };
        write_household(&transaction, &card)?;
        let seq = append_outbox(
            &transaction,
            kind,
            household_id,
            Some(household_id),
            &payload,
            now,
        )?;
        transaction.commit()?;
        Ok(seq)
    }

    /// Build a quarterly income registration from the household's current size on the
    /// local card (members not removed, the cadre's own pending edits included) and write
    /// it with its RegisterIncome outbox entry in ONE transaction. `build` gets the size
    /// and applies the model's rules; if it fails, nothing is stored. Unless `correction`,
    /// a quarter that already has a registration in force (this phone's, or any device's
    /// as of the last pull) is refused with [`ClientError::IncomeAlreadyRegistered`]: a
    /// second registration replaces the first, so it must be meant; a correction names the
    /// registration it replaces. Returns the registration and its seq.
    pub fn write_income_registration(
        &self,
        household_id: &str,
        correction: bool,
        build: impl FnOnce(u32) -> ClientResult<IncomeRegistration>,
        now: OffsetDateTime,
    ) -> ClientResult<(IncomeRegistration, u64)> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let body: Option<String> = transaction
            .query_row(
                "SELECT pii_open_card(body) FROM households WHERE household_id = ?1",
                [household_id],
                |row| row.get(0),
            )
            .optional()?;
        let Some(body) = body else {
            return Err(ClientError::NotFound(format!(
                "household {household_id} (sync first to download your households)"
            )));
        };
        let card: Household = from_json(&body, "household body")?;
        let size = u32::try_from(card.current_members().count()).unwrap_or(u32::MAX);
        let registration = build(size)?;
        let in_force = income_in_force(
            &transaction,
            &registration.household_id,
            registration.year,
            registration.quarter,
        )?;
        let registration = match in_force {
            Some((in_force, on_this_phone)) if !correction => {
                return Err(ClientError::IncomeAlreadyRegistered {
                    household_id: registration.household_id,
                    year: registration.year,
                    quarter: registration.quarter,
                    net_fen: in_force.net_fen,
                    on_this_phone,
                });
            }
            // A correction names what it replaces, so the server can tell it from two
            // phones registering the same quarter without seeing each other.
            Some((in_force, _)) => registration.superseding(Some(in_force.registration_id)),
            None => registration,
        };
        let payload = to_json(&registration)?;
        transaction.execute(
            "INSERT INTO income_registrations (registration_id, household_id, year, quarter,
                                               body, state, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                registration.registration_id,
                registration.household_id,
                registration.year,
                registration.quarter,
                payload,
                IncomeState::Unsent.as_str(),
                format_time(now)
            ],
        )?;
        let seq = append_outbox(
            &transaction,
            MutationKind::RegisterIncome,
            &registration.registration_id,
            Some(&registration.household_id),
            &payload,
            now,
        )?;
        transaction.commit()?;
        Ok((registration, seq))
    }

    // ---- reads ----

    /// The registrations in force on the server at the last pull (any device's), for all
    /// households on the phone or one, by household, year and quarter.
    pub fn server_income_registrations(
        &self,
        household_id: Option<&str>,
    ) -> ClientResult<Vec<IncomeRegistration>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT body FROM server_income WHERE ?1 IS NULL OR household_id = ?1
             ORDER BY household_id, year, quarter",
        )?;
        let bodies = statement
            .query_map([household_id], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        bodies
            .iter()
            .map(|body| from_json(body, "server income registration"))
            .collect()
    }

    /// Income registrations made on this phone (all, or one household's), by household,
    /// year, quarter, then the order they were saved in (a later one corrects an earlier).
    pub fn income_registrations(
        &self,
        household_id: Option<&str>,
    ) -> ClientResult<Vec<LocalIncome>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT body, state, rejection, recorded_at FROM income_registrations
             WHERE ?1 IS NULL OR household_id = ?1
             ORDER BY household_id, year, quarter, rowid",
        )?;
        let rows = statement
            .query_map([household_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(body, state, rejection, recorded_at)| {
                let rejection = rejection
                    .map(|text| from_json::<serde_json::Value>(&text, "income rejection"))
                    .transpose()?
                    .map(|value| {
                        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
                        (text("code"), text("message"))
                    });
                Ok(LocalIncome {
                    registration: from_json(&body, "income registration body")?,
                    state: IncomeState::parse(&state)
                        .ok_or_else(|| ClientError::corrupt(format!("income state {state:?}")))?,
                    rejection,
                    recorded_at: parse_time(&recorded_at),
                })
            })
            .collect()
    }

    /// Every visit on the phone, newest check-in first, with the household head's name.
    pub fn list_visits(&self) -> ClientResult<Vec<VisitRow>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT v.visit_id, v.household_id, v.revision, v.body, v.state, v.status,
                    v.rejection, h.head_name,
                    (SELECT COUNT(*) FROM outbox o
                      WHERE o.subject_id = v.visit_id
                         OR o.subject_id IN (SELECT p.photo_id FROM photos p
                                              WHERE p.visit_id = v.visit_id))
             FROM visits v LEFT JOIN households h ON h.household_id = v.household_id
             ORDER BY v.checkin_at DESC, v.visit_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, i64>(8)?,
            ))
        })?;
        let mut visits = Vec::new();
        for row in rows {
            let (visit_id, household_id, revision, body, state, status, rejection, head, pending) =
                row?;
            let rejection: Option<serde_json::Value> = rejection
                .as_deref()
                .map(|text| from_json(text, "visit rejection"))
                .transpose()?;
            visits.push(VisitRow {
                body: body
                    .as_deref()
                    .map(|text| from_json(text, "visit body"))
                    .transpose()?,
                state: VisitState::parse(&state)
                    .ok_or_else(|| ClientError::corrupt(format!("visit state {state:?}")))?,
                status: status
                    .as_deref()
                    .map(|text| from_json(text, "visit status"))
                    .transpose()?,
                rejection: rejection.map(|value| {
                    (
                        value["code"].as_str().unwrap_or_default().to_owned(),
                        value["message"].as_str().unwrap_or_default().to_owned(),
                    )
                }),
                pending_mutations: from_sql_int(pending),
                head_name: head,
                visit_id,
                household_id,
                revision,
            });
        }
        Ok(visits)
    }

    /// One visit.
    pub fn visit(&self, visit_id: &str) -> ClientResult<Option<VisitRow>> {
        Ok(self
            .list_visits()?
            .into_iter()
            .find(|row| row.visit_id == visit_id))
    }

    /// One photo record with where its copy lives and whether the server has its bytes.
    pub fn photo(&self, photo_id: &str) -> ClientResult<Option<(PhotoRecord, PathBuf, bool)>> {
        let connection = self.lock();
        let row: Option<(String, Option<String>, Option<i64>)> = connection
            .query_row(
                "SELECT p.body, u.local_path, u.done
                 FROM photos p LEFT JOIN uploads u ON u.sha256 = p.sha256
                 WHERE p.photo_id = ?1",
                [photo_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        drop(connection);
        let Some((body, local_path, done)) = row else {
            return Ok(None);
        };
        let record: PhotoRecord = from_json(&body, "photo body")?;
        Ok(Some((
            record,
            local_path.map(PathBuf::from).unwrap_or_default(),
            done.unwrap_or(0) != 0,
        )))
    }

    /// Visit ids starting with `prefix` (for CLI abbreviations).
    pub fn visit_ids_with_prefix(&self, prefix: &str) -> ClientResult<Vec<String>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT visit_id FROM visits WHERE substr(visit_id, 1, length(?1)) = ?1")?;
        let ids = statement
            .query_map([prefix], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// The whole replica of households, by village then head name.
    pub fn households(&self) -> ClientResult<Vec<Household>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT pii_open_card(body) FROM households
             ORDER BY village_name, head_name, household_id",
        )?;
        let bodies = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        bodies
            .iter()
            .map(|body| from_json(body, "household body"))
            .collect()
    }

    /// One household from the replica.
    pub fn household(&self, household_id: &str) -> ClientResult<Option<Household>> {
        let connection = self.lock();
        let body: Option<String> = connection
            .query_row(
                "SELECT pii_open_card(body) FROM households WHERE household_id = ?1",
                [household_id],
                |row| row.get(0),
            )
            .optional()?;
        body.as_deref()
            .map(|text| from_json(text, "household body"))
            .transpose()
    }

    /// Household ids starting with `prefix`.
    pub fn household_ids_with_prefix(&self, prefix: &str) -> ClientResult<Vec<String>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT household_id FROM households WHERE substr(household_id, 1, length(?1)) = ?1",
        )?;
        let ids = statement
            .query_map([prefix], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Number of outbox entries not yet covered by a push response.
    pub fn outbox_len(&self) -> ClientResult<u64> {
        let connection = self.lock();
        let count: i64 =
            connection.query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?;
        Ok(from_sql_int(count))
    }

    /// Outbox entries that will be pushed (not held for hand-over).
    pub fn sendable_outbox_len(&self) -> ClientResult<u64> {
        let connection = self.lock();
        let count: i64 = connection.query_row(
            "SELECT COUNT(*) FROM outbox WHERE handover = 0",
            [],
            |row| row.get(0),
        )?;
        Ok(from_sql_int(count))
    }

    /// Entries held for hand-over because their household was reassigned away.
    pub fn handover_entries(&self) -> ClientResult<Vec<OutboxNote>> {
        self.outbox_notes("handover = 1")
    }

    /// Entries whose batch failed at least `WEDGED_AFTER_ATTEMPTS` times.
    pub fn wedged_entries(&self) -> ClientResult<Vec<OutboxNote>> {
        self.outbox_notes(&format!(
            "handover = 0 AND attempts >= {WEDGED_AFTER_ATTEMPTS}"
        ))
    }

    fn outbox_notes(&self, condition: &str) -> ClientResult<Vec<OutboxNote>> {
        let connection = self.lock();
        // `condition` is one of the fixed filters above, never user input.
        let mut statement = connection.prepare(&format!(
            "SELECT seq, kind, subject_id, household_id, attempts, last_error, failing_since,
                    created_at
             FROM outbox WHERE {condition} ORDER BY seq"
        ))?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, String>(7)?,
            ))
        })?;
        let mut notes = Vec::new();
        for row in rows {
            let (seq, kind, subject_id, household_id, attempts, error, since, created) = row?;
            notes.push(OutboxNote {
                seq: from_sql_int(seq),
                kind: MutationKind::parse(&kind)
                    .ok_or_else(|| ClientError::corrupt(format!("outbox kind {kind:?}")))?,
                subject_id,
                household_id: household_id.unwrap_or_default(),
                attempts: from_sql_int(attempts),
                last_error: error,
                failing_since: since.as_deref().and_then(parse_time),
                saved_at: parse_time(&created),
            });
        }
        Ok(notes)
    }

    /// Mutations the server refused permanently, newest first (at most `limit`).
    pub fn rejections(&self, limit: u64) -> ClientResult<Vec<StoredRejection>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT seq, kind, subject_id, household_id, code, message, rejected_at
             FROM rejections ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([to_sql_int(limit)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
            ))
        })?;
        let mut rejections = Vec::new();
        for row in rows {
            let (seq, kind, subject_id, household_id, code, message, at) = row?;
            rejections.push(StoredRejection {
                seq: from_sql_int(seq),
                kind: MutationKind::parse(&kind)
                    .ok_or_else(|| ClientError::corrupt(format!("rejection kind {kind:?}")))?,
                subject_id,
                household_id: household_id.unwrap_or_default(),
                code,
                message,
                rejected_at: parse_time(&at),
            });
        }
        Ok(rejections)
    }

    /// Count a failed push attempt for the entries `first..=last` with its error.
    pub fn note_push_failure(
        &self,
        first: u64,
        last: u64,
        error: &str,
        now: OffsetDateTime,
    ) -> ClientResult<()> {
        let connection = self.lock();
        connection.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?3,
                               failing_since = COALESCE(failing_since, ?4)
             WHERE seq BETWEEN ?1 AND ?2",
            params![to_sql_int(first), to_sql_int(last), error, format_time(now)],
        )?;
        Ok(())
    }

    /// The heartbeat as of now: counts, the oldest unsent record, the device time and the
    /// last sync error.
    pub fn heartbeat(&self, now: OffsetDateTime) -> ClientResult<Heartbeat> {
        let pending_uploads = self.pending_upload_count()?;
        let connection = self.lock();
        let (count, oldest): (i64, Option<String>) =
            connection.query_row("SELECT COUNT(*), MIN(created_at) FROM outbox", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        Ok(Heartbeat {
            // Hand-over drafts count: they are unsent data the supervisor must know about.
            unsent_mutations: from_sql_int(count),
            pending_uploads,
            oldest_unsent_at: oldest.as_deref().and_then(parse_time),
            device_time: Some(now),
            last_error: meta_get(&connection, meta_key::LAST_ERROR)?.unwrap_or_default(),
        })
    }

    /// The heartbeat stored with a batch when it was opened.
    pub fn batch_heartbeat(&self, batch_id: &str) -> ClientResult<Option<Heartbeat>> {
        let connection = self.lock();
        let text: Option<Option<String>> = connection
            .query_row(
                "SELECT heartbeat FROM push_batches WHERE batch_id = ?1",
                [batch_id],
                |row| row.get(0),
            )
            .optional()?;
        text.flatten()
            .as_deref()
            .map(|text| from_json(text, "batch heartbeat"))
            .transpose()
    }

    /// The outbox, in seq order.
    pub fn outbox_entries(&self) -> ClientResult<Vec<OutboxEntry>> {
        self.outbox_range(0, u64::MAX)
    }

    /// Outbox entries with `first <= seq <= last`, in seq order.
    pub fn outbox_range(&self, first: u64, last: u64) -> ClientResult<Vec<OutboxEntry>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT seq, mutation_id, hlc, kind, subject_id,
                    pii_open(payload, 'outbox/' || mutation_id)
             FROM outbox WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![to_sql_int(first), to_sql_int(last)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (seq, mutation_id, hlc, kind, subject_id, payload_json) = row?;
            entries.push(OutboxEntry {
                seq: from_sql_int(seq),
                mutation_id,
                hlc: from_sql_int(hlc),
                kind: MutationKind::parse(&kind)
                    .ok_or_else(|| ClientError::corrupt(format!("outbox kind {kind:?}")))?,
                subject_id,
                payload_json,
            });
        }
        Ok(entries)
    }

    /// Uploads whose bytes the server does not have yet and whose photo was not refused.
    pub fn pending_upload_count(&self) -> ClientResult<u64> {
        Ok(self
            .load_sync_state()?
            .uploads
            .iter()
            .filter(|upload| !upload.done && !upload.abandoned)
            .count() as u64)
    }

    /// One upload row.
    pub fn upload(&self, sha256: &str) -> ClientResult<Option<UploadRow>> {
        let connection = self.lock();
        let row = connection
            .query_row(
                "SELECT sha256, size_bytes, mime_type, local_path, upload_id, committed_offset,
                        done
                 FROM uploads WHERE sha256 = ?1",
                [sha256],
                |row| {
                    Ok(UploadRow {
                        sha256: row.get(0)?,
                        size_bytes: from_sql_int(row.get(1)?),
                        mime_type: row.get(2)?,
                        local_path: PathBuf::from(row.get::<_, String>(3)?),
                        upload_id: row.get(4)?,
                        committed_offset: from_sql_int(row.get(5)?),
                        done: row.get::<_, i64>(6)? != 0,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// Everything the sync planner needs, read in one consistent snapshot.
    pub fn load_sync_state(&self) -> ClientResult<LocalState> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let outbox_seqs = {
            // Hand-over drafts are never pushed under their seq: the server would take a later
            // hand-over as a duplicate of a seq it already passed.
            let mut statement =
                transaction.prepare("SELECT seq FROM outbox WHERE handover = 0 ORDER BY seq")?;
            statement
                .query_map([], |row| row.get::<_, i64>(0))?
                .map(|seq| seq.map(from_sql_int))
                .collect::<Result<Vec<_>, _>>()?
        };
        let open_batch = transaction
            .query_row(
                "SELECT batch_id, first_seq, last_seq FROM push_batches WHERE closed = 0
                 ORDER BY first_seq LIMIT 1",
                [],
                |row| {
                    Ok(OpenBatch {
                        batch_id: row.get(0)?,
                        first_seq: from_sql_int(row.get(1)?),
                        last_seq: from_sql_int(row.get(2)?),
                    })
                },
            )
            .optional()?;
        let uploads = {
            // ready: at least one photo with these bytes was accepted by the server, which
            // the server needs before it takes the bytes. abandoned: every such photo was
            // refused, so the bytes have nowhere to go.
            let mut statement = transaction.prepare(
                "SELECT u.sha256, u.size_bytes, u.upload_id, u.committed_offset, u.done,
                        EXISTS (SELECT 1 FROM photos p
                                 WHERE p.sha256 = u.sha256 AND p.push_state = 'accepted'),
                        NOT EXISTS (SELECT 1 FROM photos p
                                     WHERE p.sha256 = u.sha256 AND p.push_state != 'rejected')
                 FROM uploads u ORDER BY u.created_seq",
            )?;
            statement
                .query_map([], |row| {
                    Ok(UploadState {
                        sha256: row.get(0)?,
                        size_bytes: from_sql_int(row.get(1)?),
                        upload_id: row.get(2)?,
                        committed_offset: from_sql_int(row.get(3)?),
                        done: row.get::<_, i64>(4)? != 0,
                        ready: row.get::<_, bool>(5)?,
                        abandoned: row.get::<_, bool>(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(LocalState {
            outbox_seqs,
            open_batch,
            uploads,
        })
    }

    // ---- push ----

    /// Persist a batch before sending it, so a retry after a crash or a lost response
    /// re-sends the same id with the same content.
    pub fn open_batch(
        &self,
        batch_id: &str,
        first_seq: u64,
        last_seq: u64,
        now: OffsetDateTime,
    ) -> ClientResult<()> {
        self.open_batch_with_heartbeat(batch_id, first_seq, last_seq, None, now)
    }

    /// [`Store::open_batch`] that keeps the heartbeat sent with the batch, so a retry
    /// re-sends the same request bytes.
    pub fn open_batch_with_heartbeat(
        &self,
        batch_id: &str,
        first_seq: u64,
        last_seq: u64,
        heartbeat: Option<&Heartbeat>,
        now: OffsetDateTime,
    ) -> ClientResult<()> {
        let heartbeat = heartbeat.map(to_json).transpose()?;
        let connection = self.lock();
        connection.execute(
            "INSERT INTO push_batches (batch_id, first_seq, last_seq, created_at, heartbeat)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                batch_id,
                to_sql_int(first_seq),
                to_sql_int(last_seq),
                format_time(now),
                heartbeat
            ],
        )?;
        Ok(())
    }

    /// Close a batch that can no longer be re-sent unchanged (its entries changed).
    pub fn abandon_batch(&self, batch_id: &str, now: OffsetDateTime) -> ClientResult<()> {
        let connection = self.lock();
        connection.execute(
            "UPDATE push_batches SET closed = 1, closed_at = ?2 WHERE batch_id = ?1",
            params![batch_id, format_time(now)],
        )?;
        Ok(())
    }

    /// Apply the server's answer to a batch in ONE transaction: record each outcome on the
    /// visit or photo it concerns, delete the entries the response covers
    /// (`seq <= last_processed_seq` with an outcome), store the receipt, close the batch.
    pub fn apply_push_ack(
        &self,
        batch_id: &str,
        ack: &PushAck,
        now: OffsetDateTime,
    ) -> ClientResult<AckSummary> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now_text = format_time(now);
        let mut summary = AckSummary::default();
        for (seq, outcome) in &ack.results {
            if *seq > ack.last_processed_seq {
                continue;
            }
            let entry: Option<(String, String, String, Option<String>)> = transaction
                .query_row(
                    "SELECT kind, subject_id, pii_open(payload, 'outbox/' || mutation_id),
                            household_id
                     FROM outbox WHERE seq = ?1",
                    [to_sql_int(*seq)],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()?;
            let Some((kind, subject_id, payload, household_id)) = entry else {
                // Already removed by an earlier response to the same batch.
                continue;
            };
            let kind = MutationKind::parse(&kind)
                .ok_or_else(|| ClientError::corrupt(format!("outbox kind {kind:?}")))?;
            match outcome {
                PushOutcome::Applied => summary.applied += 1,
                PushOutcome::ConflictRecorded => {
                    summary.applied += 1;
                    summary.conflicts_recorded += 1;
                }
                PushOutcome::Duplicate => summary.duplicates += 1,
                PushOutcome::Rejected { code, message } => {
                    // Kept for the status screen: the entry leaves the outbox, but the cadre
                    // must still see that this record was refused and why.
                    transaction.execute(
                        "INSERT OR REPLACE INTO rejections (seq, kind, subject_id, household_id,
                                                            code, message, rejected_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            to_sql_int(*seq),
                            kind.as_str(),
                            subject_id,
                            household_id,
                            code,
                            message,
                            now_text
                        ],
                    )?;
                    summary.rejected.push(RejectedMutation {
                        seq: *seq,
                        kind,
                        subject_id: subject_id.clone(),
                        code: code.clone(),
                        message: message.clone(),
                    });
                }
            }
            match (kind, outcome) {
                (MutationKind::SubmitVisit, PushOutcome::Rejected { code, message }) => {
                    let rejection = serde_json::json!({ "code": code, "message": message });
                    transaction.execute(
                        "UPDATE visits SET state = ?2, rejection = ?3, updated_at = ?4
                         WHERE visit_id = ?1",
                        params![
                            subject_id,
                            VisitState::Rejected.as_str(),
                            rejection.to_string(),
                            now_text
                        ],
                    )?;
                }
                (MutationKind::SubmitVisit, _) => {
                    // Only the revision this entry carried becomes "submitted"; if the cadre
                    // already saved a newer revision, that one is still unsent.
                    let sent: Visit = from_json(&payload, "outbox visit payload")?;
                    transaction.execute(
                        "UPDATE visits SET state = ?2, updated_at = ?3
                         WHERE visit_id = ?1 AND revision = ?4 AND state = ?5",
                        params![
                            subject_id,
                            VisitState::Submitted.as_str(),
                            now_text,
                            sent.revision,
                            VisitState::Unsent.as_str()
                        ],
                    )?;
                }
                (MutationKind::AddPhoto, outcome) => {
                    let push_state = if matches!(outcome, PushOutcome::Rejected { .. }) {
                        "rejected"
                    } else {
                        "accepted"
                    };
                    transaction.execute(
                        "UPDATE photos SET push_state = ?2 WHERE photo_id = ?1",
                        params![subject_id, push_state],
                    )?;
                }
                (MutationKind::RegisterIncome, outcome) => {
                    let (state, rejection) = match outcome {
                        PushOutcome::Rejected { code, message } => (
                            IncomeState::Rejected,
                            Some(
                                serde_json::json!({ "code": code, "message": message }).to_string(),
                            ),
                        ),
                        _ => (IncomeState::Sent, None),
                    };
                    transaction.execute(
                        "UPDATE income_registrations SET state = ?2, rejection = ?3
                         WHERE registration_id = ?1",
                        params![subject_id, state.as_str(), rejection],
                    )?;
                }
                (MutationKind::EditField | MutationKind::AddMember, _) => {}
            }
            summary.removed_from_outbox += transaction
                .execute("DELETE FROM outbox WHERE seq = ?1", [to_sql_int(*seq)])?
                as u64;
        }
        transaction.execute(
            "UPDATE push_batches SET closed = 1, receipt = ?2, closed_at = ?3 WHERE batch_id = ?1",
            params![batch_id, ack.receipt, now_text],
        )?;
        if !ack.receipt.is_empty() {
            meta_set(&transaction, meta_key::LAST_RECEIPT, &ack.receipt)?;
        }
        observe_server(&transaction, ack.server_hlc, ack.server_time)?;
        transaction.commit()?;
        Ok(summary)
    }

    /// The highest HLC among the outbox entries `first..=last`, in unix ms.
    pub fn max_outbox_hlc_millis(&self, first: u64, last: u64) -> ClientResult<u64> {
        let connection = self.lock();
        let max: Option<i64> = connection.query_row(
            "SELECT MAX(hlc) FROM outbox WHERE seq BETWEEN ?1 AND ?2",
            params![to_sql_int(first), to_sql_int(last)],
            |row| row.get(0),
        )?;
        Ok(Hlc::from_u64(max.map_or(0, from_sql_int)).millis())
    }

    /// The server refused this phone's clock; remember its time so the outbox can be
    /// re-stamped once the clock is corrected.
    pub fn note_clock_refused(&self, server_ms: u64) -> ClientResult<()> {
        self.meta_set(meta_key::CLOCK_REFUSED_SERVER_MS, &server_ms.to_string())
    }

    /// After a clock refusal, once the wall clock was corrected: give every outbox entry a
    /// new stamp in seq order from a sane base, close the open batch (its content changed,
    /// and the same batch id with other content would be refused), and store the new HLC,
    /// all in ONE transaction. Returns how many entries were re-stamped.
    pub fn restamp_outbox_if_clock_fixed(&self, now: OffsetDateTime) -> ClientResult<u64> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(server_ms) = meta_get(&transaction, meta_key::CLOCK_REFUSED_SERVER_MS)? else {
            return Ok(0);
        };
        let server_ms: u64 = server_ms.parse().unwrap_or(0);
        let last = Hlc::from_u64(read_u64_meta(&transaction, meta_key::HLC, 0)?);
        let Some(mut next) = hlc::restamp_base(last, now, server_ms) else {
            return Ok(0);
        };
        let seqs = {
            let mut statement = transaction.prepare("SELECT seq FROM outbox ORDER BY seq")?;
            statement
                .query_map([], |row| row.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?
        };
        for seq in &seqs {
            transaction.execute(
                "UPDATE outbox SET hlc = ?2 WHERE seq = ?1",
                params![seq, to_sql_int(next.as_u64())],
            )?;
            next = next.tick(0);
        }
        transaction.execute(
            "UPDATE push_batches SET closed = 1, closed_at = ?1 WHERE closed = 0",
            [format_time(now)],
        )?;
        meta_set(&transaction, meta_key::HLC, &next.as_u64().to_string())?;
        transaction.execute(
            "DELETE FROM meta WHERE key = ?1",
            [meta_key::CLOCK_REFUSED_SERVER_MS],
        )?;
        transaction.commit()?;
        Ok(seqs.len() as u64)
    }

    // ---- uploads ----

    /// Remember where an upload stands, after every acknowledged chunk, so a restart resumes.
    pub fn set_upload_position(
        &self,
        sha256: &str,
        upload_id: &str,
        committed_offset: u64,
    ) -> ClientResult<()> {
        let connection = self.lock();
        connection.execute(
            "UPDATE uploads SET upload_id = ?2, committed_offset = ?3 WHERE sha256 = ?1",
            params![sha256, upload_id, to_sql_int(committed_offset)],
        )?;
        Ok(())
    }

    /// The server has the whole blob.
    pub fn mark_upload_done(&self, sha256: &str) -> ClientResult<()> {
        let connection = self.lock();
        connection.execute(
            "UPDATE uploads SET done = 1, committed_offset = size_bytes WHERE sha256 = ?1",
            [sha256],
        )?;
        Ok(())
    }

    // ---- pull ----

    /// Apply the pages of one pull and its cursor in ONE transaction, so a torn stream never
    /// leaves a half-updated replica.
    pub fn apply_pull(
        &self,
        pages: &[PulledPage],
        cursor: &str,
        server_time: Option<OffsetDateTime>,
        server_hlc: u64,
        now: OffsetDateTime,
    ) -> ClientResult<PullSummary> {
        self.apply_checkpoint(&Checkpoint {
            pages,
            cursor,
            server_time,
            server_hlc,
            replace_replica: false,
            pending_conflicts: &[],
            now,
        })
    }

    /// Apply one checkpoint in ONE transaction: with `replace_replica` (a full download
    /// after a RESET or from an empty cursor) the old replica is dropped in the same
    /// transaction, so the phone never shows an empty list while re-downloading. Pulled
    /// cards get the phone's pending edits re-applied on top; removed households are purged
    /// with their PII and their unsent drafts are flagged for hand-over.
    pub fn apply_checkpoint(&self, checkpoint: &Checkpoint<'_>) -> ClientResult<PullSummary> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now_text = format_time(checkpoint.now);
        let mut summary = PullSummary::default();
        let previous_ids = if checkpoint.replace_replica {
            let ids = {
                let mut statement = transaction.prepare("SELECT household_id FROM households")?;
                statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?
            };
            drop_replica(&transaction)?;
            ids
        } else {
            Vec::new()
        };
        for page in checkpoint.pages {
            for household in &page.households {
                let pending = pending_card_edits(&transaction, &household.household_id)?;
                let card = if pending.is_empty() {
                    household.clone()
                } else {
                    edits::rebase(household.clone(), &pending)
                };
                write_household(&transaction, &card)?;
                summary.households += 1;
                // The page carries the household's registrations in force; they replace
                // what the phone held for it.
                transaction.execute(
                    "DELETE FROM server_income WHERE household_id = ?1",
                    [&household.household_id],
                )?;
            }
            for registration in &page.income_registrations {
                transaction.execute(
                    "INSERT OR REPLACE INTO server_income
                         (registration_id, household_id, year, quarter, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        registration.registration_id,
                        registration.household_id,
                        registration.year,
                        registration.quarter,
                        to_json(registration)?
                    ],
                )?;
            }
            for household_id in &page.removed_household_ids {
                summary.removed_households += transaction.execute(
                    "DELETE FROM households WHERE household_id = ?1",
                    [household_id],
                )? as u64;
                transaction.execute(
                    "DELETE FROM server_income WHERE household_id = ?1",
                    [household_id],
                )?;
                // Reassigned away: unsent drafts stay on the phone, flagged for hand-over
                // (需移交) and never pushed, so the cadre's work is not lost and not sent
                // under a household that is no longer theirs.
                transaction.execute(
                    "UPDATE outbox SET handover = 1 WHERE household_id = ?1",
                    [household_id],
                )?;
                // The household's PII leaves the phone; visits still waiting to go out stay
                // with their drafts.
                transaction.execute(
                    "DELETE FROM visits WHERE household_id = ?1
                       AND NOT EXISTS (SELECT 1 FROM outbox o
                                        WHERE o.subject_id = visits.visit_id)",
                    [household_id],
                )?;
            }
            for status in &page.visit_statuses {
                apply_visit_status(&transaction, status, &now_text)?;
                summary.visit_statuses += 1;
            }
        }
        // A full download says what is in scope, not what left it: a household the phone
        // held before and the snapshot lacks was reassigned away while the phone lagged, and
        // its drafts need the same hand-over as after an explicit removal.
        for household_id in &previous_ids {
            let still_here: bool = transaction.query_row(
                "SELECT EXISTS (SELECT 1 FROM households WHERE household_id = ?1)",
                [household_id],
                |row| row.get(0),
            )?;
            if !still_here {
                summary.removed_households += 1;
                transaction.execute(
                    "UPDATE outbox SET handover = 1 WHERE household_id = ?1",
                    [household_id],
                )?;
            }
        }
        meta_set(
            &transaction,
            meta_key::PENDING_CONFLICTS,
            &to_json(&checkpoint.pending_conflicts)?,
        )?;
        meta_set(&transaction, meta_key::CURSOR, checkpoint.cursor)?;
        meta_set(&transaction, meta_key::LAST_SYNC_AT, &now_text)?;
        observe_server(&transaction, checkpoint.server_hlc, checkpoint.server_time)?;
        transaction.commit()?;
        Ok(summary)
    }

    /// RESET: drop the replica and the cursor but KEEP the outbox, the user's own visit
    /// bodies, photos and uploads, then the next pull re-downloads the scope.
    pub fn reset_replica(&self) -> ClientResult<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        drop_replica(&transaction)?;
        transaction.execute("DELETE FROM meta WHERE key = ?1", [meta_key::CURSOR])?;
        transaction.commit()?;
        Ok(())
    }
}

fn migrate(connection: &mut Connection) -> ClientResult<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: usize = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(ClientError::corrupt(format!(
            "database schema version {applied} is newer than this app ({}); update the app",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        transaction.execute_batch(sql)?;
        // user_version cannot be bound as a parameter.
        transaction.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
    }
    transaction.commit()?;
    Ok(())
}

fn meta_get(connection: &Connection, key: &str) -> ClientResult<Option<String>> {
    Ok(connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?)
}

fn meta_set(connection: &Connection, key: &str, value: &str) -> ClientResult<()> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn read_u64_meta(connection: &Connection, key: &str, default: u64) -> ClientResult<u64> {
    match meta_get(connection, key)? {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| ClientError::corrupt(format!("meta {key} = {text:?}"))),
    }
}

/// Append one outbox entry with the next gap-free seq and the next HLC value. Must run
/// inside the transaction that writes the change itself.
fn append_outbox(
    transaction: &Transaction<'_>,
    kind: MutationKind,
    subject_id: &str,
    household_id: Option<&str>,
    payload_json: &str,
    now: OffsetDateTime,
) -> ClientResult<u64> {
    let seq = read_u64_meta(transaction, meta_key::NEXT_SEQ, 1)?;
    let last_hlc = Hlc::from_u64(read_u64_meta(transaction, meta_key::HLC, 0)?);
    let stamp = hlc::stamp(last_hlc, now).as_u64();
    transaction.execute(
        "INSERT INTO outbox (seq, mutation_id, hlc, kind, subject_id, household_id, payload,
                             created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, pii_seal_payload(?4, ?7, 'outbox/' || ?2), ?8)",
        params![
            to_sql_int(seq),
            uuid::Uuid::now_v7().to_string(),
            to_sql_int(stamp),
            kind.as_str(),
            subject_id,
            household_id,
            payload_json,
            format_time(now)
        ],
    )?;
    meta_set(transaction, meta_key::NEXT_SEQ, &(seq + 1).to_string())?;
    meta_set(transaction, meta_key::HLC, &stamp.to_string())?;
    Ok(seq)
}

/// Advance the stored HLC past the server's, inside the transaction that applies the
/// server's answer.
fn observe_server(
    transaction: &Transaction<'_>,
    server_hlc: u64,
    server_time: Option<OffsetDateTime>,
) -> ClientResult<()> {
    let last = Hlc::from_u64(read_u64_meta(transaction, meta_key::HLC, 0)?);
    let advanced = hlc::observe(last, server_hlc, server_time);
    if advanced != last {
        meta_set(transaction, meta_key::HLC, &advanced.as_u64().to_string())?;
    }
    Ok(())
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn write_household(transaction: &Transaction<'_>, household: &Household) -> ClientResult<()> {
    transaction.execute(
        "INSERT INTO households (household_id, head_name, village_name, body)
         VALUES (?1, ?2, ?3, pii_seal_card(?4))
         ON CONFLICT (household_id) DO UPDATE SET
            head_name = excluded.head_name, village_name = excluded.village_name,
            body = excluded.body",
        params![
            household.household_id,
            household.head_name,
            household.village_name,
            to_json(household)?
        ],
    )?;
    Ok(())
}

/// The household's card edits still in the outbox, in seq order.
fn pending_card_edits(
    transaction: &Transaction<'_>,
    household_id: &str,
) -> ClientResult<Vec<PendingEdit>> {
    let mut statement = transaction.prepare(
        "SELECT kind, pii_open(payload, 'outbox/' || mutation_id) FROM outbox
         WHERE household_id = ?1 AND handover = 0 AND kind IN (?2, ?3) ORDER BY seq",
    )?;
    let rows = statement
        .query_map(
            params![
                household_id,
                MutationKind::EditField.as_str(),
                MutationKind::AddMember.as_str()
            ],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.iter()
        .map(|(kind, payload)| {
            if kind == MutationKind::EditField.as_str() {
                Ok(PendingEdit::Field(from_json(payload, "outbox field edit")?))
            } else {
                let added: AddMemberPayload = from_json(payload, "outbox added member")?;
                Ok(PendingEdit::AddMember(added.member))
            }
        })
        .collect()
}

/// The registration in force for a household's quarter as this phone knows it, and whether
/// it was made on this phone: the phone's latest unsent one (it replaces the server's when
/// it arrives), else the server's as of the last pull (which may be another device's that
/// replaced this phone's), else this phone's latest sent one not yet pulled back.
fn income_in_force(
    transaction: &Transaction<'_>,
    household_id: &str,
    year: i32,
    quarter: u32,
) -> ClientResult<Option<(IncomeRegistration, bool)>> {
    let local = |state: IncomeState| -> ClientResult<Option<IncomeRegistration>> {
        let body: Option<String> = transaction
            .query_row(
                "SELECT body FROM income_registrations
                 WHERE household_id = ?1 AND year = ?2 AND quarter = ?3 AND state = ?4
                 ORDER BY rowid DESC LIMIT 1",
                params![household_id, year, quarter, state.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        body.map(|body| from_json(&body, "income registration body"))
            .transpose()
    };
    if let Some(unsent) = local(IncomeState::Unsent)? {
        return Ok(Some((unsent, true)));
    }
    let server: Option<(String, bool)> = transaction
        .query_row(
            "SELECT body, EXISTS (SELECT 1 FROM income_registrations mine
                                  WHERE mine.registration_id = server_income.registration_id)
             FROM server_income WHERE household_id = ?1 AND year = ?2 AND quarter = ?3",
            params![household_id, year, quarter],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((body, mine)) = server {
        return Ok(Some((
            from_json(&body, "server income registration")?,
            mine,
        )));
    }
    Ok(local(IncomeState::Sent)?.map(|sent| (sent, true)))
}

fn drop_replica(transaction: &Transaction<'_>) -> ClientResult<()> {
    transaction.execute("DELETE FROM households", [])?;
    // Whose conflicts they were goes with the replica; the next checkpoint says again.
    transaction.execute(
        "DELETE FROM meta WHERE key = ?1",
        [meta_key::PENDING_CONFLICTS],
    )?;
    transaction.execute("DELETE FROM server_income", [])?;
    // Visits known only from the server come back with the re-download; the user's own
    // bodies stay, because the outbox and `resubmit_visit` need them.
    transaction.execute("DELETE FROM visits WHERE body IS NULL", [])?;
    transaction.execute("UPDATE visits SET status = NULL", [])?;
    Ok(())
}

fn apply_visit_status(
    transaction: &Transaction<'_>,
    status: &VisitStatus,
    now_text: &str,
) -> ClientResult<()> {
    let local: Option<u32> = transaction
        .query_row(
            "SELECT revision FROM visits WHERE visit_id = ?1",
            [&status.visit_id],
            |row| row.get(0),
        )
        .optional()?;
    let has_pending_submit: bool = transaction.query_row(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE kind = ?1 AND subject_id = ?2)",
        params![MutationKind::SubmitVisit.as_str(), status.visit_id],
        |row| row.get(0),
    )?;
    let state = VisitState::from_review_state(status.state).as_str();
    let status_json = to_json(status)?;
    match decide_status_update(local, has_pending_submit, status.revision) {
        StatusDecision::Insert => {
            transaction.execute(
                "INSERT INTO visits (visit_id, household_id, revision, state, status, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    status.visit_id,
                    status.household_id,
                    status.revision,
                    state,
                    status_json,
                    now_text
                ],
            )?;
        }
        StatusDecision::Update => {
            transaction.execute(
                "UPDATE visits SET revision = ?2, state = ?3, status = ?4, rejection = NULL,
                                   updated_at = ?5
                 WHERE visit_id = ?1",
                params![
                    status.visit_id,
                    status.revision,
                    state,
                    status_json,
                    now_text
                ],
            )?;
        }
        StatusDecision::Ignore => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_model::codes::{VisitMode, VisitType};
    use fieldsync_model::visit::WellbeingCheck;
    use time::macros::datetime;

    fn sample_visit(visit_id: &str) -> Visit {
        Visit {
            visit_id: visit_id.to_owned(),
            revision: 1,
            supersedes_revision: 0,
            household_id: "hh-1".into(),
            mode: VisitMode::InPerson,
            exception_reason: None,
            visit_type: VisitType::Routine,
            checkin_at: datetime!(2026-03-05 08:00 UTC),
            checkout_at: datetime!(2026-03-05 08:30 UTC),
            observed_situation: "家中一切正常, 养猪三头".into(),
            plan_progress: String::new(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: vec![],
            wellbeing: WellbeingCheck::default(),
            proposed_changes: vec![],
            photo_ids: vec![],
            gps: None,
            recorded_at_device: datetime!(2026-03-05 08:31 UTC),
        }
    }

    fn sample_photo(photo_id: &str, visit_id: &str) -> PhotoWrite {
        PhotoWrite {
            record: PhotoRecord {
                photo_id: photo_id.to_owned(),
                visit_id: visit_id.to_owned(),
                sha256: "ab".repeat(32),
                size_bytes: 10,
                mime_type: "image/jpeg".into(),
                subject: None,
                captured_at_device: None,
                in_app_camera: true,
            },
            local_path: PathBuf::from("photos/x"),
        }
    }

    #[test]
    fn upgrading_to_server_income_drops_the_cursor_and_keeps_the_outbox_meta() {
        // A phone on schema 3 with a cursor: its households were pulled before pulls
        // carried registrations, so the upgrade makes the next pull a full download.
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("client.db");
        {
            let connection = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                connection.execute_batch(sql).unwrap();
            }
            connection.execute_batch("PRAGMA user_version = 3").unwrap();
            connection
                .execute(
                    "INSERT INTO meta (key, value) VALUES (?1, 'v2:t1=40'), (?2, '7')",
                    [meta_key::CURSOR, meta_key::NEXT_SEQ],
                )
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
        assert_eq!(store.meta_get(meta_key::CURSOR).unwrap(), None);
        assert_eq!(
            store.meta_get(meta_key::NEXT_SEQ).unwrap().as_deref(),
            Some("7")
        );
        assert!(store.server_income_registrations(None).unwrap().is_empty());
    }

    /// A pulled card with canary numbers, then a phone edit of its phone number: neither
    /// number is in the database file or its WAL; both read back; another key fails loudly.
    #[test]
    fn card_numbers_and_card_edits_are_sealed_in_the_phone_database() {
        use fieldsync_model::codes::{
            Disability, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation,
            Schooling, Sex,
        };
        use fieldsync_model::household::Member;
        use fieldsync_model::register::FieldTarget;
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("client.db");
        let store = Store::open(&path).unwrap();
        let canary_id = "52273119800101991X";
        let card = Household {
            household_id: "hh-canary".into(),
            national_household_number: "522731000001".into(),
            head_name: "金丝雀".into(),
            township_id: "t".into(),
            village_id: "v".into(),
            village_name: "石板村".into(),
            address: String::new(),
            phone: "13900990077".into(),
            attribute: HouseholdAttribute::General,
            main_cause: PovertyCause::Illness,
            secondary_causes: vec![],
            housing_danger_level: None,
            location: None,
            members: vec![Member {
                member_id: "m-1".into(),
                name: "金丝雀".into(),
                relation: Relation::Head,
                sex: Sex::Male,
                birth_date: "1980-01-01".into(),
                id_number: canary_id.into(),
                health: Health::Healthy,
                labour_capacity: LabourCapacity::Ordinary,
                schooling: Schooling::NotInSchool,
                disability: Disability::None,
                disability_grade: 0,
                has_medical_insurance: true,
                has_serious_illness_insurance: false,
                has_pension_insurance: false,
                removed: false,
            }],
            measures: vec![],
            server_seq: 1,
            field_seqs: Default::default(),
        };
        let pages = [PulledPage {
            households: vec![card.clone()],
            visit_statuses: vec![],
            removed_household_ids: vec![],
            income_registrations: vec![],
        }];
        store
            .apply_checkpoint(&Checkpoint {
                pages: &pages,
                cursor: "c1",
                server_time: None,
                server_hlc: 0,
                replace_replica: true,
                pending_conflicts: &[],
                now: datetime!(2026-03-05 08:00 UTC),
            })
            .unwrap();
        store
            .write_card_edit(
                "hh-canary",
                CardEdit::Field {
                    target: FieldTarget::Household,
                    field: "phone".into(),
                    value: serde_json::json!("13900990088"),
                },
                datetime!(2026-03-05 08:01 UTC),
            )
            .unwrap();
        let read = store.household("hh-canary").unwrap().unwrap();
        assert_eq!(read.phone, "13900990088");
        assert_eq!(read.members[0].id_number, canary_id);
        let pending = store.outbox_entries().unwrap();
        assert_eq!(pending.len(), 1);
        assert!(
            pending[0].payload_json.contains("13900990088"),
            "opened for the push"
        );
        for file in ["client.db", "client.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            for canary in ["13900990077", "13900990088", canary_id] {
                assert!(
                    !bytes
                        .windows(canary.len())
                        .any(|window| window == canary.as_bytes()),
                    "{canary} in plain text in {file}"
                );
            }
        }
        drop(store);
        let stranger = Store::open_with_key(&path, &PhoneKey::from_bytes([5; 32])).unwrap();
        let refused = stranger.household("hh-canary").unwrap_err().to_string();
        assert!(refused.contains("not this phone's key"), "{refused}");
    }

    #[test]
    fn migrations_are_idempotent_on_reopen() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("client.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap() as usize, MIGRATIONS.len());
        store.meta_set("probe", "kept").unwrap();
        drop(store);
        let reopened = Store::open(&path).unwrap();
        assert_eq!(
            reopened.schema_version().unwrap() as usize,
            MIGRATIONS.len()
        );
        assert_eq!(reopened.meta_get("probe").unwrap().as_deref(), Some("kept"));
    }

    #[test]
    fn a_failure_inside_the_transaction_leaves_no_visit_no_outbox_and_no_seq_gap() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("client.db")).unwrap();
        let visit_id = "0190d7a8-0000-7000-8000-000000000001";
        // The second photo reuses the first photo's id, so its INSERT fails after the visit
        // row, the SubmitVisit entry and the first AddPhoto entry were already written.
        let broken = VisitWrite {
            visit: sample_visit(visit_id),
            expected_previous_revision: None,
            photos: vec![
                sample_photo("0190d7a8-0000-7000-8000-0000000000aa", visit_id),
                sample_photo("0190d7a8-0000-7000-8000-0000000000aa", visit_id),
            ],
            now: datetime!(2026-03-05 08:31 UTC),
        };
        assert!(store.record_visit_revision(&broken).is_err());
        assert!(store.list_visits().unwrap().is_empty());
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert_eq!(store.meta_get(meta_key::NEXT_SEQ).unwrap(), None);

        let good = VisitWrite {
            photos: vec![sample_photo(
                "0190d7a8-0000-7000-8000-0000000000aa",
                visit_id,
            )],
            ..broken
        };
        assert_eq!(store.record_visit_revision(&good).unwrap(), vec![1, 2]);
        let entries = store.outbox_entries().unwrap();
        assert_eq!(
            entries.iter().map(|entry| entry.kind).collect::<Vec<_>>(),
            vec![MutationKind::SubmitVisit, MutationKind::AddPhoto]
        );
        assert!(entries[0].hlc < entries[1].hlc, "HLC grows per mutation");
    }

    #[test]
    fn a_push_ack_removes_only_covered_entries_and_marks_the_visit_submitted() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("client.db")).unwrap();
        let visit_id = "0190d7a8-0000-7000-8000-000000000001";
        let write = VisitWrite {
            visit: sample_visit(visit_id),
            expected_previous_revision: None,
            photos: vec![sample_photo(
                "0190d7a8-0000-7000-8000-0000000000aa",
                visit_id,
            )],
            now: datetime!(2026-03-05 08:31 UTC),
        };
        store.record_visit_revision(&write).unwrap();
        store
            .open_batch("batch-1", 1, 2, datetime!(2026-03-05 09:00 UTC))
            .unwrap();
        // The server processed seq 1 only (e.g. it stopped at a transient error).
        let ack = PushAck {
            results: vec![(1, PushOutcome::Applied)],
            last_processed_seq: 1,
            server_time: None,
            receipt: "receipt-1".into(),
            server_hlc: 0,
        };
        let summary = store
            .apply_push_ack("batch-1", &ack, datetime!(2026-03-05 09:00 UTC))
            .unwrap();
        assert_eq!(summary.removed_from_outbox, 1);
        let remaining: Vec<u64> = store
            .outbox_entries()
            .unwrap()
            .iter()
            .map(|entry| entry.seq)
            .collect();
        assert_eq!(remaining, vec![2]);
        assert_eq!(
            store.meta_get(meta_key::LAST_RECEIPT).unwrap().as_deref(),
            Some("receipt-1")
        );
        let visit = store.visit(visit_id).unwrap().unwrap();
        assert_eq!(visit.state, VisitState::Submitted);
        assert!(store.load_sync_state().unwrap().open_batch.is_none());
    }
}
