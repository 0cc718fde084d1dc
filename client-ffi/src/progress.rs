//! The app's sync observer and change listener: traits the app implements in Kotlin, Swift
//! or Python (`with_foreign`), and the adapter that hands the core's progress to them.
//!
//! An app's callback may throw. Each callback returns `Result<(), CallbackError>` and
//! `CallbackError` converts from UniFFI's "unexpected callback error", so an exception (a
//! Kotlin `RuntimeException`, a Swift error, a Python `Exception`) arrives here as an `Err`
//! instead of a panic or an internal error. Progress is best-effort: after an observer's
//! first failure it is not called again for the rest of that sync, the failure is logged,
//! and the sync carries on to its normal result. A failing change listener likewise never
//! changes what `sync` returns (the same changes are in `SyncReport.changes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fieldsync_client as core;

/// Which step of a sync is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncPhase {
    /// Sending the outbox (上传记录).
    Push,
    /// Uploading photo bytes (上传照片).
    Upload,
    /// Downloading the scope and review results (下载更新).
    Pull,
}

impl From<core::SyncPhase> for SyncPhase {
    fn from(phase: core::SyncPhase) -> Self {
        match phase {
            core::SyncPhase::Push => Self::Push,
            core::SyncPhase::Upload => Self::Upload,
            core::SyncPhase::Pull => Self::Pull,
        }
    }
}

/// What an app's callback may fail with. An app may throw it on purpose; any other
/// exception from a callback arrives as `Unexpected`. Either way the sync goes on.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CallbackError {
    /// The app's callback failed (thrown on purpose).
    #[error("the app's callback failed: {message}")]
    Failed { message: String },
    /// The callback threw something else (an exception the bindings did not expect).
    #[error("the app's callback threw: {reason}")]
    Unexpected { reason: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CallbackError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Unexpected {
            reason: error.reason,
        }
    }
}

/// Implemented by the app to show sync progress. Calls arrive in order on the thread that
/// called `sync`; hand the numbers to the UI thread and return quickly. An observer may
/// call `FieldsyncClient::cancel_sync`. A callback that throws is not called again during
/// that sync; the sync itself is unaffected.
#[uniffi::export(with_foreign)]
pub trait SyncProgressObserver: Send + Sync {
    /// A phase starts (push, then upload, then pull).
    fn on_phase(&self, phase: SyncPhase) -> Result<(), CallbackError>;
    /// Items of `phase` done of `total` (outbox entries, photos; pull checkpoints with
    /// total 0 because it is not known ahead).
    fn on_items(&self, phase: SyncPhase, done: u64, total: u64) -> Result<(), CallbackError>;
    /// Bytes of the photo with this SHA-256 the server has committed, of its size.
    fn on_photo_bytes(&self, sha256: String, sent: u64, total: u64) -> Result<(), CallbackError>;
}

/// The core's observer, forwarding to the app's until the app's first failure.
pub(crate) struct ForwardToApp {
    observer: Arc<dyn SyncProgressObserver>,
    /// Set at the observer's first failure: it is not called again in this sync.
    failed: AtomicBool,
}

impl ForwardToApp {
    pub(crate) fn new(observer: Arc<dyn SyncProgressObserver>) -> Self {
        Self {
            observer,
            failed: AtomicBool::new(false),
        }
    }

    /// Whether the app's observer failed during this sync.
    pub(crate) fn observer_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn forward(&self, call: impl FnOnce(&dyn SyncProgressObserver) -> Result<(), CallbackError>) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(error) = call(self.observer.as_ref()) {
            tracing::warn!(%error, "the app's sync observer failed; not called again in this sync");
            self.failed.store(true, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for ForwardToApp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ForwardToApp")
    }
}

impl core::SyncObserver for ForwardToApp {
    fn phase_started(&self, phase: core::SyncPhase) {
        self.forward(|observer| observer.on_phase(phase.into()));
    }

    fn items_done(&self, phase: core::SyncPhase, done: u64, total: u64) {
        self.forward(|observer| observer.on_items(phase.into(), done, total));
    }

    fn photo_bytes_sent(&self, sha256: &str, sent: u64, total: u64) {
        self.forward(|observer| observer.on_photo_bytes(sha256.to_owned(), sent, total));
    }
}

/// Implemented by the app to refresh its screens after a sync: called once after each
/// sync that changed something, on the thread that called `sync`, before `sync` returns.
/// (After a failed or cancelled sync it is not called; reload the lists then.) A listener
/// that throws is logged and ignored; `sync` still returns its report.
#[uniffi::export(with_foreign)]
pub trait ChangeListener: Send + Sync {
    fn on_changes(&self, changes: crate::records::ChangedRecords) -> Result<(), CallbackError>;
}
