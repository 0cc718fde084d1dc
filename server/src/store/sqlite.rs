//! SQLite implementation of [`Store`](super::Store). Being written.

/// Placeholder until the implementation lands.
#[derive(Debug)]
pub struct SqliteStore;
