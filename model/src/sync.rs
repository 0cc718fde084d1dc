//! Sync vocabulary shared by server and client core: mutations, their outcomes and the
//! machine-readable rejection codes.

use crate::household::Member;
use crate::income::IncomeRegistration;
use crate::register::FieldEdit;
use crate::visit::{PhotoRecord, Visit};

/// What one outbox entry does.
// A visit is much larger than the other payloads; batches are small and short-lived, so
// boxing would only add noise at every construction site.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MutationPayload {
    SubmitVisit(Visit),
    AddPhoto(PhotoRecord),
    RegisterIncome(IncomeRegistration),
    /// Set one household or member field (a register write, merged last-writer-wins).
    EditField(FieldEdit),
    /// Add a member row (add-wins; removal is the member's `removed` field).
    AddMember {
        household_id: String,
        member: Member,
    },
}

impl MutationPayload {
    /// The household the mutation touches, when it names one directly (a photo names its
    /// visit instead).
    pub fn household_id(&self) -> Option<&str> {
        match self {
            Self::SubmitVisit(visit) => Some(&visit.household_id),
            Self::RegisterIncome(registration) => Some(&registration.household_id),
            Self::EditField(edit) => Some(&edit.household_id),
            Self::AddMember { household_id, .. } => Some(household_id),
            Self::AddPhoto(_) => None,
        }
    }
}

/// One outbox entry as the server receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub seq: u64,
    pub mutation_id: String,
    pub hlc: u64,
    pub payload: MutationPayload,
}

/// Permanent reasons a mutation is refused. Each is final: the phone must not retry it
/// unchanged, and the server advances past it so one bad record never blocks the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// The household is not among the caller's paired households.
    HouseholdOutOfScope,
    /// The household id is unknown to the server.
    UnknownHousehold,
    /// A photo names a visit the server has not seen from this caller.
    UnknownVisit,
    /// The record failed a structural check.
    InvalidRecord,
    /// A revision arrived that is not newer than the stored one, with different content.
    StaleRevision,
    /// The same id was reused for a different record.
    IdReused,
}

impl RejectCode {
    /// Stable snake_case code sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HouseholdOutOfScope => "household_out_of_scope",
            Self::UnknownHousehold => "unknown_household",
            Self::UnknownVisit => "unknown_visit",
            Self::InvalidRecord => "invalid_record",
            Self::StaleRevision => "stale_revision",
            Self::IdReused => "id_reused",
        }
    }
}

/// Result of one mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationOutcome {
    Applied,
    Duplicate,
    ConflictRecorded,
    Rejected { code: RejectCode, message: String },
}
