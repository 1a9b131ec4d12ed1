//! Repository locks: a shared lock while a snapshot writes, an exclusive one for prune.
//! Locks are refreshed while held and count as stale after [`STALE_AFTER`] without refresh.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::format::lock::Lock;
use crate::format::{Id, ObjectKind, FORMAT_VERSION};
use crate::repo::Repository;

/// A lock not refreshed for this long is ignored.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// A held lock; removed from the repository on drop.
pub struct LockGuard {
    store: crate::backend::Store,
    current: Arc<Mutex<Id>>,
    stop: Option<Sender<()>>,
    _interrupt: crate::interrupt::Registration,
    refresher: Option<std::thread::JoinHandle<()>>,
}

fn payload(operation: &str, exclusive: bool) -> Vec<u8> {
    let l = Lock {
        version: FORMAT_VERSION,
        hostname: crate::util::hostname(),
        pid: std::process::id(),
        username: crate::util::username(),
        operation: operation.into(),
        exclusive,
        time: jiff::Timestamp::now(),
    };
    serde_json::to_vec(&l).unwrap_or_default()
}

/// Live locks other than `except`.
pub fn live_locks(repo: &Repository, except: Option<&Id>) -> Result<Vec<(Id, Lock)>> {
    let mut out = Vec::new();
    for id in repo.list_ids(ObjectKind::Lock)? {
        if Some(&id) == except {
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
        if age.as_secs() < STALE_AFTER.as_secs() as i64 {
            out.push((id, lock));
        }
    }
    Ok(out)
}

/// Take a lock for `operation`. A shared lock conflicts only with live exclusive locks.
pub fn acquire(repo: &Repository, operation: &str, exclusive: bool) -> Result<LockGuard> {
    let id = repo.save_object(ObjectKind::Lock, &payload(operation, exclusive))?;
    let conflicts: Vec<(Id, Lock)> = live_locks(repo, Some(&id))?
        .into_iter()
        .filter(|(_, l)| exclusive || l.exclusive)
        .collect();
    if let Some((_, l)) = conflicts.first() {
        let _ = repo.store().delete(&format!("locks/{id}"));
        return Err(Error::new(
            ErrorKind::Temporary,
            format!(
                "repository is locked by `{}` (pid {} on {}, since {}); try again when it ends",
                l.operation, l.pid, l.hostname, l.time
            ),
        ));
    }
    let current = Arc::new(Mutex::new(id));
    let (stop, stopped) = channel::<()>();
    let refresher = {
        let (store, keys, current) = (repo.store().clone(), repo.keys().clone(), current.clone());
        let op = operation.to_string();
        std::thread::spawn(move || {
            // Wakes every REFRESH_EVERY, or at once when the guard is dropped.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
                let Ok(sealed) = crate::format::seal_object(&keys, ObjectKind::Lock, &payload(&op, exclusive)) else {
                    continue;
                };
                let new = Id::of_stored(&sealed);
                if store.write(&format!("locks/{new}"), sealed, false).is_ok() {
                    if let Ok(mut cur) = current.lock() {
                        let _ = store.delete(&format!("locks/{}", *cur));
                        *cur = new;
                    }
                }
            }
        })
    };
    let on_interrupt = {
        let (store, current) = (repo.store().clone(), current.clone());
        crate::interrupt::on_interrupt(move || {
            if let Ok(cur) = current.lock() {
                let _ = store.delete(&format!("locks/{}", *cur));
            }
        })
    };
    Ok(LockGuard {
        _interrupt: on_interrupt,
        store: repo.store().clone(),
        current,
        stop: Some(stop),
        refresher: Some(refresher),
    })
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if let Ok(cur) = self.current.lock() {
            let _ = self.store.delete(&format!("locks/{}", *cur));
        }
    }
}
