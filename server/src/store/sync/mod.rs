//! The sync area of the store: push (dedupe by device sequence and batch id, register
//! writes merged by HLC, conflict records), pull (per-township change-log sequences, the
//! opaque cursor and its bounds), change-log compaction, device heartbeats and conflict
//! resolution. Its SQLite impl is in `sqlite.rs`; the SQL it runs is still in the SQLite core
//! (`store/sqlite.rs`, `store/sqlite/pull.rs`, `store/sqlite/evidence.rs`), which the other
//! areas share. The checks every backend passes are in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::Household;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::register::{FieldTarget, PendingConflict, RegisterWrite, Stamp};
use fieldsync_model::review::VisitStatus;
use fieldsync_model::sync::{MutationOutcome, MutationPayload, RejectCode};
use time::OffsetDateTime;

use crate::store::{FlagTarget, Principal, StoreResult};

/// What the sync service decided for one mutation before storage: apply it, or reject it
/// permanently (validation or scope) while still consuming its seq.
// A visit is much larger than the other payloads; batches are small and short-lived, so
// boxing would only add noise at every construction site.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum PushAction {
    Apply(MutationPayload),
    Reject { code: RejectCode, message: String },
}

/// One mutation of a batch, pre-checked by the sync service.
#[derive(Debug, Clone)]
pub struct PushEntry {
    pub seq: u64,
    pub mutation_id: String,
    pub hlc: u64,
    pub action: PushAction,
}

/// A batch to apply atomically.
#[derive(Debug, Clone)]
pub struct PushBatch {
    pub device_id: String,
    pub user_id: String,
    pub batch_id: String,
    /// Hex SHA-256 of the request's content; a reused batch id with another fingerprint is
    /// refused with [`StoreError::BatchReused`].
    pub fingerprint: String,
    pub entries: Vec<PushEntry>,
    pub received_at: OffsetDateTime,
}

/// Result of a batch: one outcome per entry, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PushResult {
    pub outcomes: Vec<(u64, MutationOutcome)>,
    pub last_processed_seq: u64,
}

/// Changes in a caller's scope after a cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullChanges {
    pub households: Vec<Household>,
    pub visit_statuses: Vec<VisitStatus>,
    /// Households that left the caller's scope (reassigned); the phone purges them.
    pub removed_household_ids: Vec<String>,
    /// For every household in `households`: the 季度收入登记 in force, the latest to arrive
    /// for each (year, quarter), by year and quarter. The phone replaces what it held for
    /// those households.
    pub income_registrations: Vec<IncomeRegistration>,
    /// Cursor to resume from: per scope of the caller, the highest scope sequence included
    /// (or that scope's newest sequence when nothing more of it is in the caller's view).
    pub next_cursor: ScopeCursor,
    /// True when more changes remain after `next_cursor` in any scope.
    pub has_more: bool,
}

/// The evidence flag work a push carries into its write transaction
/// ([`Store::apply_push_with_flags`]).
#[derive(Debug, Clone)]
pub struct PushFlagWork {
    pub targets: Vec<FlagTarget>,
    pub settings: fieldsync_model::evidence::EvidenceSettings,
}

/// One conflict record of a township's queue, with the names a reviewer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictRecord {
    /// Stable identity ([`fieldsync_model::register::ConflictPair::key`]).
    pub conflict_key: String,
    pub household_id: String,
    pub head_name: String,
    pub village_name: String,
    pub target: FieldTarget,
    /// The member's name when the target is a member.
    pub member_name: Option<String>,
    pub field: String,
    /// The write with the smaller stamp.
    pub first: RegisterWrite,
    pub first_author_name: String,
    /// The name `first`'s device gave at its latest login (the phone's model), or empty.
    pub first_device_name: String,
    /// The write with the greater stamp (the last-writer-wins winner of the pair).
    pub second: RegisterWrite,
    pub second_author_name: String,
    pub second_device_name: String,
    /// What the register shows now: usually `second`, or a later write.
    pub current: Option<RegisterWrite>,
    pub created_at: OffsetDateTime,
}

/// A reviewer's choice for a conflicting register: stored as an ordinary register write by
/// the console device, so it syncs down to every phone like any other edit.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictResolution {
    pub conflict_key: String,
    /// The reviewer's township; a conflict elsewhere is answered as not found.
    pub township_id: String,
    pub value: serde_json::Value,
    pub reviewer_user_id: String,
    /// The stamp of the resolving write; the store moves its HLC past the register's current
    /// write if needed, so the resolution always takes effect.
    pub stamp: Stamp,
    pub resolved_at: OffsetDateTime,
}

/// The small status report a phone sends with every sync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    pub unsent_mutations: u64,
    pub pending_uploads: u64,
    pub oldest_unsent_at: Option<OffsetDateTime>,
    pub device_time: Option<OffsetDateTime>,
    pub last_error: String,
    pub app_version: String,
}

/// The latest heartbeat of one device, with its cadre's name.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceBacklog {
    pub device_id: String,
    /// The name the device gave at its latest login, or empty.
    pub device_name: String,
    pub user_id: String,
    pub cadre_name: String,
    pub heartbeat: Heartbeat,
    /// Server time when the heartbeat arrived.
    pub last_seen_at: OffsetDateTime,
}

/// What one compaction of the change log did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLogCompaction {
    pub superseded_deleted: u64,
    pub tombstones_deleted: u64,
    /// The floor of every scope that has one, after this compaction.
    pub floors: BTreeMap<String, i64>,
}

/// The range of cursors a pull can continue from in one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeBounds {
    /// The highest scope sequence of an expired tombstone (0 before any expired).
    pub floor_seq: i64,
    /// The newest scope sequence ever issued (0 for a scope with no change yet).
    pub newest_seq: i64,
}

/// The range of cursors a pull can continue from, per scope (township).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeLogBounds {
    pub scopes: BTreeMap<String, ScopeBounds>,
}

impl ChangeLogBounds {
    /// The bounds of one scope; a scope never written has floor and newest 0.
    pub fn of(&self, scope_id: &str) -> ScopeBounds {
        self.scopes.get(scope_id).copied().unwrap_or_default()
    }

    /// Whether every scope of `cursor` can continue incrementally: a non-zero position below
    /// its scope's floor, or any position above its scope's newest sequence, cannot. A scope
    /// missing from the cursor starts at 0, which is always served.
    pub fn check(&self, cursor: &ScopeCursor) -> Result<(), CursorOutOfRange> {
        for (scope_id, seq) in cursor.iter() {
            let bounds = self.of(scope_id);
            if seq > 0 && seq < bounds.floor_seq {
                return Err(CursorOutOfRange::BelowFloor {
                    scope_id: scope_id.to_owned(),
                });
            }
            if seq > bounds.newest_seq {
                return Err(CursorOutOfRange::AheadOfServer {
                    scope_id: scope_id.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Why a parsable cursor cannot be served incrementally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorOutOfRange {
    /// Below the scope's floor: the phone may have missed a removal that was compacted away.
    BelowFloor { scope_id: String },
    /// Beyond the newest sequence the scope ever issued (a server restored from a backup, or
    /// a scope this server does not know).
    AheadOfServer { scope_id: String },
}

/// Why a pull cursor could not be parsed. Every case answers the pull with RESET.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// A plain decimal: the single global sequence of servers before per-scope sequences.
    #[error("cursor from before per-scope sequences")]
    Legacy,
    #[error("unknown cursor version")]
    UnknownVersion,
    #[error("malformed cursor: {0}")]
    Malformed(&'static str),
}

/// A pull position: per scope (township), the highest scope sequence the phone has applied.
///
/// Text form (opaque to phones, which store it and send it back):
/// `v2:<scope_id>=<seq>[,<scope_id>=<seq>...]`, scopes in sorted order, with `%`, `,` and
/// `=` in a scope id written as `%25`, `%2C` and `%3D`. The empty string is a fresh download;
/// a scope missing from the cursor starts at 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeCursor {
    seqs: BTreeMap<String, i64>,
}

impl ScopeCursor {
    const PREFIX: &'static str = "v2:";

    pub fn parse(text: &str) -> Result<ScopeCursor, CursorError> {
        if text.is_empty() {
            return Ok(ScopeCursor::default());
        }
        let Some(body) = text.strip_prefix(Self::PREFIX) else {
            if text.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(CursorError::Legacy);
            }
            return Err(match text.split_once(':') {
                Some((version, _))
                    if version.len() > 1
                        && version.starts_with('v')
                        && version[1..].bytes().all(|byte| byte.is_ascii_digit()) =>
                {
                    CursorError::UnknownVersion
                }
                _ => CursorError::Malformed("no version prefix"),
            });
        };
        let mut cursor = ScopeCursor::default();
        if body.is_empty() {
            return Ok(cursor);
        }
        for entry in body.split(',') {
            let (scope, seq) = entry
                .split_once('=')
                .ok_or(CursorError::Malformed("an entry without '='"))?;
            let scope = unescape_scope(scope)?;
            if scope.is_empty() {
                return Err(CursorError::Malformed("an empty scope id"));
            }
            if seq.is_empty() || !seq.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(CursorError::Malformed("a sequence that is not a decimal"));
            }
            let seq = seq
                .parse::<i64>()
                .map_err(|_| CursorError::Malformed("a sequence out of range"))?;
            if cursor.seqs.insert(scope, seq).is_some() {
                return Err(CursorError::Malformed("a scope named twice"));
            }
        }
        Ok(cursor)
    }

    pub fn encode(&self) -> String {
        let entries: Vec<String> = self
            .seqs
            .iter()
            .map(|(scope, seq)| format!("{}={seq}", escape_scope(scope)))
            .collect();
        format!("{}{}", Self::PREFIX, entries.join(","))
    }

    /// The position in one scope; 0 (start of the scope) when the cursor does not name it.
    pub fn get(&self, scope_id: &str) -> i64 {
        self.seqs.get(scope_id).copied().unwrap_or(0)
    }

    pub fn set(&mut self, scope_id: &str, seq: i64) {
        self.seqs.insert(scope_id.to_owned(), seq);
    }

    /// The scopes the cursor names, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.seqs.iter().map(|(scope, seq)| (scope.as_str(), *seq))
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

fn escape_scope(scope: &str) -> String {
    let mut escaped = String::with_capacity(scope.len());
    for character in scope.chars() {
        match character {
            '%' => escaped.push_str("%25"),
            ',' => escaped.push_str("%2C"),
            '=' => escaped.push_str("%3D"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn unescape_scope(text: &str) -> Result<String, CursorError> {
    let mut scope = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find('%') {
        scope.push_str(&rest[..index]);
        let code = rest.get(index + 1..index + 3);
        scope.push(match code {
            Some("25") => '%',
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(CursorError::Malformed("a bad escape in a scope id")),
        });
        rest = &rest[index + 3..];
    }
    scope.push_str(rest);
    Ok(scope)
}

/// Storage of push, pull, the change log, heartbeats and conflicts. Every method is a
/// complete unit of work.
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Household id and author of a stored visit (any revision), if it exists.
    async fn visit_owner(&self, visit_id: &str) -> StoreResult<Option<(String, String)>>;
    /// Apply a pre-checked batch atomically: dedupe on (device, seq) and on batch id, insert
    /// records, advance the device's last processed seq, and log changes for pull.
    async fn apply_push(&self, batch: PushBatch) -> StoreResult<PushResult>;
    /// [`Store::apply_push`], and in the same write transaction the evidence flags of what
    /// the batch stored, as [`crate::evidence::refresh_after_push_in`] says (issue 11 §2: a
    /// push is one durable commit). Failing to compute flags never fails the push: the flag
    /// work is discarded (logged) and the batch still commits.
    async fn apply_push_with_flags(
        &self,
        batch: PushBatch,
        flags: PushFlagWork,
    ) -> StoreResult<PushResult>;
    /// Changes visible to the principal after `cursor`, at most `limit` change entries in
    /// all. Each scope (township) of the principal is read in scope-sequence order; a scope
    /// the cursor does not name starts at 0. The next cursor names exactly the principal's
    /// scopes: the townships of its households now, plus those of tombstones addressed to it.
    async fn pull_changes(
        &self,
        principal: &Principal,
        cursor: &ScopeCursor,
        limit: u32,
    ) -> StoreResult<PullChanges>;
    /// How many write transactions this store has committed since it was opened: what the
    /// durability of an acknowledgement costs (tests pin one per push).
    fn committed_writes(&self) -> u64;
    /// Every write applied to one register, in server order.
    async fn register_history(
        &self,
        household_id: &str,
        target: &FieldTarget,
        field: &str,
    ) -> StoreResult<Vec<RegisterWrite>>;
    /// The greatest HLC of any stored register write (the server HLC starts past it after a
    /// restart), or [`Hlc::ZERO`].
    async fn max_register_hlc(&self) -> StoreResult<Hlc>;
    /// Unresolved conflict records of a township, oldest first.
    async fn open_conflicts(&self, township_id: &str) -> StoreResult<Vec<ConflictRecord>>;
    /// The user's own edits that are one side of an unresolved conflict record, oldest
    /// first, at most 100: what the pull tells their phones is waiting for a supervisor.
    async fn pending_conflicts(&self, user_id: &str) -> StoreResult<Vec<PendingConflict>>;
    /// Resolve a conflict in one transaction: write the chosen value to the register as an
    /// ordinary write (logged for pull), then mark every open conflict of that register
    /// resolved. Returns the stamp the write was stored with. `NotFound` for an unknown key,
    /// a conflict outside the township or one already resolved; `InvalidValue` when the
    /// value breaks the field's rules.
    async fn resolve_conflict(&self, resolution: ConflictResolution) -> StoreResult<Stamp>;
    /// Shrink the change log: delete entries superseded by a later entry for the same record
    /// (always safe), and tombstones written before `tombstones_before` (the horizon). In
    /// each scope, the highest deleted tombstone sequence becomes the scope's floor: a cursor
    /// below it may have missed a removal and must RESET.
    async fn compact_change_log(
        &self,
        tombstones_before: OffsetDateTime,
    ) -> StoreResult<ChangeLogCompaction>;
    /// Per scope, the change-log floor (0 before any tombstone expired; see
    /// [`Store::compact_change_log`]) and the newest scope sequence ever issued. A cursor
    /// outside `[floor, newest]` (0 excepted) in any scope cannot be served incrementally
    /// ([`ChangeLogBounds::check`]).
    async fn change_log_bounds(&self) -> StoreResult<ChangeLogBounds>;
    /// Keep the latest heartbeat of a device (upsert). A heartbeat that repeats the stored
    /// one (same counts, error, app version and device clock offset) less than a minute
    /// after it was stored is not written again: the phone sends one with every pull, and
    /// a durable write per pull would make every sync wait for the disk.
    async fn record_heartbeat(
        &self,
        device_id: &str,
        user_id: &str,
        heartbeat: Heartbeat,
        server_time: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Latest heartbeats of the township's cadres' devices, oldest unsent data first
    /// (devices with nothing unsent last).
    async fn device_backlog(&self, township_id: &str) -> StoreResult<Vec<DeviceBacklog>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_in_their_text_form() {
        let mut cursor = ScopeCursor::default();
        assert_eq!(ScopeCursor::parse("").expect("empty"), cursor);
        assert_eq!(cursor.encode(), "v2:");
        assert_eq!(ScopeCursor::parse("v2:").expect("no scopes"), cursor);
        cursor.set("township-2", 7);
        cursor.set("township-1", 12);
        let text = cursor.encode();
        assert_eq!(text, "v2:township-1=12,township-2=7");
        assert_eq!(ScopeCursor::parse(&text).expect("parse"), cursor);
        assert_eq!(cursor.get("township-1"), 12);
        assert_eq!(cursor.get("township-3"), 0, "a missing scope starts at 0");

        let mut odd = ScopeCursor::default();
        odd.set("a,b=c%d 镇", 3);
        let text = odd.encode();
        assert_eq!(text, "v2:a%2Cb%3Dc%25d 镇=3");
        assert_eq!(ScopeCursor::parse(&text).expect("escaped"), odd);
    }

    #[test]
    fn cursors_the_server_never_issued_are_refused() {
        assert_eq!(ScopeCursor::parse("42"), Err(CursorError::Legacy));
        assert_eq!(ScopeCursor::parse("0"), Err(CursorError::Legacy));
        assert_eq!(
            ScopeCursor::parse("v3:t=1"),
            Err(CursorError::UnknownVersion)
        );
        for garbage in [
            "-5",
            "not-a-cursor",
            "v2:t",
            "v2:=3",
            "v2:t=",
            "v2:t=-1",
            "v2:t=+1",
            "v2:t=1,",
            "v2:t=1,t=2",
            "v2:t=99999999999999999999",
            "v2:t%2=1",
            "v2:t%41=1",
            "V2:t=1",
        ] {
            assert!(
                matches!(ScopeCursor::parse(garbage), Err(CursorError::Malformed(_))),
                "{garbage:?} -> {:?}",
                ScopeCursor::parse(garbage)
            );
        }
    }

    #[test]
    fn bounds_refuse_positions_below_the_floor_or_ahead_of_the_server() {
        let bounds = ChangeLogBounds {
            scopes: BTreeMap::from([
                (
                    "t1".to_owned(),
                    ScopeBounds {
                        floor_seq: 5,
                        newest_seq: 10,
                    },
                ),
                (
                    "t2".to_owned(),
                    ScopeBounds {
                        floor_seq: 0,
                        newest_seq: 3,
                    },
                ),
            ]),
        };
        let cursor = |entries: &[(&str, i64)]| {
            let mut cursor = ScopeCursor::default();
            for (scope, seq) in entries {
                cursor.set(scope, *seq);
            }
            cursor
        };
        assert_eq!(bounds.check(&ScopeCursor::default()), Ok(()));
        assert_eq!(bounds.check(&cursor(&[("t1", 5), ("t2", 3)])), Ok(()));
        assert_eq!(
            bounds.check(&cursor(&[("t1", 0), ("t2", 0)])),
            Ok(()),
            "a scope at 0 is a fresh download of that scope"
        );
        assert_eq!(
            bounds.check(&cursor(&[("t1", 4), ("t2", 3)])),
            Err(CursorOutOfRange::BelowFloor {
                scope_id: "t1".into()
            })
        );
        assert_eq!(
            bounds.check(&cursor(&[("t1", 10), ("t2", 4)])),
            Err(CursorOutOfRange::AheadOfServer {
                scope_id: "t2".into()
            })
        );
        assert_eq!(
            bounds.check(&cursor(&[("t9", 1)])),
            Err(CursorOutOfRange::AheadOfServer {
                scope_id: "t9".into()
            }),
            "a scope the server never wrote has issued nothing"
        );
    }
}
