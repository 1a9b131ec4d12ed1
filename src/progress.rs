//! How long-running library operations report progress; the binary draws it.

/// Receives progress events. All methods have empty defaults.
pub trait Progress: Send + Sync {
    /// A phase starts (`"snapshot"`, `"restore"`, `"index"`), with a byte total when known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `bytes` more source or output bytes were processed.
    fn advance(&self, _bytes: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {}
