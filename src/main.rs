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
    cli::run()
}

/// Chunk buffers (0.5–4 MiB, allocated and freed for every chunk) stay in the heap. By default
/// glibc maps each allocation above 128 KiB afresh from the kernel, or returns freed heap tops to
/// it, so every chunk costs page faults on new zeroed pages: about 10% of a restore's CPU
/// (docs/benchmarks.md, run H). Peak memory is the same; the process keeps it until it exits.
fn keep_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
