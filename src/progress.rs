//! How long-running library operations report progress; the binary draws it.

/// What a phase counts, and how far it goes when that is known exactly. A total that is only
/// an estimate (a database's size on the server, which its dump is not) is no total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Bytes, with their exact total when it is known.
    Bytes(Option<u64>),
    /// Items (snapshots, packs), with their exact count.
    Count(u64),
}

/// Receives progress events. All methods have empty defaults.
pub trait Progress: Send + Sync {
    /// A phase starts (`"snapshot"`, `"restore"`, `"references"`), counting `work`.
    fn start(&self, _phase: &str, _work: Work) {}
    /// `n` more bytes or items (as the phase's [`Work`] counts) were processed.
    fn advance(&self, _n: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {}
