//! The sync engine: push the outbox, upload pending photos, pull the scope.
//!
//! The decisions are pure functions with no I/O — [`plan`] (which outbox entries go in which
//! batch, which uploads resume from where), [`plan_chunks`] (the byte ranges of an upload)
//! and [`decide_status_update`] (whether a pulled review status may touch a local visit) —
//! so they are unit-tested without a server. [`run`] executes a plan against the store and
//! the transport, and [`next_retry_delay`] is the pure retry policy.

use crate::Clock;
use crate::error::{ClientError, ClientResult};
use crate::progress::{CancelSync, SyncObserver, SyncPhase};
use crate::records::PullRequest;
use crate::records::{MutationKind, OutboxEntry, PullFrame, PulledPage, PushBatch};
use crate::store::{Checkpoint, RejectedMutation, Store};
use crate::transport::{ChunkRefused, SyncTransport};
use fieldsync_model::sync::{Mutation, MutationPayload};
use std::time::Duration;

/// Most mutations in one push batch: small batches keep a retry on a 2G link cheap.
pub const MAX_BATCH_MUTATIONS: usize = 50;
/// Upload chunk size. gRPC's default message limit is 4 MiB; 256 KiB chunks fit easily and
/// lose little work when a village connection drops mid-chunk.
pub const CHUNK_BYTES: u64 = 256 * 1024;
/// How many RESETs one sync follows before giving up, so a confused server cannot make the
/// phone loop forever.
const MAX_RESETS_PER_SYNC: u32 = 2;
/// How many times one upload re-asks the server for its offset after a refused chunk.
const MAX_OFFSET_RESYNCS: u32 = 3;

// ---------------------------------------------------------------------------------------
// Pure planning
// ---------------------------------------------------------------------------------------

/// A batch that was persisted (and maybe sent) but not yet covered by a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub batch_id: String,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One pending upload as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    pub sha256: String,
    pub size_bytes: u64,
    pub upload_id: Option<String>,
    pub committed_offset: u64,
    pub done: bool,
    /// The server accepted a photo record with these bytes, so it will take the upload.
    pub ready: bool,
    /// Every photo record with these bytes was refused; nothing will ever want them.
    pub abandoned: bool,
}

/// The local facts a sync decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalState {
    /// Seqs in the outbox, ascending.
    pub outbox_seqs: Vec<u64>,
    pub open_batch: Option<OpenBatch>,
    /// In the order the photos were recorded.
    pub uploads: Vec<UploadState>,
}

/// Which batch id a planned batch uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchIdentity {
    /// Re-send a persisted batch with its id: the server answers from its cache or dedupes.
    Reuse(String),
    /// A fresh UUIDv7, persisted before the batch is sent.
    New,
}

/// One push batch: the contiguous seqs `first_seq..=last_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub identity: BatchIdentity,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One upload to run, resuming at `resume_from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpload {
    pub sha256: String,
    pub size_bytes: u64,
    pub upload_id: Option<String>,
    pub resume_from: u64,
}

/// What a sync will do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncPlan {
    /// A persisted batch whose entries no longer match the outbox; close it unsent.
    pub abandon_batch: Option<String>,
    pub batches: Vec<PlannedBatch>,
    pub uploads: Vec<PlannedUpload>,
    /// Uploads that wait for their photo record to be accepted (pushed first).
    pub uploads_waiting_for_push: usize,
}

/// Decide what to push and upload. Batches hold at most `max_batch` contiguous seqs in
/// ascending order. A persisted open batch is re-sent unchanged, with its id, when all its
/// entries are still in the outbox; otherwise it is abandoned and the entries are re-batched
/// under a new id (same id + different content would be refused by the server).
pub fn plan(state: &LocalState, max_batch: usize) -> SyncPlan {
    let max_batch = max_batch.max(1);
    let mut result = SyncPlan::default();
    let mut remaining: &[u64] = &state.outbox_seqs;

    if let Some(open) = &state.open_batch {
        let expected: Vec<u64> = (open.first_seq..=open.last_seq).collect();
        let reusable = remaining.starts_with(&expected) && !expected.is_empty();
        if reusable {
            result.batches.push(PlannedBatch {
                identity: BatchIdentity::Reuse(open.batch_id.clone()),
                first_seq: open.first_seq,
                last_seq: open.last_seq,
            });
            remaining = &remaining[expected.len()..];
        } else {
            result.abandon_batch = Some(open.batch_id.clone());
        }
    }

    // Split into runs of contiguous seqs (the outbox is gap-free by construction; a gap
    // would only appear if entries in the middle were acknowledged, and a batch must never
    // span one), then into batches of at most `max_batch`.
    let mut run_start = 0;
    for index in 0..=remaining.len() {
        let run_ends = index == remaining.len()
            || (index > run_start && remaining[index] != remaining[index - 1] + 1)
            || index - run_start == max_batch;
        if run_ends && index > run_start {
            result.batches.push(PlannedBatch {
                identity: BatchIdentity::New,
                first_seq: remaining[run_start],
                last_seq: remaining[index - 1],
            });
            run_start = index;
        }
    }

    for upload in &state.uploads {
        if upload.done || upload.abandoned {
            continue;
        }
        if !upload.ready {
            result.uploads_waiting_for_push += 1;
            continue;
        }
        result.uploads.push(PlannedUpload {
            sha256: upload.sha256.clone(),
            size_bytes: upload.size_bytes,
            upload_id: upload.upload_id.clone(),
            resume_from: upload.committed_offset.min(upload.size_bytes),
        });
    }
    result
}

/// A byte range of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub offset: u64,
    pub len: u64,
}

/// The chunks that upload `[from, size)` in pieces of at most `chunk_bytes`.
pub fn plan_chunks(size: u64, from: u64, chunk_bytes: u64) -> Vec<ChunkRange> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut chunks = Vec::new();
    let mut offset = from.min(size);
    while offset < size {
        let len = chunk_bytes.min(size - offset);
        chunks.push(ChunkRange { offset, len });
        offset += len;
    }
    chunks
}

/// What a pulled visit status does to the local visit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusDecision {
    /// The phone does not know the visit (fresh install, or recorded elsewhere).
    Insert,
    /// The status is about the phone's latest revision or a newer one.
    Update,
    /// Keep the local row: a newer local revision is waiting in the outbox, or the status is
    /// about an older revision than the phone already has.
    Ignore,
}

/// Never overwrite a visit that has pending outbox entries, and never go back to an older
/// revision.
pub fn decide_status_update(
    local_revision: Option<u32>,
    has_pending_submit: bool,
    incoming_revision: u32,
) -> StatusDecision {
    match local_revision {
        None => StatusDecision::Insert,
        Some(_) if has_pending_submit => StatusDecision::Ignore,
        Some(local) if incoming_revision >= local => StatusDecision::Update,
        Some(_) => StatusDecision::Ignore,
    }
}

/// Turn a stored outbox entry back into the model mutation it was written from.
pub fn entry_to_mutation(entry: &OutboxEntry) -> ClientResult<Mutation> {
    let corrupt = |error: serde_json::Error| {
        ClientError::corrupt(format!("outbox seq {} payload: {error}", entry.seq))
    };
    let payload = match entry.kind {
        MutationKind::SubmitVisit => MutationPayload::SubmitVisit(
            serde_json::from_str(&entry.payload_json).map_err(corrupt)?,
        ),
        MutationKind::AddPhoto => {
            MutationPayload::AddPhoto(serde_json::from_str(&entry.payload_json).map_err(corrupt)?)
        }
        MutationKind::RegisterIncome => MutationPayload::RegisterIncome(
            serde_json::from_str(&entry.payload_json).map_err(corrupt)?,
        ),
        MutationKind::EditField => {
            MutationPayload::EditField(serde_json::from_str(&entry.payload_json).map_err(corrupt)?)
        }
        MutationKind::AddMember => {
            let added: crate::edits::AddMemberPayload =
                serde_json::from_str(&entry.payload_json).map_err(corrupt)?;
            MutationPayload::AddMember {
                household_id: added.household_id,
                member: added.member,
            }
        }
    };
    Ok(Mutation {
        seq: entry.seq,
        mutation_id: entry.mutation_id.clone(),
        hlc: entry.hlc,
        payload,
    })
}

// ---------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub batches_pushed: u64,
    pub mutations_applied: u64,
    pub mutations_duplicate: u64,
    pub rejected: Vec<RejectedMutation>,
    pub uploads_completed: u64,
    pub bytes_uploaded: u64,
    /// Uploads still waiting (their photo record was not accepted yet).
    pub uploads_waiting: u64,
    /// `(sha256, error)` of uploads the server refused for a reason other than connectivity;
    /// they stay pending and are retried at the next sync.
    pub upload_failures: Vec<(String, String)>,
    pub households_pulled: u64,
    pub households_removed: u64,
    pub visit_statuses_pulled: u64,
    pub resets: u64,
    /// This sync's pushed edits the server applied but also recorded as a conflict with a
    /// concurrent edit from another device (`CONFLICT_RECORDED`).
    pub conflicts_recorded: u64,
    /// The user's own edits that wait in open conflict records for a township supervisor,
    /// as the pull reported them (also in [`crate::Status::pending_conflicts`]).
    pub pending_conflicts: Vec<fieldsync_model::register::PendingConflict>,
    /// What the app's screens should reload after this sync.
    pub changes: SyncChanges,
}

/// The records a sync changed on this phone, so the app refreshes only what it shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncChanges {
    /// Households pulled (new or changed cards) or removed from this phone.
    pub household_ids: std::collections::BTreeSet<String>,
    /// Visits the server accepted or refused in this sync, or whose review status (通过,
    /// 退回) was pulled; a returned visit is also a task (待整改).
    pub visit_ids: std::collections::BTreeSet<String>,
    /// The replica was replaced as a whole (first pull, or after a RESET): reload everything.
    pub everything: bool,
}

/// Everything `run` needs from the client.
#[derive(Debug)]
pub struct SyncContext<'a> {
    pub store: &'a Store,
    pub transport: &'a dyn SyncTransport,
    pub token: &'a str,
    pub device_id: &'a str,
    pub clock: &'a dyn Clock,
    /// Told the phase, items and photo bytes as they go.
    pub observer: &'a dyn SyncObserver,
    /// Checked between network steps; set, the sync stops with `ClientError::Cancelled`.
    pub cancel: &'a CancelSync,
}

/// Push, then upload, then pull. Stops at the first transport failure; whatever was
/// acknowledged before it stays acknowledged.
pub async fn run(context: &SyncContext<'_>) -> ClientResult<SyncReport> {
    let mut report = SyncReport::default();
    push(context, &mut report).await?;
    upload(context, &mut report).await?;
    pull(context, &mut report).await?;
    Ok(report)
}

/// An upload the server has started for an OS background uploader: where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedUpload {
    pub sha256: String,
    pub size_bytes: u64,
    pub mime_type: String,
    pub local_path: std::path::PathBuf,
    pub upload_id: String,
    pub committed_offset: u64,
}

/// Get the pending uploads ready for an OS background uploader: push the outbox first (the
/// server takes a photo's bytes only after its photo record), then start (or resume) each
/// ready upload on the server. Uploads the server already has are marked done here and
/// left out. Returns the uploads still to send, and how many wait for their photo record.
pub async fn start_background_uploads(
    context: &SyncContext<'_>,
) -> ClientResult<(Vec<StartedUpload>, u64)> {
    let mut report = SyncReport::default();
    push(context, &mut report).await?;
    let sync_plan = plan(&context.store.load_sync_state()?, MAX_BATCH_MUTATIONS);
    let mut started = Vec::new();
    for planned in &sync_plan.uploads {
        context.cancel.check()?;
        let row = context
            .store
            .upload(&planned.sha256)?
            .ok_or_else(|| ClientError::NotFound(format!("upload {}", planned.sha256)))?;
        let position = context
            .transport
            .start_upload(context.token, &row.sha256, row.size_bytes, &row.mime_type)
            .await?;
        if position.complete {
            context.store.mark_upload_done(&row.sha256)?;
            continue;
        }
        context.store.set_upload_position(
            &row.sha256,
            &position.upload_id,
            position.committed_offset,
        )?;
        started.push(StartedUpload {
            sha256: row.sha256,
            size_bytes: row.size_bytes,
            mime_type: row.mime_type,
            local_path: row.local_path,
            upload_id: position.upload_id,
            committed_offset: position.committed_offset,
        });
    }
    Ok((started, sync_plan.uploads_waiting_for_push as u64))
}

/// Ask the server whether an upload an OS background uploader carried out is complete
/// (StartUpload is idempotent on the SHA-256 and says COMPLETE once the blob is stored).
/// Marks it done and returns true when it is; otherwise records the committed offset and
/// returns false, so the next listing resumes from there.
pub async fn confirm_background_upload(
    context: &SyncContext<'_>,
    sha256: &str,
) -> ClientResult<bool> {
    let row = context
        .store
        .upload(sha256)?
        .ok_or_else(|| ClientError::NotFound(format!("upload {sha256}")))?;
    if row.done {
        return Ok(true);
    }
    let position = context
        .transport
        .start_upload(context.token, &row.sha256, row.size_bytes, &row.mime_type)
        .await?;
    if position.complete {
        context.store.mark_upload_done(&row.sha256)?;
        return Ok(true);
    }
    context.store.set_upload_position(
        &row.sha256,
        &position.upload_id,
        position.committed_offset,
    )?;
    Ok(false)
}

async fn push(context: &SyncContext<'_>, report: &mut SyncReport) -> ClientResult<()> {
    let restamped = context
        .store
        .restamp_outbox_if_clock_fixed(context.clock.now())?;
    if restamped > 0 {
        tracing::info!(restamped, "device clock corrected: outbox re-stamped");
    }
    let state = context.store.load_sync_state()?;
    let sync_plan = plan(&state, MAX_BATCH_MUTATIONS);
    if let Some(batch_id) = &sync_plan.abandon_batch {
        context.store.abandon_batch(batch_id, context.clock.now())?;
    }
    context.observer.phase_started(SyncPhase::Push);
    // A batch never spans a gap in the seqs, so its range is its entry count.
    let entries_total: u64 = sync_plan
        .batches
        .iter()
        .map(|planned| planned.last_seq - planned.first_seq + 1)
        .sum();
    let mut entries_done = 0;
    context
        .observer
        .items_done(SyncPhase::Push, entries_done, entries_total);
    for planned in &sync_plan.batches {
        context.cancel.check()?;
        let (batch_id, heartbeat) = match &planned.identity {
            BatchIdentity::Reuse(batch_id) => {
                (batch_id.clone(), context.store.batch_heartbeat(batch_id)?)
            }
            BatchIdentity::New => {
                let batch_id = uuid::Uuid::now_v7().to_string();
                let heartbeat = context.store.heartbeat(context.clock.now())?;
                context.store.open_batch_with_heartbeat(
                    &batch_id,
                    planned.first_seq,
                    planned.last_seq,
                    Some(&heartbeat),
                    context.clock.now(),
                )?;
                (batch_id, Some(heartbeat))
            }
        };
        let entries = context
            .store
            .outbox_range(planned.first_seq, planned.last_seq)?;
        let mutations = entries
            .iter()
            .map(entry_to_mutation)
            .collect::<ClientResult<Vec<_>>>()?;
        let batch = PushBatch {
            device_id: context.device_id.to_owned(),
            batch_id: batch_id.clone(),
            first_seq: planned.first_seq,
            mutations,
            heartbeat,
        };
        let ack = match context.transport.push(context.token, &batch).await {
            Ok(ack) => ack,
            Err(error) => {
                let error = match error {
                    ClientError::DeviceClockWrong { server_time_ms, .. } => {
                        clock_refused(context, planned, server_time_ms)
                    }
                    other => other,
                };
                // Counted per entry so status() can show a batch that keeps failing.
                context.store.note_push_failure(
                    planned.first_seq,
                    planned.last_seq,
                    &error.to_string(),
                    context.clock.now(),
                )?;
                return Err(error);
            }
        };
        let summary = context
            .store
            .apply_push_ack(&batch_id, &ack, context.clock.now())?;
        report.batches_pushed += 1;
        report.mutations_applied += summary.applied;
        report.conflicts_recorded += summary.conflicts_recorded;
        report.mutations_duplicate += summary.duplicates;
        report.rejected.extend(summary.rejected);
        report.changes.visit_ids.extend(
            entries
                .iter()
                .filter(|entry| entry.kind == MutationKind::SubmitVisit)
                .map(|entry| entry.subject_id.clone()),
        );
        entries_done += planned.last_seq - planned.first_seq + 1;
        context.observer.items_done(
            SyncPhase::Push,
            entries_done.min(entries_total),
            entries_total,
        );
        if ack.last_processed_seq < planned.last_seq {
            // The server stopped early; the rest goes in a new batch at the next sync rather
            // than racing ahead past a seq the server has not processed.
            return Err(ClientError::Protocol(format!(
                "server processed up to seq {} of batch {}..={}",
                ack.last_processed_seq, planned.first_seq, planned.last_seq
            )));
        }
    }
    Ok(())
}

/// The server refused the batch because the phone's clock is far ahead. Nothing was applied
/// and the outbox stays as it is; remember the server's time so the outbox is re-stamped
/// once the cadre corrects the clock, and say how far ahead the phone was.
fn clock_refused(
    context: &SyncContext<'_>,
    planned: &PlannedBatch,
    server_time_ms: Option<u64>,
) -> ClientError {
    let sent_ms = context
        .store
        .max_outbox_hlc_millis(planned.first_seq, planned.last_seq)
        .unwrap_or(0)
        .max(fieldsync_model::hlc::unix_millis(context.clock.now()));
    // Without the server's time, its tolerance is the best lower bound available.
    let server_ms = server_time_ms
        .unwrap_or_else(|| sent_ms.saturating_sub(fieldsync_model::hlc::REJECT_AHEAD_MILLIS));
    if let Err(error) = context.store.note_clock_refused(server_ms) {
        return error;
    }
    ClientError::DeviceClockWrong {
        ahead_minutes: sent_ms.saturating_sub(server_ms) / 60_000,
        server_time_ms,
    }
}

async fn upload(context: &SyncContext<'_>, report: &mut SyncReport) -> ClientResult<()> {
    // Re-plan after the push: photo records accepted just now make their uploads ready.
    let sync_plan = plan(&context.store.load_sync_state()?, MAX_BATCH_MUTATIONS);
    report.uploads_waiting = sync_plan.uploads_waiting_for_push as u64;
    context.observer.phase_started(SyncPhase::Upload);
    let uploads_total = sync_plan.uploads.len() as u64;
    let mut uploads_done = 0;
    context
        .observer
        .items_done(SyncPhase::Upload, uploads_done, uploads_total);
    for planned in &sync_plan.uploads {
        context.cancel.check()?;
        match upload_one(context, planned).await {
            Ok(sent) => {
                report.bytes_uploaded += sent;
                report.uploads_completed += 1;
                uploads_done += 1;
                context
                    .observer
                    .items_done(SyncPhase::Upload, uploads_done, uploads_total);
            }
            // Losing the connection or the session stops the sync; the next one resumes.
            Err(
                error @ (ClientError::Unavailable { .. }
                | ClientError::Tls { .. }
                | ClientError::InsecureHttp { .. }
                | ClientError::NotLoggedIn(_)
                | ClientError::UpgradeRequired(_)
                | ClientError::Cancelled),
            ) => return Err(error),
            // One blob the server will not take must not keep the phone from pulling its
            // approvals; it stays pending and is reported.
            Err(error) => {
                tracing::warn!(sha256 = %planned.sha256, %error, "upload failed");
                report
                    .upload_failures
                    .push((planned.sha256.clone(), error.to_string()));
            }
        }
    }
    Ok(())
}

/// Upload one blob, resuming from the server's committed offset. Returns bytes sent.
async fn upload_one(context: &SyncContext<'_>, planned: &PlannedUpload) -> ClientResult<u64> {
    let store = context.store;
    let row = store
        .upload(&planned.sha256)?
        .ok_or_else(|| ClientError::NotFound(format!("upload {}", planned.sha256)))?;
    // StartUpload is idempotent on sha256 and tells where the server really is, which
    // covers a restart, a lost PutChunk response and an upload the server expired.
    let position = context
        .transport
        .start_upload(context.token, &row.sha256, row.size_bytes, &row.mime_type)
        .await?;
    if position.complete {
        store.mark_upload_done(&row.sha256)?;
        context
            .observer
            .photo_bytes_sent(&row.sha256, row.size_bytes, row.size_bytes);
        return Ok(0);
    }
    store.set_upload_position(&row.sha256, &position.upload_id, position.committed_offset)?;
    let bytes = tokio::fs::read(&row.local_path)
        .await
        .map_err(|error| ClientError::io(&row.local_path, error))?;
    if bytes.len() as u64 != row.size_bytes {
        return Err(ClientError::corrupt(format!(
            "photo {} changed on disk: {} bytes, expected {}",
            row.local_path.display(),
            bytes.len(),
            row.size_bytes
        )));
    }
    let upload_id = position.upload_id;
    let mut committed = position.committed_offset;
    let mut sent = 0;
    let mut resyncs = 0;
    context
        .observer
        .photo_bytes_sent(&row.sha256, committed, row.size_bytes);
    'resume: loop {
        for chunk in plan_chunks(row.size_bytes, committed, CHUNK_BYTES) {
            context.cancel.check()?;
            let start = usize::try_from(chunk.offset).unwrap_or(usize::MAX);
            let end = usize::try_from(chunk.offset + chunk.len).unwrap_or(usize::MAX);
            let data = bytes
                .get(start..end)
                .ok_or_else(|| ClientError::corrupt("chunk outside the photo"))?
                .to_vec();
            match context
                .transport
                .put_chunk(context.token, &upload_id, chunk.offset, data)
                .await
            {
                Ok(new_offset) => {
                    committed = new_offset;
                    sent += chunk.len;
                    store.set_upload_position(&row.sha256, &upload_id, committed)?;
                    context
                        .observer
                        .photo_bytes_sent(&row.sha256, committed, row.size_bytes);
                }
                Err(ChunkRefused::WrongOffset(message)) => {
                    resyncs += 1;
                    if resyncs > MAX_OFFSET_RESYNCS {
                        return Err(ClientError::Protocol(format!(
                            "upload {} keeps refusing offsets: {message}",
                            row.sha256
                        )));
                    }
                    let status = context
                        .transport
                        .upload_status(context.token, &upload_id)
                        .await?;
                    if status.complete {
                        break 'resume;
                    }
                    committed = status.committed_offset;
                    store.set_upload_position(&row.sha256, &upload_id, committed)?;
                    continue 'resume;
                }
                Err(ChunkRefused::Other(error)) => return Err(error),
            }
        }
        break;
    }
    let (stored_sha256, stored_size) = context
        .transport
        .complete_upload(context.token, &upload_id)
        .await?;
    if !stored_sha256.is_empty() && stored_sha256 != row.sha256 || stored_size != row.size_bytes {
        return Err(ClientError::Protocol(format!(
            "server stored {stored_sha256} ({stored_size} bytes) for {} ({} bytes)",
            row.sha256, row.size_bytes
        )));
    }
    store.mark_upload_done(&row.sha256)?;
    Ok(sent)
}

async fn pull(context: &SyncContext<'_>, report: &mut SyncReport) -> ClientResult<()> {
    let store = context.store;
    context.cancel.check()?;
    context.observer.phase_started(SyncPhase::Pull);
    let mut checkpoints_applied = 0;
    let mut resets = 0;
    let mut cursor = store
        .meta_get(crate::store::meta_key::CURSOR)?
        .unwrap_or_default();
    'restart: loop {
        let request = PullRequest {
            cursor: cursor.clone(),
            heartbeat: Some(store.heartbeat(context.clock.now())?),
        };
        let mut stream = context.transport.pull(context.token, &request).await?;
        // A pull from an empty cursor is the whole scope: its first checkpoint replaces the
        // replica. A RESET only restarts from empty; the old replica stays on screen until
        // that checkpoint arrives, so a torn re-download loses nothing.
        let mut replace_replica = cursor.is_empty();
        let mut buffered: Vec<PulledPage> = Vec::new();
        let mut saw_checkpoint = false;
        while let Some(frame) = stream.next_frame().await? {
            match frame {
                PullFrame::Page(page) => buffered.push(page),
                PullFrame::Checkpoint {
                    cursor: new_cursor,
                    checksum_ok,
                    server_time,
                    server_hlc,
                    pending_conflicts,
                } => {
                    if !checksum_ok {
                        return Err(ClientError::Protocol(
                            "pull checksum mismatch; nothing applied (torn stream?)".into(),
                        ));
                    }
                    for page in &buffered {
                        let changes = &mut report.changes;
                        changes.household_ids.extend(
                            page.households
                                .iter()
                                .map(|household| household.household_id.clone())
                                .chain(page.removed_household_ids.iter().cloned()),
                        );
                        changes.visit_ids.extend(
                            page.visit_statuses
                                .iter()
                                .map(|status| status.visit_id.clone()),
                        );
                    }
                    report.changes.everything |= replace_replica;
                    let summary = store.apply_checkpoint(&Checkpoint {
                        pages: &buffered,
                        cursor: &new_cursor,
                        server_time,
                        server_hlc,
                        replace_replica,
                        pending_conflicts: &pending_conflicts,
                        now: context.clock.now(),
                    })?;
                    report.pending_conflicts = pending_conflicts;
                    replace_replica = false;
                    buffered.clear();
                    saw_checkpoint = true;
                    report.households_pulled += summary.households;
                    report.households_removed += summary.removed_households;
                    report.visit_statuses_pulled += summary.visit_statuses;
                    checkpoints_applied += 1;
                    // The number of checkpoints is not known ahead: the total stays 0.
                    context
                        .observer
                        .items_done(SyncPhase::Pull, checkpoints_applied, 0);
                }
                PullFrame::Reset { reason } => {
                    resets += 1;
                    report.resets += 1;
                    if resets > MAX_RESETS_PER_SYNC || cursor.is_empty() {
                        // A RESET of a pull that already started from empty cannot be cured
                        // by pulling again: stop instead of looping.
                        return Err(ClientError::Protocol(format!(
                            "server keeps resetting the pull: {reason}"
                        )));
                    }
                    tracing::info!(%reason, "pull reset: re-downloading the scope");
                    cursor.clear();
                    continue 'restart;
                }
            }
        }
        if !saw_checkpoint || !buffered.is_empty() {
            // Pages without a closing checkpoint are a torn stream: drop them, keep the old
            // cursor, and try again next time.
            return Err(ClientError::Protocol(
                "pull stream ended without a checkpoint; nothing applied".into(),
            ));
        }
        return Ok(());
    }
}

// ---------------------------------------------------------------------------------------
// Retry policy
// ---------------------------------------------------------------------------------------

/// First retry waits up to this long.
pub const RETRY_BASE: Duration = Duration::from_secs(2);
/// No retry waits longer than this: a cadre back in signal should not wait long.
pub const RETRY_CAP: Duration = Duration::from_secs(15 * 60);

/// Capped exponential backoff with full jitter: a uniform delay in
/// `[0, min(cap, base * 2^attempt)]`, where `attempt` counts failures before this one
/// (0 for the first retry). Jitter spreads a village's phones apart when the township's
/// network comes back, instead of all retrying in the same second.
pub fn next_retry_delay(attempt: u32, rng: &mut impl rand::Rng) -> Duration {
    let ceiling_ms = RETRY_BASE
        .as_millis()
        .saturating_mul(1u128 << attempt.min(40))
        .min(RETRY_CAP.as_millis());
    let ceiling_ms = u64::try_from(ceiling_ms).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seqs: impl IntoIterator<Item = u64>) -> LocalState {
        LocalState {
            outbox_seqs: seqs.into_iter().collect(),
            ..LocalState::default()
        }
    }

    fn ranges(sync_plan: &SyncPlan) -> Vec<(u64, u64)> {
        sync_plan
            .batches
            .iter()
            .map(|batch| (batch.first_seq, batch.last_seq))
            .collect()
    }

    #[test]
    fn retry_delays_grow_exponentially_with_full_jitter_up_to_the_cap() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 0..64 {
            let ceiling = RETRY_BASE
                .saturating_mul(1 << attempt.min(20))
                .min(RETRY_CAP);
            let samples: Vec<Duration> = (0..200)
                .map(|_| next_retry_delay(attempt, &mut rng))
                .collect();
            assert!(samples.iter().all(|delay| *delay <= ceiling), "{attempt}");
            // Full jitter: spread over the whole range, not bunched at the top.
            assert!(
                samples.iter().any(|delay| *delay < ceiling / 2),
                "{attempt}"
            );
        }
        assert!(
            (0..200).any(|_| next_retry_delay(30, &mut rng) > RETRY_CAP / 2),
            "late attempts reach the cap"
        );
    }

    #[test]
    fn an_empty_outbox_plans_nothing() {
        assert_eq!(plan(&state([]), 50), SyncPlan::default());
    }

    #[test]
    fn the_outbox_is_split_into_batches_of_at_most_fifty_in_seq_order() {
        let sync_plan = plan(&state(1..=120), MAX_BATCH_MUTATIONS);
        assert_eq!(ranges(&sync_plan), vec![(1, 50), (51, 100), (101, 120)]);
        assert!(
            sync_plan
                .batches
                .iter()
                .all(|batch| batch.identity == BatchIdentity::New)
        );
    }

    #[test]
    fn a_batch_never_spans_a_gap() {
        assert_eq!(
            ranges(&plan(&state([3, 4, 7, 8]), 50)),
            vec![(3, 4), (7, 8)]
        );
    }

    #[test]
    fn an_unacknowledged_batch_is_resent_with_the_same_id_and_range_first() {
        let local = LocalState {
            outbox_seqs: (5..=12).collect(),
            open_batch: Some(OpenBatch {
                batch_id: "batch-a".into(),
                first_seq: 5,
                last_seq: 9,
            }),
            uploads: vec![],
        };
        let sync_plan = plan(&local, 50);
        assert_eq!(sync_plan.abandon_batch, None);
        assert_eq!(
            sync_plan.batches[0].identity,
            BatchIdentity::Reuse("batch-a".into())
        );
        assert_eq!(ranges(&sync_plan), vec![(5, 9), (10, 12)]);
    }

    #[test]
    fn an_open_batch_whose_entries_changed_is_abandoned_and_rebatched() {
        let local = LocalState {
            outbox_seqs: vec![7, 8, 9],
            open_batch: Some(OpenBatch {
                batch_id: "batch-a".into(),
                first_seq: 5,
                last_seq: 9,
            }),
            uploads: vec![],
        };
        let sync_plan = plan(&local, 50);
        assert_eq!(sync_plan.abandon_batch.as_deref(), Some("batch-a"));
        assert_eq!(ranges(&sync_plan), vec![(7, 9)]);
        assert_eq!(sync_plan.batches[0].identity, BatchIdentity::New);
    }

    #[test]
    fn uploads_wait_for_their_photo_record_and_resume_from_the_committed_offset() {
        let upload = |sha: &str, ready: bool, done: bool, offset: u64| UploadState {
            sha256: sha.into(),
            size_bytes: 1_000_000,
            upload_id: Some(format!("up-{sha}")),
            committed_offset: offset,
            done,
            ready,
            abandoned: false,
        };
        let local = LocalState {
            outbox_seqs: vec![],
            open_batch: None,
            uploads: vec![
                upload("a", true, false, 262_144),
                upload("b", false, false, 0),
                upload("c", true, true, 1_000_000),
                UploadState {
                    abandoned: true,
                    ..upload("d", false, false, 0)
                },
            ],
        };
        let sync_plan = plan(&local, 50);
        assert_eq!(sync_plan.uploads.len(), 1);
        assert_eq!(sync_plan.uploads[0].sha256, "a");
        assert_eq!(sync_plan.uploads[0].resume_from, 262_144);
        assert_eq!(sync_plan.uploads_waiting_for_push, 1);
    }

    #[test]
    fn chunks_cover_the_rest_of_the_file_from_the_offset() {
        let size = 600 * 1024;
        let chunks = plan_chunks(size, 0, CHUNK_BYTES);
        assert_eq!(
            chunks,
            vec![
                ChunkRange {
                    offset: 0,
                    len: 262_144
                },
                ChunkRange {
                    offset: 262_144,
                    len: 262_144
                },
                ChunkRange {
                    offset: 524_288,
                    len: 90_112
                },
            ]
        );
        let resumed = plan_chunks(size, 300_000, CHUNK_BYTES);
        assert_eq!(
            resumed[0],
            ChunkRange {
                offset: 300_000,
                len: 262_144
            }
        );
        assert_eq!(
            resumed.iter().map(|chunk| chunk.len).sum::<u64>(),
            size - 300_000
        );
        assert!(plan_chunks(size, size, CHUNK_BYTES).is_empty());
        assert!(plan_chunks(size, size + 10, CHUNK_BYTES).is_empty());
    }

    #[test]
    fn chunk_checksums_are_crc32c_castagnoli() {
        // The standard CRC-32C check value (RFC 3720 appendix B.4 / iSCSI).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn pulled_statuses_never_overwrite_pending_local_work_or_go_back_in_revisions() {
        assert_eq!(decide_status_update(None, false, 1), StatusDecision::Insert);
        assert_eq!(
            decide_status_update(Some(1), false, 1),
            StatusDecision::Update
        );
        assert_eq!(
            decide_status_update(Some(1), false, 2),
            StatusDecision::Update
        );
        assert_eq!(
            decide_status_update(Some(2), true, 1),
            StatusDecision::Ignore
        );
        assert_eq!(
            decide_status_update(Some(2), true, 2),
            StatusDecision::Ignore
        );
        assert_eq!(
            decide_status_update(Some(2), false, 1),
            StatusDecision::Ignore
        );
    }
}
