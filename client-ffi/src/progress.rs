//! The app's sync observer: a trait the app implements in Kotlin, Swift or Python
//! (`with_foreign`), and the adapter that hands the core's progress to it.

use std::sync::Arc;

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

/// Implemented by the app to show sync progress. Calls arrive in order on the thread that
/// called `sync`; hand the numbers to the UI thread and return quickly. An observer may
/// call `FieldsyncClient::cancel_sync`.
#[uniffi::export(with_foreign)]
pub trait SyncProgressObserver: Send + Sync {
    /// A phase starts (push, then upload, then pull).
    fn on_phase(&self, phase: SyncPhase);
    /// Items of `phase` done of `total` (outbox entries, photos; pull checkpoints with
    /// total 0 because it is not known ahead).
    fn on_items(&self, phase: SyncPhase, done: u64, total: u64);
    /// Bytes of the photo with this SHA-256 the server has committed, of its size.
    fn on_photo_bytes(&self, sha256: String, sent: u64, total: u64);
}

/// The core's observer, forwarding to the app's.
pub(crate) struct ForwardToApp(pub(crate) Arc<dyn SyncProgressObserver>);

impl std::fmt::Debug for ForwardToApp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ForwardToApp")
    }
}

impl core::SyncObserver for ForwardToApp {
    fn phase_started(&self, phase: core::SyncPhase) {
        self.0.on_phase(phase.into());
    }

    fn items_done(&self, phase: core::SyncPhase, done: u64, total: u64) {
        self.0.on_items(phase.into(), done, total);
    }

    fn photo_bytes_sent(&self, sha256: &str, sent: u64, total: u64) {
        self.0.on_photo_bytes(sha256.to_owned(), sent, total);
    }
}

/// Implemented by the app to refresh its screens after a sync: called once after each
/// sync that changed something, on the thread that called `sync`, before `sync` returns.
/// (After a failed or cancelled sync it is not called; reload the lists then.)
#[uniffi::export(with_foreign)]
pub trait ChangeListener: Send + Sync {
    fn on_changes(&self, changes: crate::records::ChangedRecords);
}
