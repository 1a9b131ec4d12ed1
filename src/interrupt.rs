//! Clean-up on interruption: operations register undo steps (remove a partial file, delete a
//! lock object, stop a child command) for as long as they are needed; the binary runs them
//! when SIGINT or SIGTERM arrives, then exits.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

type Hook = Box<dyn Fn() + Send>;

static HOOKS: Mutex<Vec<(u64, Hook)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set on the thread that runs the hooks: its storage requests are the clean-up itself.
    static CLEANING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the process is being interrupted (the hooks have started).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Whether the process is being interrupted and the calling thread is not the one cleaning
/// up: new work (a storage request, a retry) should not start, since it could start
/// something (an ssh connection) that the clean-up has already looked for.
pub fn stopping() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) && !CLEANING.with(Cell::get)
}

/// Unregisters its hook when dropped (the operation finished normally).
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        crate::util::lock_anyway(&HOOKS).retain(|(id, _)| *id != self.0);
    }
}

/// Run `hook` if the process is interrupted before the returned registration is dropped.
pub fn on_interrupt(hook: impl Fn() + Send + 'static) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    crate::util::lock_anyway(&HOOKS).push((id, Box::new(hook)));
    Registration(id)
}

/// Run every registered hook, newest first (called once, by the binary's signal handler).
pub fn run_hooks() {
    CLEANING.with(|c| c.set(true));
    INTERRUPTED.store(true, Ordering::SeqCst);
    let hooks = std::mem::take(&mut *crate::util::lock_anyway(&HOOKS));
    for (_, hook) in hooks.iter().rev() {
        hook();
    }
}
