//! The Pull use case: open a pull (store the riding heartbeat, read the cursor, check it
//! against the change log's bounds, or answer RESET), then read the caller's scope page by
//! page and end with the caller's edits that wait in conflicts. The gRPC adapter only
//! translates to and from the wire.

use fieldsync_model::access::{Channel, SensitiveField, channel_disclosure, disclose_household};
use fieldsync_model::codes::Role;
use fieldsync_model::register::PendingConflict;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{CursorError, CursorOutOfRange, Heartbeat, Principal, PullChanges, ScopeCursor};

/// How a pull starts: served from a checked cursor, or answered with RESET (the phone
/// downloads its scope anew, keeping its outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullStart {
    Serve(ScopeCursor),
    Reset(&'static str),
}

/// Open a pull from the phone's opaque cursor text. The heartbeat is stored before the
/// answer (so the console never lags a finished sync), but alongside the bounds read rather
/// than before it: a pull waits for one store round trip less.
pub async fn open(
    state: &AppState,
    principal: &Principal,
    cursor_text: &str,
    heartbeat: Option<Heartbeat>,
) -> Result<PullStart, ServiceError> {
    let record_heartbeat = async {
        if let Some(heartbeat) = heartbeat {
            super::record_heartbeat(state, principal, heartbeat).await;
        }
    };
    let ((), bounds) = tokio::join!(record_heartbeat, state.store.change_log_bounds());
    let bounds = bounds?;
    // The cursor is opaque to phones: `v2:<township>=<seq>,...` (see `ScopeCursor`).
    // Anything else is RESET, and so is a plain decimal: the single global sequence of
    // servers before per-scope sequences, which every phone sends once after the upgrade
    // and then re-downloads its scope (keeping its outbox). An empty cursor is a fresh
    // download and is always served.
    let cursor = match ScopeCursor::parse(cursor_text) {
        Ok(cursor) => cursor,
        Err(CursorError::Legacy) => {
            return Ok(PullStart::Reset(
                "cursor predates per-scope sequences; pull the scope again",
            ));
        }
        Err(CursorError::UnknownVersion | CursorError::Malformed(_)) => {
            return Ok(PullStart::Reset(
                "cursor is not one this server issued; pull the scope again",
            ));
        }
    };
    Ok(match bounds.check(&cursor) {
        Ok(()) => {
            audit_auditor_pull(state, principal, cursor_text).await?;
            PullStart::Serve(cursor)
        }
        // A position below its scope's floor predates tombstones that were compacted away:
        // the phone may still hold a household it lost, so it must download its scope anew.
        Err(CursorOutOfRange::BelowFloor { .. }) => {
            PullStart::Reset("cursor is older than the tombstone horizon; pull the scope again")
        }
        // A position the scope never issued yet: the server was restored from an older
        // backup, and waiting would silently skip everything written since.
        Err(CursorOutOfRange::AheadOfServer { .. }) => PullStart::Reset(
            "cursor is ahead of this server (restored from a backup?); pull the scope again",
        ),
    })
}

/// Audit action of a pull by an auditor (审计员).
pub const ACTION_AUDITOR_PULL: &str = "auditor_pull";

/// An auditor's reads are audited (DESIGN §7), over gRPC as on the console (where every
/// page they open is an `auditor_view` record): one record per pull, before anything is
/// served. A failure to record refuses the pull rather than leave it unseen.
async fn audit_auditor_pull(
    state: &AppState,
    principal: &Principal,
    cursor_text: &str,
) -> Result<(), ServiceError> {
    if principal.role != Role::Auditor {
        return Ok(());
    }
    let from = if cursor_text.is_empty() {
        "the start".to_owned()
    } else {
        format!("cursor {cursor_text}")
    };
    state
        .store
        .append_audit(crate::auth::audit_record(
            principal,
            ACTION_AUDITOR_PULL,
            &principal.area_id,
            cursor_text,
            format!("审计员通过 gRPC 拉取辖区数据 (auditor pulled their scope from {from})"),
            state.clock.now(),
        ))
        .await?;
    Ok(())
}

/// One page of the caller's scope from `cursor`, with ID numbers and phones disclosed as
/// the caller's role allows over gRPC.
pub async fn page(
    state: &AppState,
    principal: &Principal,
    cursor: &ScopeCursor,
    limit: u32,
) -> Result<PullChanges, ServiceError> {
    let mut changes = state.store.pull_changes(principal, cursor, limit).await?;
    // A cadre's pull scope is exactly their active pairings (primary or helper), so every
    // household in it is their own; staff scopes are areas, where nothing is their own.
    let own_paired_household = principal.role == Role::Cadre;
    let disclosure_of = |field| {
        channel_disclosure(
            principal.role,
            field,
            Channel::GrpcPull,
            own_paired_household,
            false,
        )
    };
    let id_numbers = disclosure_of(SensitiveField::IdNumber);
    let phones = disclosure_of(SensitiveField::Phone);
    for household in &mut changes.households {
        disclose_household(household, id_numbers, phones);
    }
    Ok(changes)
}

/// The caller's own field edits that wait in open conflict records for a township
/// supervisor: every pull tells the phone (issue 14 §4), so the cadre learns that an edit
/// is not settled even though the card may show the other value.
pub async fn pending_conflicts(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<PendingConflict>, ServiceError> {
    Ok(state.store.pending_conflicts(&principal.user_id).await?)
}
