//! What a running sync tells the app, and how the app stops it.
//!
//! The phone app shows a progress bar (同步进度) and a cancel button; both reach the engine
//! here. [`SyncObserver`] gets the phase, items done of total, and photo bytes sent of
//! total, always in order from the syncing thread. [`CancelSync`] is a flag the app sets from
//! any thread; the engine checks it between network steps (before each push batch, each
//! photo chunk and the pull), so what was acknowledged stays acknowledged and the next sync
//! resumes where this one stopped. [`crate::Client::sync`] uses neither, so its callers
//! (the CLI, the tests) are unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{ClientError, ClientResult};

/// The three steps of a sync, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPhase {
    /// Sending the outbox (上传记录).
    Push,
    /// Uploading photo bytes (上传照片).
    Upload,
    /// Downloading the scope and review results (下载更新).
    Pull,
}

/// Receives progress from [`crate::Client::sync_with_progress`]. Calls come from the
/// syncing task, one at a time and in order; they should return quickly (hand the numbers
/// to the UI thread) because the sync waits for them.
pub trait SyncObserver: Send + Sync + std::fmt::Debug {
    /// A phase starts.
    fn phase_started(&self, phase: SyncPhase);
    /// Items of `phase` done so far of `total`: outbox entries acknowledged (push), photos
    /// uploaded (upload), checkpoints applied (pull, where the total is not known: 0).
    fn items_done(&self, phase: SyncPhase, done: u64, total: u64);
    /// Bytes of one photo (by SHA-256) the server has committed, of its size.
    fn photo_bytes_sent(&self, sha256: &str, sent: u64, total: u64);
}

/// An observer that ignores everything: what [`crate::Client::sync`] uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreProgress;

impl SyncObserver for IgnoreProgress {
    fn phase_started(&self, _phase: SyncPhase) {}
    fn items_done(&self, _phase: SyncPhase, _done: u64, _total: u64) {}
    fn photo_bytes_sent(&self, _sha256: &str, _sent: u64, _total: u64) {}
}

/// A cancel flag shared between the app (any thread) and one running sync. Clones share
/// the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelSync(Arc<AtomicBool>);

impl CancelSync {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the sync to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelSync::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(ClientError::Cancelled)` once cancelled: the engine's check between steps.
    pub fn check(&self) -> ClientResult<()> {
        if self.is_cancelled() {
            Err(ClientError::Cancelled)
        } else {
            Ok(())
        }
    }
}
