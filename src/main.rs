//! The `dbbackup` binary: parses arguments, sets up logging and progress, runs one command,
//! and maps library errors to sysexits exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Everything this process creates locally is private: files 0600, directories 0700.
    unsafe {
        libc::umask(0o077);
    }
    keep_buffers_in_the_heap();
    cli::password::take_secrets_from_env();
    dbbackup::storage::ssh::mark_this_process();
    cli::run()
}

/// Chunk buffers (0.5–4 MiB, allocated and freed for every chunk) stay in the heap. By default
/// glibc maps each allocation above 128 KiB afresh from the kernel, or returns freed heap tops to
/// it, so every chunk costs page faults on new zeroed pages: a restore's CPU time fell by 8%
/// without them (docs/benchmarks.md, run H). Peak memory is about the same; the process keeps
/// it until it exits.
///
/// And one heap (arena) per core, not glibc's eight: each arena keeps the memory freed in it,
/// and the threads of `snapshot --all` spread chunk buffers over many arenas (peak RSS with
/// `--jobs 4` 295–297 MiB, with at most two arenas 215–223 MiB, at the same speed; run H).
fn keep_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 64);
        // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int);
        }
    }
}
