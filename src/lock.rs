//! Repository locks (repo-format §9): every operation holds one while it runs. Shared locks
//! never exclude each other; `prune` and `forget` locks exclude each other (and themselves);
//! exclusive locks exclude all.
//! Holders refresh their lock and keep the previous lock object until the next refresh, so a
//! listing never misses a live holder; a writer refuses to commit when its lock could have
//! looked stale to someone else.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::format::lock::Lock;
use crate::format::{Id, ObjectKind, FORMAT_VERSION};
use crate::repo::Repository;

/// A lock not refreshed for this long is ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often holders rewrite their lock.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// Longest gap between two successful lock writes after which a writer refuses to commit:
/// stale time minus the allowed clock skew and a margin.
pub const MAX_GAP: Duration = Duration::from_secs(20 * 60);
/// Operation name of prune's lock.
pub const PRUNE: &str = "prune";
/// Operation name of forget's lock.
pub const FORGET: &str = "forget";

/// Operations that remove snapshots or data: never two at once (prune restores missing
/// manifest copies, which must not race a forget deleting them).
fn removes(operation: &str) -> bool {
    operation == PRUNE || operation == FORGET
}

/// A held lock; removed from the repository on drop.
pub struct LockGuard {
    store: crate::backend::Store,
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

fn payload(operation: &str, exclusive: bool, started: jiff::Timestamp) -> Vec<u8> {
    let l = Lock {
        version: FORMAT_VERSION,
        hostname: crate::util::hostname(),
        pid: std::process::id(),
        username: crate::util::username(),
        operation: operation.into(),
        exclusive,
        time: jiff::Timestamp::now(),
        started: Some(started),
    };
    serde_json::to_vec(&l).unwrap_or_default()
}

/// Live (not stale) locks other than the objects in `except`.
pub fn live_locks(repo: &Repository, except: &[Id]) -> Result<Vec<(Id, Lock)>> {
    let mut out = Vec::new();
    for id in repo.list_ids(ObjectKind::Lock)? {
        if except.contains(&id) {
            continue;
        }
        let lock: Lock = match repo.load_object(ObjectKind::Lock, &id) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(l) => l,
                Err(_) => continue,
            },
            Err(e) if e.kind() == ErrorKind::NotFound => continue, // removed meanwhile
            Err(e) => return Err(e),
        };
        let age = jiff::Timestamp::now().duration_since(lock.time);
        if age.as_secs() < STALE_AFTER.as_secs() as i64 && !dead_here(&lock) {
            out.push((id, lock));
        }
    }
    Ok(out)
}

/// Was `lock` taken on this host by a process that no longer exists? (Then it is stale at
/// once, as restic treats it; a killed snapshot or prune does not block for 30 minutes.)
fn dead_here(lock: &Lock) -> bool {
    if lock.hostname != crate::util::hostname() || lock.pid == 0 {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(lock.pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn conflicts(operation: &str, exclusive: bool, other: &Lock) -> bool {
    exclusive || other.exclusive || (removes(operation) && removes(&other.operation))
}

/// Take a lock for `operation`; fails at once (exit 75) on a conflicting live lock.
pub fn acquire(repo: &Repository, operation: &str, exclusive: bool) -> Result<LockGuard> {
    let started = jiff::Timestamp::now();
    let id = repo.save_object(ObjectKind::Lock, &payload(operation, exclusive, started))?;
    let first_write = Instant::now();
    let conflict = live_locks(repo, &[id])?
        .into_iter()
        .find(|(_, l)| conflicts(operation, exclusive, l));
    if let Some((_, l)) = conflict {
        let _ = repo.store().delete(&format!("locks/{id}"));
        return Err(Error::new(
            ErrorKind::Temporary,
            format!(
                "repository is locked by `{}` (pid {} on {}, since {}); try again when it ends",
                l.operation,
                l.pid,
                l.hostname,
                l.started.unwrap_or(l.time)
            ),
        ));
    }
    let state = Arc::new(Mutex::new(State {
        objects: vec![id],
        last_write: first_write,
        worst_gap: Duration::ZERO,
    }));
    let (stop, stopped) = channel::<()>();
    let refresher = {
        let (store, keys, state) = (repo.store().clone(), repo.keys().clone(), state.clone());
        let op = operation.to_string();
        std::thread::spawn(move || {
            // Wakes every REFRESH_EVERY, or at once when the guard is dropped.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
                let Ok(sealed) = crate::format::seal_object(&keys, ObjectKind::Lock, &payload(&op, exclusive, started))
                else {
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
            if let Ok(st) = state.lock() {
                for o in &st.objects {
                    let _ = store.delete(&format!("locks/{o}"));
                }
            }
        })
    };
    Ok(LockGuard {
        _interrupt: on_interrupt,
        store: repo.store().clone(),
        state,
        started,
        stop: Some(stop),
        refresher: Some(refresher),
    })
}

impl LockGuard {
    /// When the lock was taken.
    pub fn started(&self) -> jiff::Timestamp {
        self.started
    }

    /// Ids of this holder's lock objects right now.
    pub fn objects(&self) -> Vec<Id> {
        self.state.lock().map(|s| s.objects.clone()).unwrap_or_default()
    }

    /// Error (exit 75) when the lock could have looked stale to another process at some
    /// point: then prune may have deleted data this process relies on, and it must not commit.
    pub fn ensure_fresh(&self) -> Result<()> {
        let st = self.state.lock().map_err(|_| Error::general("lock state poisoned"))?;
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
        if let Ok(st) = self.state.lock() {
            for o in &st.objects {
                let _ = self.store.delete(&format!("locks/{o}"));
            }
        }
    }
}
