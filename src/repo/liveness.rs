//! Is the process that took a lock on this host still running? A process id alone does not
//! say: ids are reused (Linux hands out at most `pid_max`, often 32768, to processes and
//! threads alike), so a lock's pid may now name a thread of some other process, or a process
//! started after the lock was taken. On Linux `/proc` tells both apart; elsewhere only the
//! existence of the id is checked.

/// Did the process `pid`, which took a lock at `taken`, end? False when unsure: a lock
/// believed dead is removed at once, so only certainty counts.
pub(crate) fn ended(pid: u32, taken: jiff::Timestamp) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid_t, 0) };
    if r != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    reused(pid, taken).unwrap_or(false)
}

/// Does `pid` now name something other than the process that took a lock at `taken`: a
/// thread that is not its process's main thread, or a process started after `taken`? The
/// start is boot time plus ticks, in today's wall clock, so a clock stepped forward since the
/// lock was taken moves it later: a minute of slack keeps an NTP correction from making a
/// running holder look dead (its lock would be removed under it). `None` when `/proc` cannot
/// say.
#[cfg(target_os = "linux")]
fn reused(pid: u32, taken: jiff::Timestamp) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let tgid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()?;
    if tgid != pid {
        return Some(true);
    }
    let started = process_start(pid)?;
    Some(started.as_second() > taken.as_second().saturating_add(60))
}

#[cfg(not(target_os = "linux"))]
fn reused(_pid: u32, _taken: jiff::Timestamp) -> Option<bool> {
    None
}

/// When process `pid` started: boot time (`btime` of `/proc/stat`) plus the start time in
/// clock ticks, field 22 of `/proc/PID/stat` (counted after the command name, which may hold
/// spaces and parentheses).
#[cfg(target_os = "linux")]
fn process_start(pid: u32) -> Option<jiff::Timestamp> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    let ticks: i64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = i64::from(u32::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?).max(1);
    jiff::Timestamp::from_second(btime.checked_add(ticks / hz)?).ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_told_from_a_thread_or_a_newer_process_with_its_id() {
        let me = std::process::id();
        let now = jiff::Timestamp::now();
        assert!(!ended(me, now), "this process took the lock now: it runs");
        // This process started after a lock taken an hour ago: the lock's process ended.
        assert!(ended(me, now - jiff::SignedDuration::from_hours(1)));
        // A thread's id is no process's: kill(2) accepts it, yet the lock's process is gone.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = done_rx.recv();
        });
        let tid = u32::try_from(rx.recv().unwrap()).unwrap();
        assert_ne!(tid, me);
        assert!(ended(tid, now), "thread {tid} of process {me}");
        done_tx.send(()).unwrap();
        t.join().unwrap();
        // An id nothing holds.
        assert!(ended(u32::try_from(libc::pid_t::MAX).unwrap(), now));
    }
}
