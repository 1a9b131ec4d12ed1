//! A session: the repository, the lock an operation holds on it, and the index cache synced
//! after that lock was taken. Lock first, then sync (repo-format §10.1): a writer that synced
//! before locking could miss a deletion plan a prune wrote in between and deduplicate against
//! a pack being deleted. A [`Session`] is the only way to get an index a writer or reader may
//! trust, so the order cannot be skipped: the snapshot writer and every
//! function that reads data through the index take one.

use crate::error::{Error, Result};
use crate::repo::index::{IndexCache, SyncStats};
use crate::repo::lock::{self, LockGuard, Operation};
use crate::repo::Repository;

/// An open repository, the lock held for one operation, and the index synced under it.
pub struct Session<'r> {
    repo: &'r Repository,
    index: &'r IndexCache,
    lock: Option<LockGuard>,
    operation: Operation,
    synced: SyncStats,
}

/// Whether an operation that only reads takes a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLock {
    /// Take a shared lock; go on without one, with a warning, where storage refuses its write
    /// ([`lock::acquire_for_reading`]).
    Take,
    /// Take none (a repository this user or key may only read, or one owned by another OS
    /// user): a prune running meanwhile could delete data the operation needs, which then
    /// fails; it never returns wrong bytes (every byte read is authenticated).
    Skip,
}

impl<'r> Session<'r> {
    /// Lock the repository for `operation`, then sync `index` with it. Fails (exit 75) on a
    /// conflicting live lock, and when the lock cannot be written.
    pub fn begin(repo: &'r Repository, index: &'r IndexCache, operation: Operation) -> Result<Session<'r>> {
        let lock = lock::acquire(repo, operation)?;
        Self::synced(repo, index, Some(lock), operation)
    }

    /// A session under `lock`, already held (a command that locks before it knows whether it
    /// needs the index): sync `index` now.
    pub fn adopt(repo: &'r Repository, index: &'r IndexCache, lock: LockGuard) -> Result<Session<'r>> {
        let operation = lock.operation();
        Self::synced(repo, index, Some(lock), operation)
    }

    /// A session of an operation that only reads (`restore`, `check`, `wal fetch`, `stats`):
    /// lock as `read_lock` says, then sync `index`.
    pub fn begin_reading(
        repo: &'r Repository,
        index: &'r IndexCache,
        operation: Operation,
        read_lock: ReadLock,
    ) -> Result<Session<'r>> {
        if !operation.reads_only() {
            return Err(Error::general(format!("{operation} writes: it needs a lock")));
        }
        let lock = match read_lock {
            ReadLock::Take => lock::acquire_for_reading(repo, operation)?,
            ReadLock::Skip => None,
        };
        Self::synced(repo, index, lock, operation)
    }

    fn synced(
        repo: &'r Repository,
        index: &'r IndexCache,
        lock: Option<LockGuard>,
        operation: Operation,
    ) -> Result<Session<'r>> {
        // Dropping `lock` on error removes it.
        let synced = index.sync(repo)?;
        Ok(Session {
            repo,
            index,
            lock,
            operation,
            synced,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    /// The index cache, synced after the lock was taken.
    pub fn index(&self) -> &'r IndexCache {
        self.index
    }

    /// The lock held (`None`: an operation that only reads, run without one).
    pub fn lock(&self) -> Option<&LockGuard> {
        self.lock.as_ref()
    }

    /// What the session was opened for.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// What the sync at the start read.
    pub fn synced_at_start(&self) -> &SyncStats {
        &self.synced
    }

    /// The lock of a session of `operation`, or an error when this session is of another
    /// operation or holds no lock.
    pub fn lock_for(&self, operation: Operation) -> Result<&LockGuard> {
        match &self.lock {
            Some(l) if self.operation == operation => Ok(l),
            _ => Err(Error::general(format!(
                "a {} session{} cannot {operation}",
                self.operation,
                if self.lock.is_none() { " without a lock" } else { "" }
            ))),
        }
    }

    /// The lock held by a writer, or an error: only a locked snapshot or wal-push session
    /// may write data others deduplicate against.
    pub fn writer_lock(&self) -> Result<&LockGuard> {
        match &self.lock {
            Some(l) if self.operation.is_writer() => Ok(l),
            _ => Err(Error::general(format!(
                "a {} session cannot write a snapshot: only a locked snapshot or wal-push session may",
                self.operation
            ))),
        }
    }
}
