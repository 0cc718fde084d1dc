//! Plain, wire-neutral records that cross module boundaries inside the client core: what the
//! transport hands to the sync engine and what the sync engine hands to the store. They use
//! `fieldsync_model` types only, so neither the store nor the engine ever sees protobuf.

use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::register::PendingConflict;
use fieldsync_model::review::VisitStatus;
use fieldsync_model::sync::Mutation;
use time::OffsetDateTime;

/// What the phone sends to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device_id: String,
    pub device_name: String,
}

/// The small health report that rides on every push and pull, so a supervisor can see a
/// phone sitting on old unsent data before the phone is lost (DESIGN §4, console view).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    pub unsent_mutations: u64,
    pub pending_uploads: u64,
    /// When the oldest unsent outbox entry was saved; `None` when nothing is unsent.
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_unsent_at: Option<OffsetDateTime>,
    /// The phone's wall clock when the heartbeat was taken, to spot wrong clocks.
    #[serde(with = "time::serde::rfc3339::option")]
    pub device_time: Option<OffsetDateTime>,
    pub last_error: String,
}

/// What the server said about the user at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginGrant {
    pub token: String,
    pub user_id: String,
    pub display_name: String,
    pub role: Option<Role>,
    pub area_id: String,
    /// The refresh token, when the server issued one (servers before refresh rotation give
    /// one long-lived token instead).
    pub refresh_token: Option<String>,
    /// The password is a one-time password (a new account, or reset by the county
    /// administrator): the app asks for a new one first.
    pub must_change_password: bool,
}

/// A new token pair from `Auth.Refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedTokens {
    pub token: String,
    pub refresh_token: String,
}

/// Why the server no longer accepts this device's session (the `fieldsync-error` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOutReason {
    /// Ended on the server: logged out elsewhere, revoked from the console (注销设备),
    /// password changed on another device, or a stolen refresh token was used.
    Revoked,
    /// The session's lifetime ran out (no sync for the refresh token's lifetime).
    Expired,
}

impl SignOutReason {
    /// The wire value of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "session_revoked",
            Self::Expired => "session_expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "session_revoked" => Some(Self::Revoked),
            "session_expired" => Some(Self::Expired),
            _ => None,
        }
    }

    /// What the app tells the cadre.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Revoked => "此设备已在服务器上注销",
            Self::Expired => "登录已过期",
        }
    }
}

/// One push batch as the transport sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushBatch {
    pub device_id: String,
    pub batch_id: String,
    pub first_seq: u64,
    pub mutations: Vec<Mutation>,
    /// Taken when the batch was first opened and stored with it: a retry must re-send the
    /// same bytes, because the server fingerprints the whole request to tell a retry from a
    /// reused batch id.
    pub heartbeat: Option<Heartbeat>,
}

/// One pull request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullRequest {
    /// Empty for a first sync or after a RESET.
    pub cursor: String,
    pub heartbeat: Option<Heartbeat>,
}

/// The server's outcome for one mutation. Reject codes stay strings: a newer server may
/// send codes this build does not know, and the phone must still show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Applied,
    Duplicate,
    ConflictRecorded,
    Rejected { code: String, message: String },
}

/// The server's answer to one push batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PushAck {
    pub results: Vec<(u64, PushOutcome)>,
    pub last_processed_seq: u64,
    pub server_time: Option<OffsetDateTime>,
    pub receipt: String,
    /// The server's HLC (0 when the server does not send one); the phone observes it.
    pub server_hlc: u64,
}

/// One page of pulled changes, buffered until its checkpoint arrives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PulledPage {
    pub households: Vec<Household>,
    pub visit_statuses: Vec<VisitStatus>,
    pub removed_household_ids: Vec<String>,
    /// The 季度收入登记 in force of the households in `households`.
    pub income_registrations: Vec<IncomeRegistration>,
}

/// One frame of the pull stream.
#[derive(Debug, Clone, PartialEq)]
pub enum PullFrame {
    Page(PulledPage),
    /// Everything before this frame is complete up to `cursor`. `checksum_ok` is false when
    /// the server's checksum does not match the pages received since the previous checkpoint.
    Checkpoint {
        cursor: String,
        checksum_ok: bool,
        server_time: Option<OffsetDateTime>,
        /// The server's HLC (0 when absent); the phone observes it.
        server_hlc: u64,
        /// The user's own edits waiting in open conflict records, complete as of this
        /// checkpoint (empty from a server that does not send them).
        pending_conflicts: Vec<PendingConflict>,
    },
    /// The cursor is unusable: drop the replica (keep the outbox) and pull from empty.
    Reset {
        reason: String,
    },
}

/// Where a media upload stands on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPosition {
    pub upload_id: String,
    pub committed_offset: u64,
    pub complete: bool,
}

/// What one outbox entry does; stored as text in the outbox `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationKind {
    SubmitVisit,
    AddPhoto,
    RegisterIncome,
    EditField,
    AddMember,
}

impl MutationKind {
    /// Stable name stored in SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubmitVisit => "submit_visit",
            Self::AddPhoto => "add_photo",
            Self::RegisterIncome => "register_income",
            Self::EditField => "edit_field",
            Self::AddMember => "add_member",
        }
    }

    /// Parse the name written by [`MutationKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::SubmitVisit,
            Self::AddPhoto,
            Self::RegisterIncome,
            Self::EditField,
            Self::AddMember,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// One stored outbox entry. The payload stays JSON of the model record until it is pushed,
/// so a retry re-sends exactly the bytes-equivalent content that was first sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub mutation_id: String,
    pub hlc: u64,
    pub kind: MutationKind,
    /// visit_id, photo_id, registration_id, or household_id for card edits.
    pub subject_id: String,
    pub payload_json: String,
}

/// The phone's view of one visit's review state (审核状态).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VisitState {
    /// Saved on the phone, not yet accepted by the server (待上传).
    Unsent,
    /// Accepted by the server, waiting for the township (待审核).
    Submitted,
    /// 已通过.
    Approved,
    /// Sent back with reasons; shows up in `tasks()` (已退回).
    Returned,
    /// A newer revision replaced this one (已更新).
    Superseded,
    /// The server refused the record permanently (被拒收), e.g. household out of scope.
    Rejected,
}

impl VisitState {
    /// Every state, for parsing.
    pub const ALL: [Self; 6] = [
        Self::Unsent,
        Self::Submitted,
        Self::Approved,
        Self::Returned,
        Self::Superseded,
        Self::Rejected,
    ];

    /// Stable lower-case name stored in SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsent => "unsent",
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Returned => "returned",
            Self::Superseded => "superseded",
            Self::Rejected => "rejected",
        }
    }

    /// Parse the name written by [`VisitState::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// The Chinese label the app shows.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Unsent => "待上传",
            Self::Submitted => "待审核",
            Self::Approved => "已通过",
            Self::Returned => "已退回",
            Self::Superseded => "已更新",
            Self::Rejected => "被拒收",
        }
    }

    /// The state a server review state maps to.
    pub fn from_review_state(state: fieldsync_model::codes::ReviewState) -> Self {
        use fieldsync_model::codes::ReviewState;
        match state {
            ReviewState::Submitted => Self::Submitted,
            ReviewState::Approved => Self::Approved,
            ReviewState::Returned => Self::Returned,
            ReviewState::Superseded => Self::Superseded,
        }
    }
}

impl std::fmt::Display for VisitState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.label_zh(), self.as_str())
    }
}
