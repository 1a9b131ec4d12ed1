//! Repository locks (repo-format §9): every operation holds one while it runs. Shared locks
//! never exclude each other; `prune` and `forget` locks exclude each other (and themselves);
//! exclusive locks exclude all.
//! Holders refresh their lock and keep the previous lock object until the next refresh, so a
//! listing never misses a live holder; a writer refuses to commit when its lock could have
//! looked stale to someone else.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::lock::Lock;
use crate::format::{Id, ObjectKind, FORMAT_VERSION};
pub use crate::repo::operation::Operation;
use crate::repo::Repository;

/// A lock not refreshed for this long is ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often holders rewrite their lock.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// Longest gap between two successful lock writes after which a writer refuses to commit:
/// stale time minus the allowed clock skew and a margin.
pub const MAX_GAP: Duration = Duration::from_secs(20 * 60);
/// A held lock; removed from the repository on drop.
pub struct LockGuard {
    operation: Operation,
    store: crate::storage::Store,
    state: Arc<Mutex<State>>,
    started: jiff::Timestamp,
    stop: Option<Sender<()>>,
    _interrupt: crate::interrupt::Registration,
    refresher: Option<std::thread::JoinHandle<()>>,
}

/// The holder's lock objects and how fresh they are.
struct State {
    /// Newest lock object first; at most two.
    objects: Vec<Id>,
    last_write: Instant,
    worst_gap: Duration,
}

fn payload(operation: Operation, started: jiff::Timestamp) -> Lock {
    Lock {
        version: FORMAT_VERSION,
        hostname: crate::util::hostname(),
        pid: std::process::id(),
        username: crate::util::username(),
        operation: operation.name().into(),
        exclusive: operation.exclusive(),
        time: jiff::Timestamp::now(),
        started: Some(started),
    }
}

/// Operation name given to a lock object that cannot be read (damaged, not JSON, sealed with
/// another repository's keys).
pub const UNREADABLE: &str = "unreadable lock";

/// A lock object as listed, with what it says.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The lock object's id.
    pub id: Id,
    /// Its content; for an unreadable object, a stand-in: operation [`UNREADABLE`], no start
    /// time (it counts as started at the beginning of time), written when storage says it was.
    pub lock: Lock,
    /// Why the object could not be read.
    pub unreadable: Option<String>,
}

impl Holder {
    /// One line for messages: who holds it, since when.
    pub fn describe(&self) -> String {
        match &self.unreadable {
            Some(why) => format!(
                "an unreadable lock object locks/{} written at {} ({why})",
                self.id, self.lock.time
            ),
            None => format!(
                "{} (pid {} on {}, since {})",
                self.lock.operation,
                self.lock.pid,
                self.lock.hostname,
                self.lock.started.unwrap_or(self.lock.time)
            ),
        }
    }

    /// Not refreshed for [`STALE_AFTER`] (an unreadable object: written that long ago, by
    /// storage's clock), or taken on this host by a process that no longer exists.
    pub fn is_stale(&self) -> bool {
        let age = jiff::Timestamp::now().duration_since(self.lock.time);
        age.as_secs() >= STALE_AFTER.as_secs() as i64 || dead_here(&self.lock)
    }
}

/// Every lock object in the repository. An object that fails authentication or cannot be
/// parsed is listed as unreadable, dated by storage's modification time (now when the backend
/// has none, so it never looks stale before `unlock` removes it).
pub fn list(repo: &Repository) -> Result<Vec<Holder>> {
    let mut out = Vec::new();
    for id in repo.list_ids(ObjectKind::Lock)? {
        let loaded = repo.load::<Lock>(&id);
        match loaded {
            Ok(lock) => out.push(Holder {
                id,
                lock,
                unreadable: None,
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => {} // removed meanwhile
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                let written = match repo.store().modified(&format!("locks/{id}")) {
                    Ok(Some(t)) => t,
                    Ok(None) => jiff::Timestamp::now(),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(Holder {
                    id,
                    lock: unreadable_stand_in(written),
                    unreadable: Some(e.to_string()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn unreadable_stand_in(written: jiff::Timestamp) -> Lock {
    Lock {
        version: 0,
        hostname: String::new(),
        pid: 0,
        username: String::new(),
        operation: UNREADABLE.into(),
        exclusive: false,
        time: written,
        started: None,
    }
}

/// Has this process not warned of lock `id` yet? A command lists the locks more than once
/// (prune: when it takes its own, and before it sweeps); the operator hears of one once.
fn first_warning(id: Id) -> bool {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<Id>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    crate::util::lock_anyway(&WARNED).insert(id)
}

/// Live (not stale) locks other than the objects in `except`. Locks of dead processes on this
/// host are removed on the way (restic does the same); an unreadable object younger than
/// [`STALE_AFTER`] counts as a live holder of unknown kind, with a warning.
pub fn live_locks(repo: &Repository, except: &[Id]) -> Result<Vec<Holder>> {
    let mut out = Vec::new();
    for h in list(repo)? {
        if except.contains(&h.id) {
            continue;
        }
        if dead_here(&h.lock) {
            match repo.store().delete(&format!("locks/{}", h.id)) {
                Ok(()) => tracing::info!("removed the lock of a process that no longer exists: {}", h.describe()),
                Err(e) => tracing::debug!("cannot remove the lock of a dead process, locks/{}: {e}", h.id),
            }
            continue;
        }
        if h.is_stale() {
            if h.unreadable.is_some() && first_warning(h.id) {
                tracing::warn!("ignoring {}: older than the lock timeout", h.describe());
            }
            continue;
        }
        if h.unreadable.is_some() && first_warning(h.id) {
            tracing::warn!(
                "{}: it counts as held until {} (or until an operator who knows no dbbackup process \
                 runs removes it with `dbbackup unlock`)",
                h.describe(),
                h.lock.time + STALE_AFTER
            );
        }
        out.push(h);
    }
    Ok(out)
}

/// Remove stale locks (not refreshed for [`STALE_AFTER`], unreadable and that old, or of a
/// dead process on this host); with `all`, every lock object, live or not. Returns what was
/// removed.
pub fn remove(repo: &Repository, all: bool) -> Result<Vec<Holder>> {
    let mut removed = Vec::new();
    for h in list(repo)? {
        if all || h.is_stale() {
            repo.store().delete(&format!("locks/{}", h.id))?;
            removed.push(h);
        }
    }
    Ok(removed)
}

/// Was `lock` taken on this host by a process that no longer exists? (Then it is stale at
/// once, as restic treats it; a killed snapshot or prune does not block for 30 minutes.)
fn dead_here(lock: &Lock) -> bool {
    if lock.hostname != crate::util::hostname() || lock.pid == 0 {
        return false;
    }
    crate::repo::liveness::ended(lock.pid, lock.started.unwrap_or(lock.time))
}

/// Does a live lock `other` exclude taking one for `operation`? An unreadable lock, or one
/// naming an operation this version does not know, might be any kind of holder: it excludes
/// what a remover or an exclusive holder would, but not a shared operation (a restore must
/// not be hostage to a damaged object; a sweep still waits for it, repo-format §9).
fn conflicts(operation: Operation, other: &Lock) -> bool {
    let Some(theirs) = Operation::from_name(&other.operation) else {
        return operation.exclusive() || operation.removes();
    };
    operation.exclusive() || other.exclusive || (operation.removes() && theirs.removes())
}

/// Take a lock for `operation`; fails at once (exit 75) on a conflicting live lock.
pub fn acquire(repo: &Repository, operation: Operation) -> Result<LockGuard> {
    let started = jiff::Timestamp::now();
    let id = repo.save(&payload(operation, started))?;
    let first_write = Instant::now();
    let live = match live_locks(repo, &[id]) {
        Ok(l) => l,
        Err(e) => {
            let _ = repo.store().delete(&format!("locks/{id}"));
            return Err(e);
        }
    };
    if let Some(h) = live.into_iter().find(|h| conflicts(operation, &h.lock)) {
        let _ = repo.store().delete(&format!("locks/{id}"));
        let e = |when: String| {
            Error::new(
                ErrorKind::Temporary,
                format!("repository is locked by {}; {when}", h.describe()),
            )
        };
        return Err(match h.unreadable {
            Some(_) => {
                e(format!("it counts as held until {}", h.lock.time + STALE_AFTER)).with_hint(Hint::RemoveAllLocks)
            }
            None => e("try again when it ends".into()),
        });
    }
    let state = Arc::new(Mutex::new(State {
        objects: vec![id],
        last_write: first_write,
        worst_gap: Duration::ZERO,
    }));
    let (stop, stopped) = channel::<()>();
    let refresher = {
        let (store, keys, state) = (repo.store().clone(), repo.keys().clone(), state.clone());
        std::thread::spawn(move || {
            // Wakes every REFRESH_EVERY, or at once when the guard is dropped.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
                let Ok(sealed) = crate::format::seal(&keys, &payload(operation, started)) else {
                    continue;
                };
                let new = Id::of_stored(&sealed);
                if store.write(&format!("locks/{new}"), sealed, false).is_err() {
                    continue;
                }
                let Ok(mut st) = state.lock() else { return };
                let gap = st.last_write.elapsed();
                st.worst_gap = st.worst_gap.max(gap);
                st.last_write = Instant::now();
                st.objects.insert(0, new);
                // Keep the previous object until the next refresh (repo-format §9).
                while st.objects.len() > 2 {
                    if let Some(old) = st.objects.pop() {
                        let _ = store.delete(&format!("locks/{old}"));
                    }
                }
            }
        })
    };
    let on_interrupt = {
        let (store, state) = (repo.store().clone(), state.clone());
        crate::interrupt::on_interrupt(move || {
            for o in &crate::util::lock_anyway(&state).objects {
                let _ = store.delete(&format!("locks/{o}"));
            }
        })
    };
    Ok(LockGuard {
        operation,
        _interrupt: on_interrupt,
        store: repo.store().clone(),
        state,
        started,
        stop: Some(stop),
        refresher: Some(refresher),
    })
}

/// Take a shared lock for an operation that only reads. When storage refuses the write (a
/// read-only mount, a key that may only read), go on without one, with a warning: `None`.
/// Without a lock, a prune may delete data while this operation reads it; the operation then
/// fails (every byte read is authenticated), it never returns wrong data.
pub fn acquire_for_reading(repo: &Repository, operation: Operation) -> Result<Option<LockGuard>> {
    debug_assert!(operation.reads_only(), "{operation} writes");
    match acquire(repo, operation) {
        Ok(g) => Ok(Some(g)),
        Err(e) if e.kind() == ErrorKind::Permission => {
            tracing::warn!(
                "reading without a repository lock: storage refuses writes ({e}); a prune running meanwhile \
                 could delete data this {operation} needs, which would make it fail"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl LockGuard {
    /// What the lock is held for.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// When the lock was taken.
    pub fn started(&self) -> jiff::Timestamp {
        self.started
    }

    /// Ids of this holder's lock objects right now.
    pub fn objects(&self) -> Vec<Id> {
        crate::util::lock_anyway(&self.state).objects.clone()
    }

    /// Error (exit 75) when the lock could have looked stale to another process at some
    /// point: then prune may have deleted data this process relies on, and it must not commit.
    pub fn ensure_fresh(&self) -> Result<()> {
        let st = crate::util::lock_or_fail(&self.state, "lock state")?;
        let gap = st.worst_gap.max(st.last_write.elapsed());
        if gap > MAX_GAP {
            return Err(Error::new(
                ErrorKind::Temporary,
                format!(
                    "this process could not refresh its repository lock for {}s (storage unreachable, or the process was suspended); \
                     a concurrent prune may have removed data it deduplicated against, so nothing was committed; run it again",
                    gap.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        for o in &crate::util::lock_anyway(&self.state).objects {
            let _ = self.store.delete(&format!("locks/{o}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_of(operation: &str, exclusive: bool) -> Lock {
        Lock {
            version: FORMAT_VERSION,
            hostname: "h".into(),
            pid: 1,
            username: "u".into(),
            operation: operation.into(),
            exclusive,
            time: jiff::Timestamp::UNIX_EPOCH,
            started: None,
        }
    }

    #[test]
    fn conflicts_follow_repo_format_section_9() {
        use Operation::*;
        for mine in Operation::ALL {
            for theirs in Operation::ALL {
                let want = mine == Repair || theirs == Repair || (mine.removes() && theirs.removes());
                let other = lock_of(theirs.name(), theirs.exclusive());
                assert_eq!(conflicts(mine, &other), want, "{mine} against a live {theirs}");
            }
            // Unknown or unreadable: a holder of unknown kind.
            for name in [UNREADABLE, "defragment"] {
                let want = matches!(mine, Repair | Prune | Forget);
                assert_eq!(conflicts(mine, &lock_of(name, false)), want, "{mine} against `{name}`");
            }
        }
        let writers: Vec<_> = Operation::ALL.into_iter().filter(|o| o.is_writer()).collect();
        assert_eq!(writers, [Snapshot, WalPush]);
        let readers: Vec<_> = Operation::ALL.into_iter().filter(|o| o.reads_only()).collect();
        assert_eq!(readers, [Restore, Check, WalFetch]);
    }
}
