//! Small helpers: host and user names, durable local file writes, reading a file in blocks.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// This machine's host name.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The OS user running the process.
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", unsafe { libc::getuid() }))
}

/// Create `dir` and its parents with mode 0700.
pub fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Read `r` through in 1 MiB blocks, handing each to `f`; returns the length read.
pub fn read_blocks(mut r: impl Read, mut f: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(size),
            Ok(n) => {
                f(buf.get(..n).unwrap_or_default());
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Write `bytes` to `path` atomically and durably: a 0600 temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory. With `exclusive`, an existing `path`
/// is an `AlreadyExists` error and is never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8], exclusive: bool) -> std::io::Result<()> {
    write_through_temp(path, bytes, exclusive, true)
}

/// Replace `path` with `bytes` through a 0600 temp file renamed over it, without fsync: for
/// local caches, whose readers see the whole file or none and verify what they read.
pub fn write_cache_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_through_temp(path, bytes, false, false)
}

fn write_through_temp(path: &Path, bytes: &[u8], exclusive: bool, durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_private(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("object");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        if exclusive {
            // link(2) fails with EEXIST instead of replacing: no window where `path` is clobbered.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)?;
        } else {
            fs::rename(&tmp, path)?;
        }
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Human-readable byte count (binary units).
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

/// Parse a size: digits with an optional binary suffix K, M, G or T (also KB, KiB, ...).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let mult: u64 = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parse a percentage `P%` with 0 <= P <= 100.
pub fn parse_percent(s: &str) -> Option<f64> {
    let v: f64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

/// Lock state that decides what is written (a snapshot's entries, a lock's objects, a
/// pack's bytes). A poisoned mutex means a thread panicked while changing it: the state may
/// be half-updated, so the operation fails with an error and commits nothing. This and
/// [`lock_anyway`] are the whole policy for poisoned mutexes.
pub fn lock_or_fail<'a, T>(
    m: &'a std::sync::Mutex<T>,
    what: &str,
) -> crate::error::Result<std::sync::MutexGuard<'a, T>> {
    m.lock().map_err(|_| poisoned(what))
}

/// [`lock_or_fail`] for a mutex whose work is done: its state, unless poisoned.
pub fn into_inner_or_fail<T>(m: std::sync::Mutex<T>, what: &str) -> crate::error::Result<T> {
    m.into_inner().map_err(|_| poisoned(what))
}

fn poisoned(what: &str) -> crate::error::Error {
    crate::error::Error::general(format!("{what} poisoned by an earlier panic"))
}

/// Lock state used only to clean up or report (interruption hooks, the lock objects to
/// delete, a child's last stderr lines): a panic elsewhere must not stop clean-up, so the
/// state is used as it is.
pub fn lock_anyway<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod poison_tests {
    use std::sync::Mutex;

    use super::{lock_anyway, lock_or_fail};

    #[test]
    fn a_poisoned_mutex_fails_writers_and_serves_clean_up() {
        let m = Mutex::new(vec![1, 2]);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock().unwrap();
                g.push(3);
                panic!("poison it");
            })
            .join()
        });
        assert!(m.is_poisoned());
        let Err(e) = lock_or_fail(&m, "snapshot state") else {
            panic!("a poisoned mutex was locked for writing")
        };
        assert!(e.to_string().contains("snapshot state poisoned"), "{e}");
        assert_eq!(*lock_anyway(&m), vec![1, 2, 3]);
    }
}
