//! Test hooks of the storage layer, read from the environment: killing the process before a
//! chosen storage mutation, and damaging what was written. Compiled only with the
//! `test-hooks` feature, which only the test suite turns on (Cargo.toml): a release build has
//! none of them, whatever its environment says.

/// Crash testing: with `DBBACKUP_TEST_KILL_AT_MUTATION=N`, the process kills itself with
/// SIGKILL just before its N-th storage write or delete (counting from 1), so tests can stop
/// an operation between any two of its storage mutations; with `0` it only prints each
/// mutation to stderr (`test-mutation N write|delete PATH`). With
/// `DBBACKUP_TEST_KILL_BEFORE=PREFIX` it kills itself just before its first mutation of a path
/// starting with PREFIX (the number of pack writes before it varies with scheduling). Never
/// set in normal use.
pub(super) fn fault_point(op: &str, path: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        std::env::var("DBBACKUP_TEST_KILL_AT_MUTATION")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    static BEFORE: OnceLock<Option<String>> = OnceLock::new();
    let before = BEFORE.get_or_init(|| std::env::var("DBBACKUP_TEST_KILL_BEFORE").ok());
    if before.as_deref().is_some_and(|p| path.starts_with(p)) {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    if let Some(at) = at {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if *at == 0 {
            eprintln!("test-mutation {n} {op} {path}");
        } else if n == *at {
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Storage fault testing: with `DBBACKUP_TEST_DAMAGE_WRITES=PREFIX`, every local object whose
/// repository path starts with PREFIX has its last byte flipped right after it was written, as
/// a disk that stores other bytes than it was given would. Never set in normal use.
pub(super) fn damage_point(path: &str, full: &std::path::Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    match std::env::var("DBBACKUP_TEST_DAMAGE_WRITES") {
        Ok(prefix) if path.starts_with(&prefix) => {}
        _ => return Ok(()),
    }
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(full)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::End(-1))?;
    f.read_exact(&mut b)?;
    f.seek(SeekFrom::End(-1))?;
    f.write_all(&[b[0] ^ 0x01])
}
