//! A scripted, in-memory fieldsync server behind the `SyncTransport` seam, for tests that
//! drive the client's sync engine deterministically: faults are queued per call (no signal,
//! a lost response, a 5xx, a torn pull, a forced RESET), the server's clock is a number,
//! and everything the server saw is kept for assertions. It follows the protocol's rules
//! closely enough to catch client bugs: gap-free seqs per batch, dedupe on `(device, seq)`,
//! a batch-id response cache that refuses a reused id with other content, per-field
//! registers with `field_seqs`, cursors with a tombstone horizon, HLC clock refusal.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fieldsync_client::records::{
    Heartbeat, LoginGrant, LoginRequest, PullFrame, PullRequest, PulledPage, PushAck, PushBatch,
    PushOutcome, UploadPosition,
};
use fieldsync_client::{ChunkRefused, ClientError, ClientResult, Clock, PullFrames, SyncTransport};
use fieldsync_model::codes::{
    Disability, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation, Role,
    Schooling, Sex,
};
use fieldsync_model::hlc::{Hlc, REJECT_AHEAD_MILLIS};
use fieldsync_model::household::{Household, Member, field_seq_key};
use fieldsync_model::register::apply_value;
use fieldsync_model::sync::{Mutation, MutationPayload};
use time::OffsetDateTime;

/// A settable clock shared by the test and the client.
#[derive(Debug)]
pub struct FakeClock(Mutex<OffsetDateTime>);

impl FakeClock {
    pub fn new(now: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(now)))
    }

    pub fn set(&self, now: OffsetDateTime) {
        *self.0.lock().unwrap() = now;
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// What goes wrong with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No signal: nothing reaches the server.
    Unavailable,
    /// The call times out before the server sees it.
    Timeout,
    /// A 5xx: the server fails before doing anything.
    Internal,
    /// The server does the work but the answer never arrives (push), or the stream breaks
    /// after the pages (pull).
    LoseResponse,
    /// Pull: the stream ends after the pages without a checkpoint.
    NoCheckpoint,
    /// Pull: every page frame is sent twice.
    DuplicatePages,
    /// Pull: the tombstone horizon passes the phone's cursor, so it gets RESET.
    StaleCursor,
}

/// Everything the fake server holds and saw.
#[derive(Debug, Default)]
pub struct ServerState {
    pub households: BTreeMap<String, Household>,
    /// (scope seq, household id) of every change, removals included.
    pub changes: Vec<(u64, String)>,
    pub seq: u64,
    /// Cursors older than this get RESET.
    pub horizon: u64,
    pub last_processed_seq: u64,
    /// Every mutation applied, in order (for exactly-once checks).
    pub applied: Vec<Mutation>,
    /// Mutation ids whose outcome reached the phone in a push response.
    pub acked: BTreeSet<String>,
    pub batches: HashMap<String, (PushBatch, PushAck)>,
    pub faults: VecDeque<Fault>,
    /// The server's wall clock in unix ms.
    pub server_ms: u64,
    pub hlc: Hlc,
    pub push_heartbeats: Vec<Option<Heartbeat>>,
    pub pull_heartbeats: Vec<Option<Heartbeat>>,
    /// Protocol violations by the client (a reused batch id with other content, gaps).
    pub violations: Vec<String>,
    /// Cursors of checkpoints the phone has read, with the scope as it was then.
    pub delivered_checkpoints: Vec<(String, BTreeMap<String, Household>)>,
    pub resets_sent: u64,
    pub page_size: usize,
    /// Households whose mutations are refused (e.g. reassigned without the phone knowing).
    pub refuse_household: Option<String>,
    pub pushes: u64,
    pub pulls: u64,
}

/// Runs at the start of every push or pull, outside the server lock (e.g. to move the
/// phone's clock or make a local edit in the middle of a sync).
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
pub struct FakeServer {
    pub state: Arc<Mutex<ServerState>>,
    hook: Mutex<Option<Hook>>,
    /// When set, a push waits here after it started (for the one-sync-per-install test).
    pub gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    pub push_started: tokio::sync::Notify,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("FakeServer")
    }
}

pub const SERVER_MS: u64 = 1_772_704_800_000; // 2026-03-05 10:00 UTC

impl FakeServer {
    pub fn new() -> Arc<Self> {
        let server = Self::default();
        {
            let mut state = server.state.lock().unwrap();
            state.server_ms = SERVER_MS;
            state.page_size = 2;
        }
        Arc::new(server)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().unwrap()
    }

    pub fn set_hook(&self, hook: Option<Hook>) {
        *self.hook.lock().unwrap() = hook;
    }

    pub fn fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    fn run_hook(&self, call: &str) {
        let hook = self.hook.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(call);
        }
    }

    /// Add or change a household on the server side (e.g. by the console).
    pub fn upsert_household(&self, household: Household) {
        let mut state = self.state();
        state.seq += 1;
        let seq = state.seq;
        let mut household = household;
        household.server_seq = seq as i64;
        state.changes.push((seq, household.household_id.clone()));
        state
            .households
            .insert(household.household_id.clone(), household);
    }

    /// Reassign a household to another cadre: it leaves this phone's scope.
    pub fn remove_household(&self, household_id: &str) {
        let mut state = self.state();
        if state.households.remove(household_id).is_some() {
            state.seq += 1;
            let seq = state.seq;
            state.changes.push((seq, household_id.to_owned()));
        }
    }
}

fn unavailable(message: &str) -> ClientError {
    ClientError::Unavailable {
        server_url: "fake://".into(),
        message: message.into(),
    }
}

fn fault_error(fault: Fault) -> ClientError {
    match fault {
        Fault::Timeout => unavailable("DeadlineExceeded"),
        Fault::Internal => ClientError::Server {
            code: "Internal".into(),
            message: "database is locked".into(),
        },
        _ => unavailable("connection reset"),
    }
}

impl ServerState {
    fn take_fault(&mut self) -> Option<Fault> {
        self.faults.pop_front()
    }

    fn bump(&mut self, household_id: &str) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.changes.push((seq, household_id.to_owned()));
        if let Some(household) = self.households.get_mut(household_id) {
            household.server_seq = seq as i64;
        }
        seq
    }

    fn apply(&mut self, mutation: &Mutation) -> PushOutcome {
        let refused = |code: &str| PushOutcome::Rejected {
            code: code.into(),
            message: format!("refused by the fake: {code}"),
        };
        let household_id = mutation.payload.household_id().map(str::to_owned);
        if let Some(household_id) = &household_id
            && (!self.households.contains_key(household_id)
                || self.refuse_household.as_deref() == Some(household_id))
        {
            return refused("household_out_of_scope");
        }
        match &mutation.payload {
            MutationPayload::EditField(edit) => {
                let Some(card) = self.households.get_mut(&edit.household_id) else {
                    return refused("household_out_of_scope");
                };
                let mut changed = card.clone();
                if apply_value(&mut changed, &edit.target, &edit.field, &edit.value).is_err() {
                    return refused("invalid_record");
                }
                *card = changed;
                let seq = self.bump(&edit.household_id);
                if let Some(card) = self.households.get_mut(&edit.household_id) {
                    card.field_seqs
                        .insert(field_seq_key(&edit.target, &edit.field), seq as i64);
                }
            }
            MutationPayload::AddMember {
                household_id,
                member,
            } => {
                if let Some(card) = self.households.get_mut(household_id)
                    && !card.members.iter().any(|m| m.member_id == member.member_id)
                {
                    card.members.push(member.clone());
                }
                self.bump(household_id);
            }
            _ => {}
        }
        self.applied.push(mutation.clone());
        PushOutcome::Applied
    }

    fn full_scope(&self) -> BTreeMap<String, Household> {
        self.households.clone()
    }
}

#[async_trait]
impl SyncTransport for FakeServer {
    async fn login(&self, request: &LoginRequest) -> ClientResult<LoginGrant> {
        Ok(LoginGrant {
            token: format!("token-{}", request.device_id),
            user_id: "user-1".into(),
            display_name: "张干部".into(),
            role: Some(Role::Cadre),
            area_id: String::new(),
            refresh_token: None,
            must_change_password: false,
        })
    }

    async fn push(&self, _token: &str, batch: &PushBatch) -> ClientResult<PushAck> {
        self.run_hook("push");
        self.push_started.notify_one();
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await;
        }
        let mut state = self.state();
        state.pushes += 1;
        let fault = state.take_fault();
        if let Some(fault @ (Fault::Unavailable | Fault::Timeout | Fault::Internal)) = fault {
            return Err(fault_error(fault));
        }
        state.push_heartbeats.push(batch.heartbeat.clone());
        // HLC clock refusal: the whole batch, nothing applied, the server clock unmoved.
        let server_ms = state.server_ms;
        if batch
            .mutations
            .iter()
            .any(|mutation| Hlc::from_u64(mutation.hlc).millis() > server_ms + REJECT_AHEAD_MILLIS)
        {
            return Err(ClientError::DeviceClockWrong {
                ahead_minutes: 0,
                server_time_ms: Some(server_ms),
            });
        }
        if let Some((earlier, ack)) = state.batches.get(&batch.batch_id).cloned() {
            if earlier != *batch {
                state.violations.push(format!(
                    "batch {} re-sent with other content",
                    batch.batch_id
                ));
                return Err(ClientError::Server {
                    code: "FailedPrecondition".into(),
                    message: "batch id reused with different content".into(),
                });
            }
            if fault == Some(Fault::LoseResponse) {
                return Err(unavailable("response lost"));
            }
            for mutation in &batch.mutations {
                state.acked.insert(mutation.mutation_id.clone());
            }
            return Ok(ack);
        }
        let mut results = Vec::new();
        for (index, mutation) in batch.mutations.iter().enumerate() {
            if mutation.seq != batch.first_seq + index as u64 {
                state
                    .violations
                    .push(format!("gap in batch {} at {index}", batch.batch_id));
            }
            let outcome = if mutation.seq <= state.last_processed_seq {
                PushOutcome::Duplicate
            } else {
                state.last_processed_seq = mutation.seq;
                let hlc = Hlc::from_u64(mutation.hlc);
                state.hlc = state.hlc.max(hlc).tick(server_ms);
                state.apply(mutation)
            };
            results.push((mutation.seq, outcome));
        }
        state.hlc = state.hlc.tick(server_ms);
        let ack = PushAck {
            results,
            last_processed_seq: state.last_processed_seq,
            server_time: OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(server_ms) * 1_000_000,
            )
            .ok(),
            receipt: format!("receipt-{}", state.last_processed_seq),
            server_hlc: state.hlc.as_u64(),
        };
        state
            .batches
            .insert(batch.batch_id.clone(), (batch.clone(), ack.clone()));
        if fault == Some(Fault::LoseResponse) {
            return Err(unavailable("response lost"));
        }
        for mutation in &batch.mutations {
            state.acked.insert(mutation.mutation_id.clone());
        }
        Ok(ack)
    }

    async fn pull(&self, _token: &str, request: &PullRequest) -> ClientResult<Box<dyn PullFrames>> {
        self.run_hook("pull");
        let mut state = self.state();
        state.pulls += 1;
        let fault = state.take_fault();
        if let Some(fault @ (Fault::Unavailable | Fault::Timeout | Fault::Internal)) = fault {
            return Err(fault_error(fault));
        }
        state.pull_heartbeats.push(request.heartbeat.clone());
        if fault == Some(Fault::StaleCursor) {
            state.horizon = state.seq + 1;
        }
        let mut frames: VecDeque<ClientResult<PullFrame>> = VecDeque::new();
        let since = if request.cursor.is_empty() {
            None
        } else {
            match request
                .cursor
                .strip_prefix('c')
                .and_then(|seq| seq.parse::<u64>().ok())
            {
                Some(seq) if seq >= state.horizon => Some(seq),
                _ => {
                    state.resets_sent += 1;
                    frames.push_back(Ok(PullFrame::Reset {
                        reason: format!("cursor {} is past the horizon", request.cursor),
                    }));
                    return Ok(Box::new(FakePull {
                        frames,
                        checkpoint_scope: None,
                        state: self.state.clone(),
                    }));
                }
            }
        };
        let (households, removed): (Vec<Household>, Vec<String>) = match since {
            None => (state.households.values().cloned().collect(), Vec::new()),
            Some(since) => {
                let touched: BTreeSet<&String> = state
                    .changes
                    .iter()
                    .filter(|(seq, _)| *seq > since)
                    .map(|(_, id)| id)
                    .collect();
                let mut households = Vec::new();
                let mut removed = Vec::new();
                for id in touched {
                    match state.households.get(id) {
                        Some(household) => households.push(household.clone()),
                        None => removed.push(id.clone()),
                    }
                }
                (households, removed)
            }
        };
        let page_size = state.page_size.max(1);
        let mut pages: Vec<PulledPage> = households
            .chunks(page_size)
            .map(|chunk| PulledPage {
                households: chunk.to_vec(),
                ..PulledPage::default()
            })
            .collect();
        if !removed.is_empty() {
            pages.push(PulledPage {
                removed_household_ids: removed,
                ..PulledPage::default()
            });
        }
        for page in pages {
            if fault == Some(Fault::DuplicatePages) {
                frames.push_back(Ok(PullFrame::Page(page.clone())));
            }
            frames.push_back(Ok(PullFrame::Page(page)));
        }
        let cursor = format!("c{}", state.seq);
        match fault {
            Some(Fault::LoseResponse) => frames.push_back(Err(unavailable("stream broken"))),
            Some(Fault::NoCheckpoint) => {}
            _ => frames.push_back(Ok(PullFrame::Checkpoint {
                cursor: cursor.clone(),
                checksum_ok: true,
                server_time: OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(state.server_ms) * 1_000_000,
                )
                .ok(),
                server_hlc: state.hlc.as_u64(),
                pending_conflicts: Vec::new(),
            })),
        }
        let scope = state.full_scope();
        drop(state);
        Ok(Box::new(FakePull {
            frames,
            checkpoint_scope: Some((cursor, scope)),
            state: self.state.clone(),
        }))
    }

    async fn start_upload(
        &self,
        _token: &str,
        _sha256: &str,
        _size_bytes: u64,
        _mime_type: &str,
    ) -> ClientResult<UploadPosition> {
        Err(unavailable("uploads are not part of this fake"))
    }

    async fn put_chunk(
        &self,
        _token: &str,
        _upload_id: &str,
        _offset: u64,
        _data: Vec<u8>,
    ) -> Result<u64, ChunkRefused> {
        Err(ChunkRefused::Other(unavailable(
            "uploads are not part of this fake",
        )))
    }

    async fn complete_upload(&self, _token: &str, _upload_id: &str) -> ClientResult<(String, u64)> {
        Err(unavailable("uploads are not part of this fake"))
    }

    async fn upload_status(&self, _token: &str, _upload_id: &str) -> ClientResult<UploadPosition> {
        Err(unavailable("uploads are not part of this fake"))
    }
}

/// A pull stream; reading its checkpoint records that the phone got it.
#[derive(Debug)]
struct FakePull {
    frames: VecDeque<ClientResult<PullFrame>>,
    checkpoint_scope: Option<(String, BTreeMap<String, Household>)>,
    state: Arc<Mutex<ServerState>>,
}

#[async_trait]
impl PullFrames for FakePull {
    async fn next_frame(&mut self) -> ClientResult<Option<PullFrame>> {
        match self.frames.pop_front() {
            None => Ok(None),
            Some(Err(error)) => {
                self.frames.clear();
                Err(error)
            }
            Some(Ok(frame)) => {
                if matches!(frame, PullFrame::Checkpoint { .. })
                    && let Some(delivered) = self.checkpoint_scope.take()
                {
                    self.state
                        .lock()
                        .unwrap()
                        .delivered_checkpoints
                        .push(delivered);
                }
                Ok(Some(frame))
            }
        }
    }
}

/// A household card as the demo county would have it.
pub fn household(id: &str, head: &str) -> Household {
    Household {
        household_id: id.into(),
        national_household_number: String::new(),
        head_name: head.into(),
        township_id: "t-1".into(),
        village_id: "v-1".into(),
        village_name: "石板村".into(),
        address: "一组".into(),
        phone: "13800000000".into(),
        attribute: HouseholdAttribute::General,
        main_cause: PovertyCause::Illness,
        secondary_causes: vec![],
        housing_danger_level: None,
        location: None,
        members: vec![member(&format!("{id}-m1"), head)],
        measures: vec![],
        server_seq: 0,
        field_seqs: BTreeMap::new(),
    }
}

pub fn member(id: &str, name: &str) -> Member {
    Member {
        member_id: id.into(),
        name: name.into(),
        relation: Relation::Head,
        sex: Sex::Male,
        birth_date: "1970-01-01".into(),
        id_number: String::new(),
        health: Health::Healthy,
        labour_capacity: LabourCapacity::Ordinary,
        schooling: Schooling::NotInSchool,
        disability: Disability::None,
        disability_grade: 0,
        has_medical_insurance: true,
        has_serious_illness_insurance: false,
        has_pension_insurance: false,
        removed: false,
    }
}
